"""Rows and tokens for the benchmark, made in-process with the app's own models and services."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from flask import Flask


@dataclass
class Writer:
    """A Pro user with a few rooms and an access token."""

    user_id: int
    token: str
    rooms: list[int]


@dataclass
class Seed:
    """The reader (50 rooms, for GET /chatroom) and the Pro writers (for posts and replies)."""

    reader_token: str
    writers: list[Writer]


def make_app() -> Flask:
    """The app, built from os.environ (the same settings the children get)."""
    from gemini_backend import create_app
    return create_app()


def seed(app: Flask, reader_rooms: int = 50, writers: int = 64, rooms_each: int = 4) -> Seed:
    """A Pro reader with `reader_rooms` rooms; `writers` Pro users with `rooms_each` rooms each."""
    from gemini_backend.extensions import db
    from gemini_backend.models import User
    from gemini_backend.services.chat import create_room
    from gemini_backend.services.tokens import issue_tokens
    with app.app_context():
        reader = User(phone="+12025550100", name="bench reader", pro_override=True)
        db.session.add(reader)
        db.session.commit()
        for i in range(reader_rooms):
            create_room(reader.id, f"room {i}")
        result = Seed(issue_tokens(reader)["access_token"], [])
        for n in range(writers):
            user = User(phone=f"+1202555{2000 + n:04d}", name=f"writer {n}", pro_override=True)
            db.session.add(user)
            db.session.commit()
            rooms = [create_room(user.id, f"w{n} r{i}").id for i in range(rooms_each)]
            result.writers.append(Writer(user.id, issue_tokens(user)["access_token"], rooms))
        return result


def pending_replies(app: Flask, writers: list[Writer], count: int, tag: str) -> list[int]:
    """Insert `count` user messages with pending replies, spread over the writers' rooms, without enqueuing."""
    from gemini_backend.extensions import db
    from gemini_backend.models import Message, utcnow
    rooms = [room for writer in writers for room in writer.rooms]
    with app.app_context():
        replies = []
        for i in range(count):
            now = utcnow()
            message = Message(chatroom_id=rooms[i % len(rooms)], role="user", content=f"{tag} {i}",
                              status="complete", created_at=now, completed_at=now)
            db.session.add(message)
            db.session.flush()
            reply = Message(chatroom_id=message.chatroom_id, role="model", content="", status="pending",
                            reply_to=message.id, parent_id=message.id, created_at=now)
            db.session.add(reply)
            replies.append(reply)
        db.session.commit()
        return [reply.id for reply in replies]


def enqueue(app: Flask, reply_ids: list[int]) -> datetime:
    """Queue generate_reply for each id as the web does; the time just before the first enqueue."""
    from gemini_backend.models import utcnow
    from gemini_backend.services.replies import generate_reply
    with app.app_context():
        started = utcnow()
        for reply_id in reply_ids:
            generate_reply(reply_id)
        return started


def replies_after(app: Flask, after_id: int) -> list[tuple[int, str, datetime, datetime | None]]:
    """(id, status, created_at, completed_at) of every reply row newer than after_id."""
    from sqlalchemy import select

    from gemini_backend.extensions import db
    from gemini_backend.models import Message
    with app.app_context():
        rows = db.session.execute(select(Message.id, Message.status, Message.created_at, Message.completed_at)
                                  .where(Message.id > after_id, Message.role == "model")).all()
        db.session.commit()
        return [tuple(row) for row in rows]


def wait_finished(app: Flask, after_id: int, count: int, timeout: float) -> list[tuple]:
    """Poll until `count` replies newer than after_id have left `pending`; their rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = replies_after(app, after_id)
        if len(rows) >= count and all(row[1] != "pending" for row in rows):
            return rows
        if time.monotonic() > deadline:
            done = sum(row[1] != "pending" for row in rows)
            raise RuntimeError(f"only {done} of {count} replies finished within {timeout:.0f} s")
        time.sleep(0.1)


def last_message_id(app: Flask) -> int:
    """The newest message id (0 when none)."""
    from sqlalchemy import func, select

    from gemini_backend.extensions import db
    from gemini_backend.models import Message
    with app.app_context():
        value = db.session.scalar(select(func.max(Message.id))) or 0
        db.session.commit()
        return value


def clear_backlog(app: Flask) -> int:
    """End the replies the post figures left pending and empty the queue, so reply figures start clean."""
    from sqlalchemy import update

    from gemini_backend.extensions import db, huey
    from gemini_backend.models import Message, utcnow
    with app.app_context():
        ended = db.session.execute(update(Message).where(Message.status == "pending").values(
            status="failed", completed_at=utcnow(), error={"code": "bench", "message": "post-figure backlog"})).rowcount
        db.session.commit()
    huey.flush()
    return ended


def dispose(app: Flask) -> None:
    """Close the seeding app's database connections."""
    from gemini_backend.extensions import db
    with app.app_context():
        db.engine.dispose()
