"""R3: PostgreSQL restarted under load: requests during the outage fail fast with 503, and afterwards everything
works again without restarting the app (dead connections are pinged out or invalidate the pool)."""
import glob
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.conftest import BACKEND
from tests.helpers import ROOT, child_env, free_port, http_json, start_web, stop

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [None]
pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(BACKEND.name != "services" or PG_BIN[0] is None or os.geteuid() != 0,
                                 reason="runs a PostgreSQL cluster of its own (services mode, root, Debian PostgreSQL)")]


def _as_postgres(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture()
def own_postgres():
    folder = tempfile.mkdtemp(prefix="gb-pg-")
    shutil.chown(folder, "postgres", "postgres")
    data, port = os.path.join(folder, "data"), free_port()
    assert _as_postgres(f"{PG_BIN[0]}/initdb", "-D", data, "-U", "postgres", "--auth=trust").returncode == 0
    ctl = [f"{PG_BIN[0]}/pg_ctl", "-D", data, "-w", "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"]

    def start():
        assert _as_postgres(*ctl, "-l", os.path.join(folder, "log"), "start").returncode == 0

    def stop_pg():
        _as_postgres(*ctl, "-m", "fast", "stop")

    start()
    yield port, start, stop_pg
    stop_pg()
    shutil.rmtree(folder, ignore_errors=True)


def test_r3_postgres_restart(app, own_postgres):
    port, start_pg, stop_pg = own_postgres
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    env = {"DATABASE_URL": url, "DB_CONNECT_TIMEOUT": "2", "DB_POOL_TIMEOUT": "2"}
    upgrade = subprocess.run([str(ROOT / ".venv/bin/flask"), "db", "upgrade"], cwd=ROOT, env=child_env(**env),
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    web_port = free_port()
    web = start_web(web_port, workers=1, threads=8, **env)
    try:
        phone = "+12025550177"
        http_json(web_port, "POST", "/auth/signup", body={"phone": phone, "password": "pass-word-1"})
        _, tokens, _ = http_json(web_port, "POST", "/auth/login", body={"phone": phone, "password": "pass-word-1"})
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        for i in range(5):  # warm the pool
            assert http_json(web_port, "POST", "/chatroom", auth, {"name": f"before {i}"})[0] == 201
        room = http_json(web_port, "GET", "/chatroom", auth)[1]["chatrooms"][0]["id"]

        def post_message(text: str) -> int:
            # The post is a statement prepared once per connection: after a restart, every new connection
            # must prepare it again.
            return http_json(web_port, "POST", f"/chatroom/{room}/message", auth, {"content": text})[0]

        assert [post_message(f"before {i}") for i in range(2)] == [202] * 2  # of Basic's 5 a day

        stop_pg()
        for method, path, body in [("POST", "/chatroom", {"name": "during"}), ("GET", "/user/me", None),
                                   ("GET", "/readyz", None), ("POST", "/auth/login",
                                                              {"phone": phone, "password": "pass-word-1"})]:
            status, payload, took = http_json(web_port, method, path, auth, body)
            assert status == 503, (path, status, payload)
            assert payload["code"] == 503 and payload["error"] in ("service_unavailable", "dependency_unavailable")
            assert took < 8, f"{path} took {took:.1f}s during the outage"

        start_pg()
        for i in range(5):
            status, payload, _ = http_json(web_port, "POST", "/chatroom", auth, {"name": f"after {i}"})
            assert status == 201, payload
        status, rooms, _ = http_json(web_port, "GET", "/chatroom", auth)
        assert status == 200 and len(rooms["chatrooms"]) == 10
        assert http_json(web_port, "GET", "/readyz")[0] == 200
        assert [post_message(f"after {i}") for i in range(2)] == [202] * 2

        # A restart nobody saw (no request during it): the pooled connections are dead but idle, so the
        # checkout ping replaces them and the very first request afterwards already works.
        time.sleep(1.2)
        stop_pg()
        start_pg()
        for path in ("/chatroom", "/user/me", "/chatroom"):
            status, payload, _ = http_json(web_port, "GET", path, auth)
            assert status == 200, (path, status, payload)
        time.sleep(1.2)
        stop_pg()
        start_pg()
        assert post_message("unseen") == 202
    finally:
        stop(web)
