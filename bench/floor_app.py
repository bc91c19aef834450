"""The floor: the least a protected read can do on the same gunicorn settings (verify a JWT, read one Redis key)."""
import os

import redis
from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, get_jwt_identity, jwt_required

app = Flask(__name__)
app.config.update(JWT_SECRET_KEY=os.environ["JWT_SECRET"], JWT_ALGORITHM="HS256", JWT_DECODE_ALGORITHMS=["HS256"],
                  JWT_TOKEN_LOCATION=["headers"])
JWTManager(app)
store = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=3, socket_connect_timeout=3)


@app.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@app.get("/floor")
@jwt_required()
def floor():
    """Verify the bearer token, read one Redis key, answer small JSON."""
    return jsonify(user=get_jwt_identity(), value=(store.get("bench:floor") or b"").decode())
