"""The statements every conversation runs stay index lookups on a large table (PostgreSQL's planner, after ANALYZE):
none scans messages, chatrooms or users whole, so their cost does not grow with the data."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from gemini_backend.extensions import db
from gemini_backend.models import utcnow
from gemini_backend.services import messages, replies, sse, tokens

ROOMS, PER_ROOM = 3000, 20  # 60,000 messages: far past the size where a whole-table scan could be cheaper
WHOLE_TABLES = {"messages", "chatrooms", "users"}


def _seed() -> tuple[int, int, int]:
    """Rooms of PER_ROOM messages each (a user message, then its reply, in one chain); (user id, room id, the last
    user message's id) of a room in the middle."""
    for sql in (
        "INSERT INTO users (phone, name, pro_override, is_pro, token_version, created_at, updated_at) "
        "SELECT '+1777' || lpad(g::text, 7, '0'), 'u', false, false, 0, now(), now() "
        f"FROM generate_series(1, {ROOMS}) g",
        "INSERT INTO chatrooms (user_id, name, message_count, created_at, updated_at, last_activity_at) "
        f"SELECT id, 'r', {PER_ROOM}, now(), now(), now() FROM users",
        "INSERT INTO messages (id, chatroom_id, role, content, status, attempts, reply_to, parent_id, created_at, "
        "completed_at) "
        f"SELECT r.id * {PER_ROOM} + k, r.id, CASE WHEN k % 2 = 0 THEN 'user' ELSE 'model' END, 'hello ' || k, "
        f"'complete', 1, CASE WHEN k % 2 = 1 THEN r.id * {PER_ROOM} + k - 1 END, "
        f"CASE WHEN k > 0 THEN r.id * {PER_ROOM} + k - 1 END, now(), now() "
        f"FROM chatrooms r, generate_series(0, {PER_ROOM - 1}) k",
        "SELECT setval(pg_get_serial_sequence('messages', 'id'), (SELECT max(id) FROM messages))",
    ):
        db.session.execute(text(sql))
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    room = db.session.execute(text(f"SELECT id, user_id FROM chatrooms ORDER BY id OFFSET {ROOMS // 2} LIMIT 1")).one()
    db.session.commit()
    return room.user_id, room.id, room.id * PER_ROOM + PER_ROOM - 2


def _scans(plan: dict) -> set[str]:
    """The tables a plan (EXPLAIN's JSON node) reads with a sequential scan."""
    found = {plan["Relation Name"]} if plan.get("Node Type") == "Seq Scan" else set()
    for child in plan.get("Plans", ()):
        found |= _scans(child)
    return found


def _whole_scans(statement, params: dict) -> set[str]:
    """EXPLAIN (not run) of a Core statement with these values: the large tables it would scan whole."""
    compiled = statement.compile(dialect=db.engine.dialect)
    cursor = db.session.connection().connection.driver_connection.cursor()
    cursor.execute("EXPLAIN (FORMAT JSON) " + str(compiled), {**compiled.params, **params})
    plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _scans(plan[0]["Plan"]) & WHOLE_TABLES


def test_hot_statements_are_index_lookups(app):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL's planner (SQLite has no statistics to plan from)")
        user_id, room_id, message_id = _seed()
        reply_id, now = message_id + 1, utcnow()
        statements = {
            "the post": (messages._INSERT_EXCHANGE, {
                "owner_id": user_id, "room_id": room_id, "text": "hi", "day": "2026-12-03", "now": now,
                "follow_leaf": True, "parent_id": None, "added": 2}),
            "the stream's reply": (messages._FIND_REPLY, {
                "user_id": user_id, "room_id": room_id, "message_id": message_id}),
            "the stream's final read": (sse._LOAD_REPLY, {"reply_id": reply_id}),
            "the user state": (tokens._USER_STATE, {"user_id": user_id, "now": now}),
            "the lease": (replies._TAKE_LEASE, {
                "reply_id": reply_id, "now": now, "token": "t", "expires": now + timedelta(seconds=60)}),
            "the history": (replies._HISTORY, {"user_message_id": message_id}),
            "the outcome": (replies._WRITE_OUTCOME, {
                "reply_id": reply_id, "token": "t", "new_status": "complete", "new_content": "a", "new_error": None,
                "new_usage": None, "now": now}),
        }
        scanned = {name: _whole_scans(statement, params) for name, (statement, params) in statements.items()}
        db.session.rollback()
        assert {name: tables for name, tables in scanned.items() if tables} == {}
