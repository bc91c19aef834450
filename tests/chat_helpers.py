"""Helpers for chat tests: users with tokens, rooms, posting and waiting."""
from __future__ import annotations

from tests.factories import auth_headers, create_user
from tests.helpers import wait_for


class ChatUser:
    """A user with an access token and a test client."""

    def __init__(self, app, client, pro: bool = False) -> None:
        self.app, self.client = app, client
        self.id = create_user(app, pro=pro)
        self.headers = auth_headers(app, self.id)

    def get(self, path, **kw):
        return self.client.get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, path, **kw):
        return self.client.post(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def patch(self, path, **kw):
        return self.client.patch(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def put(self, path, **kw):
        return self.client.put(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def delete(self, path, **kw):
        return self.client.delete(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def room(self, name: str = "Room") -> int:
        r = self.post("/chatroom", json={"name": name})
        assert r.status_code == 201, r.json
        return r.json["id"]

    def say(self, room_id: int, content: str, **kw):
        r = self.post(f"/chatroom/{room_id}/message", json={"content": content}, **kw)
        assert r.status_code in (200, 202), r.json
        return r.json

    def ask(self, room_id: int, content: str, **body) -> tuple[dict, dict]:
        """Post and wait for the reply to complete: (user message, finished reply)."""
        r = self.post(f"/chatroom/{room_id}/message", json={"content": content, **body})
        assert r.status_code == 202, r.json
        reply = self.finished_reply(room_id, r.json["reply"]["id"])
        assert reply["status"] == "complete", reply
        return r.json["message"], reply

    def reply(self, room_id: int, reply_id: int) -> dict:
        return self.get(f"/chatroom/{room_id}/message/{reply_id}").json

    def finished_reply(self, room_id: int, reply_id: int, timeout: float = 20) -> dict:
        return wait_for(lambda: (lambda m: m if m["status"] != "pending" else None)(self.reply(room_id, reply_id)),
                        timeout=timeout, interval=0.1, what=f"reply {reply_id} to finish")

    def usage_used(self) -> int:
        from gemini_backend.services import quota
        with self.app.app_context():
            return quota.usage(self.id, "basic")["used_today"]


def model_replies(app) -> list:
    """Every model reply row (id, reply_to, status, content, lease_token, attempts), oldest first."""
    from sqlalchemy import select

    from gemini_backend.extensions import db
    from gemini_backend.models import Message
    with app.app_context():
        rows = db.session.execute(select(Message.id, Message.reply_to, Message.status, Message.content,
                                         Message.lease_token, Message.attempts)
                                  .where(Message.role == "model").order_by(Message.id)).all()
        db.session.remove()
        return rows
