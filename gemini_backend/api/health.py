"""Liveness and readiness probes."""
from __future__ import annotations

from flask import current_app, url_for
from flask.views import MethodView

from gemini_backend.errors import error_body
from gemini_backend.http import Blueprint
from gemini_backend.schemas.common import HealthSchema, ReadinessSchema, ServerInfoSchema
from gemini_backend.services import health

blp = Blueprint("health", __name__, description="What this server is; liveness and readiness probes")


@blp.route("/")
class ServerInfo(MethodView):
    @blp.response(200, ServerInfoSchema)
    def get(self):
        """What this server is and where its docs are."""
        cfg = current_app.config
        return {"name": cfg["API_TITLE"], "version": cfg["API_VERSION"], "docs": cfg["OPENAPI_SWAGGER_UI_PATH"],
                "openapi": "/" + cfg["OPENAPI_JSON_PATH"], "health": url_for("health.Liveness")}


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """The process is up."""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.response(200, ReadinessSchema)
    @blp.alt_response(503, schema=ReadinessSchema, description="A dependency is down")
    def get(self):
        """The database, Redis (when configured) and the queue storage all answer."""
        checks = health.check_dependencies()
        down = [name for name, state in checks.items() if state != "ok"]
        if down:
            body = error_body(503, "dependency_unavailable", "Not ready: " + ", ".join(down) + " not reachable.")
            return {**body, "checks": checks}, 503
        return {"status": "ok", "checks": checks}
