"""Share link schemas: the owner's view of a share, and the public snapshot behind the link."""
from __future__ import annotations

import copy

import marshmallow as ma

from gemini_backend.schemas.chat import MessageSchema

# What a shared message shows, named field by field: a field added to MessageSchema later (attachments, ratings,
# token counts, error details) stays private until someone decides it may be public.
SHARED_MESSAGE_FIELDS = ("id", "role", "content", "status", "reply_to", "parent_id", "created_at", "completed_at")


# A Message as a share link shows it: no feedback (the owner's private rating and comment), no token usage, no error
# details, no attachments, no chatroom id. The same field definitions as MessageSchema's, so the two never disagree.
SharedMessageSchema = ma.Schema.from_dict(
    {name: copy.deepcopy(MessageSchema._declared_fields[name]) for name in SHARED_MESSAGE_FIELDS},
    name="SharedMessageSchema")


class ShareSchema(ma.Schema):
    id = ma.fields.String(required=True, metadata={"description": "Unguessable (256 bits, URL-safe base64).",
                                                   "example": "mT3vY0mSUS1fA7N4vJqgGm2gW0d3qfXk0Tn6d0oG2yQ"})
    url = ma.fields.String(required=True, metadata={
        "description": "The public link: this API's GET /shared/{share_id}, on the host the request came to.",
        "example": "https://api.example.com/shared/mT3vY0mSUS1fA7N4vJqgGm2gW0d3qfXk0Tn6d0oG2yQ"})
    created_at = ma.fields.DateTime(required=True)


class ShareListSchema(ma.Schema):
    shares = ma.fields.List(ma.fields.Nested(ShareSchema), required=True, metadata={"description": "Newest first."})


class SharedSnapshotSchema(ma.Schema):
    chatroom_name = ma.fields.String(required=True, metadata={"description": "The room's name when it was shared."})
    messages = ma.fields.List(ma.fields.Nested(SharedMessageSchema), required=True, metadata={
        "description": "The active branch when it was shared, oldest first (a reply still being written then is "
                       "left out)."})
    created_at = ma.fields.DateTime(required=True)
