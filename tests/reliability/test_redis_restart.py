"""R2: Redis restarted with its data lost while messages are queued: every accepted message still gets its reply,
and the web answers (or says 503) without hanging or a 500 while Redis is down."""
import subprocess
import time

import pytest
from sqlalchemy import select

from gemini_backend.extensions import db
from gemini_backend.models import Message
from tests.conftest import BACKEND, WORKER_ENV
from tests.factories import auth_headers, create_user
from tests.helpers import free_port, http_json, start_web, start_worker, stop, wait_for

pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(BACKEND.name != "services", reason="restarts a Redis of its own (services mode)")]


def _redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
             == b"PONG", timeout=10, what="redis-server")
    return proc


def _statuses(app):
    with app.app_context():
        rows = db.session.scalars(select(Message.status).where(Message.role == "model")).all()
        db.session.remove()
        return rows


def test_r2_redis_loses_its_data_and_every_reply_still_arrives(app, gemini):
    redis_port, web_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis_proc = _redis(redis_port)
    web = start_web(web_port, REDIS_URL=redis_url, REDIS_SOCKET_TIMEOUT="1")
    worker = None
    try:
        user_id = create_user(app, pro=True)
        headers = {**auth_headers(app, user_id), "Content-Type": "application/json"}
        _, room, _ = http_json(web_port, "POST", "/chatroom", headers, {"name": "r2"})
        for i in range(5):
            status, _, _ = http_json(web_port, "POST", f"/chatroom/{room['id']}/message", headers, {"content": f"q{i}"})
            assert status == 202
        redis_proc.kill()  # the queued tasks die with it
        redis_proc.wait()
        for method, path, body in [("GET", "/chatroom", None), ("GET", f"/chatroom/{room['id']}", None),
                                   ("POST", f"/chatroom/{room['id']}/message", {"content": "during"}),
                                   ("GET", "/readyz", None)]:
            status, payload, took = http_json(web_port, method, path, headers, body)
            assert status in (200, 202, 503), (path, status, payload)
            assert took < 10, f"{path} took {took:.1f}s while Redis was down"
            if status == 503:
                assert payload["code"] == 503 and payload["error"]
        redis_proc = _redis(redis_port)  # back, empty
        time.sleep(1.2)  # past REPLY_SWEEP_GRACE
        worker = start_worker(threads=4, REDIS_URL=redis_url, GEMINI_BASE_URL=gemini.base_url,
                              **{**WORKER_ENV, "REPLY_SWEEP_GRACE": "1"})
        wait_for(lambda: _statuses(app) and all(s == "complete" for s in _statuses(app)), timeout=60,
                 what="every reply to complete after Redis lost its data", proc=worker)
        assert len(_statuses(app)) >= 5
        status, _, _ = http_json(web_port, "GET", "/chatroom", headers)
        assert status == 200
    finally:
        if worker is not None:
            stop(worker)
        stop(web)
        redis_proc.kill()
