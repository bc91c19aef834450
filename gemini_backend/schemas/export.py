"""Export schemas: the query of a room export and the documents the exports write (they are written piece by piece;
these schemas describe them in the OpenAPI document and dump their parts)."""
from __future__ import annotations

import marshmallow as ma

from gemini_backend.schemas.auth import UserSchema
from gemini_backend.schemas.billing import SubscriptionSchema, UsageSchema
from gemini_backend.schemas.chat import ChatroomSchema, MessageSchema
from gemini_backend.schemas.files import FileSchema
from gemini_backend.schemas.shares import SharedMessageSchema

EXPORT_FORMATS = ("json", "markdown")


class ExportQuerySchema(ma.Schema):
    format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(EXPORT_FORMATS), metadata={
        "description": "json: the whole message tree; markdown: the active branch, to read."})


class RoomExportSchema(ChatroomSchema):
    """A Chatroom's fields and every message of every branch (follow parent_id for the tree), oldest first."""

    messages = ma.fields.List(ma.fields.Nested(MessageSchema), required=True)


class ExportedShareSchema(ma.Schema):
    """A share link of one of the user's rooms and the snapshot it shows."""

    id = ma.fields.String(required=True)
    url = ma.fields.String(required=True)
    chatroom_id = ma.fields.Integer(required=True)
    chatroom_name = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)
    messages = ma.fields.List(ma.fields.Nested(SharedMessageSchema), required=True, metadata={
        "description": "The snapshot, as GET /shared/{share_id} shows it."})


class UserExportSchema(ma.Schema):
    exported_at = ma.fields.DateTime(required=True)
    user = ma.fields.Nested(UserSchema, required=True, metadata={"description": "The profile, as GET /user/me."})
    subscription = ma.fields.Nested(SubscriptionSchema, required=True,
                                    metadata={"description": "As GET /subscription/status."})
    usage = ma.fields.Nested(UsageSchema, required=True, metadata={"description": "As GET /user/usage."})
    files = ma.fields.List(ma.fields.Nested(FileSchema), required=True, metadata={
        "description": "Your files' metadata, as POST /files answers (not their bytes)."})
    shares = ma.fields.List(ma.fields.Nested(ExportedShareSchema), required=True)
    chatrooms = ma.fields.List(ma.fields.Nested(RoomExportSchema), required=True)
