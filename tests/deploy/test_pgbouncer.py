"""T1 (QUALITY.md): Debian's PgBouncer in transaction mode between every process and PostgreSQL.

The web host (gunicorn) and every consumer (`flask worker`) get a DATABASE_URL that points at a PgBouncer of the
test's own: three server connections, all kept open and used round robin, so consecutive transactions of one
client connection land on different PostgreSQL backends (the first test shows they do, and that a PREPAREd
statement breaks there). Through it: the migrations run, the Postman collection passes, R1 and R6 hold, and message
posts, which once failed behind such a pooler, all succeed.
"""
from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy import select

from gemini_backend.extensions import db
from gemini_backend.models import Message
from tests.backends import _pg_admin
from tests.chat_helpers import model_replies
from tests.conftest import BACKEND, WORKER_ENV
from tests.deploy.topology import SERVICES_ONLY, PgBouncer, run_collection
from tests.factories import auth_headers, create_user
from tests.helpers import BIN, ROOT, child_env, http_json, wait_for

pytestmark = [SERVICES_ONLY, pytest.mark.slow]
POOL_SIZE = 3


@pytest.fixture(scope="module")
def pgbouncer(_schema):
    with PgBouncer(BACKEND.database_url, pool_size=POOL_SIZE) as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def pooled(pgbouncer, fake_gemini) -> dict[str, str]:
    """The environment of every process of this topology: the database through PgBouncer, the fake Gemini."""
    return {**WORKER_ENV, "DATABASE_URL": pgbouncer.url(BACKEND.database_url), "GEMINI_BASE_URL": fake_gemini.base_url}


@pytest.fixture(scope="module")
def web(pooled, module_fleet):
    """One gunicorn host (2 workers x 8 threads) on PgBouncer."""
    return module_fleet.web(workers=2, threads=8, **pooled)


def _transactions(pgbouncer) -> int:
    """PgBouncer's own count of transactions it has passed on to the test database (SHOW STATS)."""
    conn = psycopg2.connect(host="127.0.0.1", port=pgbouncer.port, dbname="pgbouncer", user="gbstats",
                            connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW STATS")
            columns = [c.name for c in cur.description]
            rows = [dict(zip(columns, row)) for row in cur.fetchall()]
    finally:
        conn.close()
    name = BACKEND.database_url.rsplit("/", 1)[1]
    return sum(int(row["total_xact_count"]) for row in rows if row["database"] == name)


def test_transactions_hop_between_server_connections(pgbouncer):
    """The pooler is sharp enough to catch session state: one client connection's transactions run on several
    PostgreSQL backends, and a statement PREPAREd in one transaction is gone in the next (the failure that every
    message post once hit behind a transaction-mode pooler)."""
    conn = psycopg2.connect(pgbouncer.url(BACKEND.database_url), connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            def backends() -> set[int]:
                seen = set()
                for _ in range(2 * POOL_SIZE):
                    cur.execute("SELECT pg_backend_pid()")
                    seen.add(cur.fetchone()[0])
                return seen if len(seen) > 1 else set()

            assert len(wait_for(backends, timeout=10, what="one connection's transactions to use several "
                                                           "server connections")) > 1
            cur.execute("PREPARE gb_deploy_probe AS SELECT 1")
            with pytest.raises(psycopg2.errors.InvalidSqlStatementName):
                cur.execute("EXECUTE gb_deploy_probe")
    finally:
        conn.close()


def _tables(url: str) -> set[str]:
    conn = psycopg2.connect(url, connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_migrations_run_through_pgbouncer(_schema):
    """The release step too: `flask db upgrade` builds a fresh database through PgBouncer in transaction mode, to the
    same tables as the run's database (migrated directly)."""
    parts = urlsplit(BACKEND.database_url)
    fresh = urlunsplit(parts._replace(path=parts.path + "_pooled"))
    name = fresh.rsplit("/", 1)[1]
    _pg_admin(BACKEND.admin_url, f'CREATE DATABASE "{name}"')
    try:
        with PgBouncer(fresh, pool_size=POOL_SIZE) as bouncer:
            result = subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, capture_output=True, text=True,
                                    env=child_env(DATABASE_URL=bouncer.url(fresh)), timeout=120)
            assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        assert _tables(fresh) == _tables(BACKEND.database_url) and "alembic_version" in _tables(fresh)
    finally:
        _pg_admin(BACKEND.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postman_collection_passes_through_pgbouncer(app, web, pooled, pgbouncer, fleet, fake_gemini):
    """Every request and assertion of the Postman collection passes with the web host and the consumer on
    PgBouncer; the run's transactions went through the pooler, and its reply was produced there."""
    fake_gemini.reset()
    fleet.worker(threads=4, **pooled)
    before = _transactions(pgbouncer)
    run = run_collection(f"http://127.0.0.1:{web.port}")
    assert run.returncode == 0 and not run.failures(), "\n".join(run.failures()) + "\n" + run.output[-6000:]
    assertions = run.report["run"]["stats"]["assertions"]
    assert assertions["failed"] == 0 and assertions["total"] >= 100, assertions
    assert _transactions(pgbouncer) - before >= len(run.executions), "the run's transactions must pass PgBouncer"
    # The collection deletes its room, then its account, at the end; its long-polls saw the replies the pooled
    # consumer produced.
    reply = run.response_json("Get reply (long-poll ?wait=5)")
    assert (reply["status"], reply["content"]) == ("complete", "Echo: Hello from Postman! Say hi back in five words.")
    file_reply = run.response_json("Get the reply about the file (long-poll ?wait=5)")
    assert (file_reply["status"], file_reply["content"]) == ("complete", "Echo: What is in this picture?")
    # The first answer, its regeneration (unless the collection's stop came before its call), the edited question's
    # and the one about the uploaded file, all through the pooler.
    assert len(fake_gemini.requests) in (3, 4)


def test_r1_kill9_consumer_with_20_replies_in_flight_through_pgbouncer(app, web, pooled, fleet, fake_gemini):
    """R1 through PgBouncer: 20 posts through the web host, kill -9 the consumer while all 20 are in flight
    (slow Gemini), start a new consumer: every reply ends complete, exactly once, with its own text."""
    fake_gemini.reset()
    fake_gemini.latency = 4.0
    headers = auth_headers(app, create_user(app, pro=True))
    rooms = [http_json(web.port, "POST", "/chatroom", headers, {"name": f"r1-{i}"})[1]["id"] for i in range(4)]
    for i in range(20):
        status, body, _ = http_json(web.port, "POST", f"/chatroom/{rooms[i % 4]}/message", headers,
                                    {"content": f"question {i}"})
        assert status == 202, body
    env = {**pooled, "GEMINI_TIMEOUT": "20", "REPLY_LEASE_SECONDS": "5", "REPLY_SWEEP_GRACE": "1"}
    first = fleet.worker(threads=20, **env)
    wait_for(lambda: all(r.lease_token and r.attempts == 1 for r in model_replies(app)) and len(model_replies(app)) == 20,
             timeout=30, what="all 20 replies to be claimed", proc=first)
    fleet.kill9(first)
    killed_at = time.monotonic()
    assert all(r.status == "pending" for r in model_replies(app)), "the kill must land while replies are in flight"
    time.sleep(max(0.0, killed_at + 5.5 - time.monotonic()))  # the dead consumer's leases run out
    fake_gemini.latency = 0.1
    second = fleet.worker(threads=8, **env)
    wait_for(lambda: all(r.status == "complete" for r in model_replies(app)), timeout=60,
             what="every reply to complete after the crash", proc=second)
    rows = model_replies(app)
    assert len(rows) == 20 and len({r.reply_to for r in rows}) == 20
    assert sorted(r.content for r in rows) == sorted(f"Echo: question {i}" for i in range(20))
    assert all(r.attempts == 2 for r in rows), [r.attempts for r in rows]
    assert "Traceback" not in fleet.stop(second)


def test_r6_twenty_parallel_posts_accept_exactly_five_through_pgbouncer(app, web):
    """R6 through PgBouncer: 20 parallel posts by a Basic user at 0 used: exactly 5 accepted, 15 refused with 429
    daily_limit_reached; usage says 5 and the room holds 5 exchanges."""
    headers = auth_headers(app, create_user(app))
    status, room, _ = http_json(web.port, "POST", "/chatroom", headers, {"name": "r6"})
    assert status == 201, room

    def post(i):
        return http_json(web.port, "POST", f"/chatroom/{room['id']}/message", headers, {"content": f"m{i}"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(post, range(20)))
    assert sorted(r[0] for r in results) == [202] * 5 + [429] * 15, [r[:2] for r in results]
    assert {r[1]["error"] for r in results if r[0] == 429} == {"daily_limit_reached"}
    status, usage, _ = http_json(web.port, "GET", "/user/usage", headers)
    assert status == 200 and usage["used_today"] == 5 and usage["remaining"] == 0, usage
    status, detail, _ = http_json(web.port, "GET", f"/chatroom/{room['id']}", headers)
    assert status == 200 and detail["message_count"] == 10 and len(detail["messages"]) == 10, detail


def test_many_sequential_posts_all_accepted_through_pgbouncer(app, web, pgbouncer):
    """The old failure cannot come back: 40 posts one after another, each landing on whichever server connection
    PgBouncer hands out, are all 202, and all 80 messages are stored."""
    headers = auth_headers(app, create_user(app, pro=True))
    status, room, _ = http_json(web.port, "POST", "/chatroom", headers, {"name": "sequential"})
    assert status == 201, room
    before = _transactions(pgbouncer)
    results = [http_json(web.port, "POST", f"/chatroom/{room['id']}/message", headers, {"content": f"post {i}"})
               for i in range(40)]
    refused = [(i, r[0], r[1]) for i, r in enumerate(results) if r[0] != 202]
    assert not refused, refused
    assert _transactions(pgbouncer) - before >= 40
    status, detail, _ = http_json(web.port, "GET", f"/chatroom/{room['id']}", headers)
    assert status == 200 and detail["message_count"] == 80, detail
    with app.app_context():
        stored = db.session.scalars(select(Message.content).where(Message.chatroom_id == room["id"],
                                                                  Message.role == "user")).all()
        db.session.remove()
    assert sorted(stored) == sorted(f"post {i}" for i in range(40))
