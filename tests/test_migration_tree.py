"""Migration 0007 on rooms written before the message tree: each reads as one branch (even when two posts' rows
interleaved), its active leaf is the newest exchange's reply, and each quota day moves to its reply."""
from __future__ import annotations

import os
import tempfile
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from gemini_backend import create_app
from gemini_backend.config import sqlalchemy_url
from gemini_backend.extensions import db
from tests import backends
from tests.conftest import BACKEND
from tests.factories import auth_headers

BEFORE_TREE = "0006_room_settings"
# Room 1: ids 1-2 one exchange, then two posts whose rows interleaved (3, 4 asked; 5 answers 3, 6 answers 4).
# Room 2: one exchange whose reply failed (its unit already given back). Room 3: empty.
LEGACY = [
    (1, 1, "user", "first", "complete", None, "2026-12-01"),
    (2, 1, "model", "answer 1", "complete", 1, None),
    (3, 1, "user", "second", "complete", None, "2026-12-02"),
    (4, 1, "user", "third", "complete", None, "2026-12-02"),
    (5, 1, "model", "answer 2", "complete", 3, None),
    (6, 1, "model", "", "pending", 4, None),
    (7, 2, "user", "lost", "complete", None, None),
    (8, 2, "model", "", "failed", 7, None),
]


@pytest.fixture()
def legacy_app(_schema):
    """An app on a database of its own, migrated up to just before the tree."""
    if BACKEND.admin_url:
        url = urlunsplit(urlsplit(BACKEND.admin_url)._replace(path=f"/gb_migration_{uuid.uuid4().hex[:8]}"))
        backends._pg_admin(BACKEND.admin_url, f'CREATE DATABASE "{urlsplit(url).path[1:]}"')
    else:
        folder = tempfile.mkdtemp(prefix="gb-migration-")
        url = f"sqlite:///{os.path.join(folder, 'legacy.db')}"
    app = create_app({"APP_ENV": "test", "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(url)})
    with app.app_context():
        upgrade(revision=BEFORE_TREE)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if BACKEND.admin_url:
        backends._pg_admin(BACKEND.admin_url, f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')


def test_old_rooms_read_as_one_branch(legacy_app):
    with legacy_app.app_context():
        db.session.execute(text("INSERT INTO users (id, phone, created_at, updated_at) "
                                "VALUES (1, '+15550000001', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        for room in (1, 2, 3):
            db.session.execute(text(
                "INSERT INTO chatrooms (id, user_id, name, message_count, last_activity_at, created_at, updated_at) "
                "VALUES (:id, 1, 'Old', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"id": room})
        for row in LEGACY:
            db.session.execute(text(
                "INSERT INTO messages (id, chatroom_id, role, content, status, reply_to, quota_day, attempts, "
                "created_at) VALUES (:id, :room, :role, :content, :status, :reply_to, :day, 0, CURRENT_TIMESTAMP)"),
                dict(zip(("id", "room", "role", "content", "status", "reply_to", "day"), row)))
        db.session.commit()
        upgrade()
        messages = {row.id: row for row in db.session.execute(text(
            "SELECT id, parent_id, quota_day FROM messages ORDER BY id"))}
        leaves = dict(db.session.execute(text("SELECT id, active_leaf_id FROM chatrooms")).all())
    assert {i: m.parent_id for i, m in messages.items()} == {1: None, 2: 1, 3: 2, 4: 5, 5: 3, 6: 4, 7: None, 8: 7}
    assert leaves == {1: 6, 2: 8, 3: None}
    assert {i: m.quota_day for i, m in messages.items() if m.quota_day} == {2: "2026-12-01", 5: "2026-12-02",
                                                                          6: "2026-12-02"}
    client = legacy_app.test_client()
    room = client.get("/chatroom/1", headers=auth_headers(legacy_app, 1)).json
    assert [(m["content"], m["sibling_ids"]) for m in room["messages"]] == [
        ("first", [1]), ("answer 1", [2]), ("second", [3]), ("answer 2", [5]), ("third", [4]), ("", [6])]
