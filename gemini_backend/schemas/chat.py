"""Chatroom and message schemas."""
from __future__ import annotations

import marshmallow as ma
from flask import current_app

from gemini_backend.ai import choosable_models
from gemini_backend.models import Chatroom
from gemini_backend.schemas.common import AliasedSchema
from gemini_backend.schemas.files import AttachmentSchema

MAX_CONTENT = 8000
MAX_ATTACHMENTS = 10
MAX_ID = 2**63 - 1  # BIGINT: a larger id could never exist


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must contain a non-space character.")


def _distinct(value: list[int]) -> None:
    if len(set(value)) != len(value):
        raise ma.ValidationError("Each file at most once.")


MAX_SYSTEM_INSTRUCTION = 4000


class RoomSettingsInput(ma.Schema):
    """The reply settings a room may choose (null: the server's setting or the model's default)."""

    model = ma.fields.String(allow_none=True, metadata={"description": "One of GET /models; null: the default."})
    system_instruction = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=MAX_SYSTEM_INSTRUCTION),
                                          metadata={"description": "Null: the server's."})
    temperature = ma.fields.Float(allow_none=True, validate=ma.validate.Range(min=0, max=2))
    max_output_tokens = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=1, max=65536))

    @ma.validates("model")
    def _choosable(self, value: str | None, **kwargs) -> None:
        models = choosable_models(current_app.config)
        if value is not None and value not in models:
            raise ma.ValidationError(f"Must be one of: {', '.join(models)}.")


class ChatroomCreateSchema(RoomSettingsInput, AliasedSchema):
    ALIASES = {"title": "name"}
    name = ma.fields.String(load_default=Chatroom.DEFAULT_NAME, validate=[ma.validate.Length(min=1, max=100), _not_blank],
                            metadata={"example": "Trip to Lisbon", "description": "Alias: title."})


class ChatroomUpdateSchema(RoomSettingsInput, AliasedSchema):
    ALIASES = {"title": "name"}
    name = ma.fields.String(validate=[ma.validate.Length(min=1, max=100), _not_blank],
                            metadata={"description": "Alias: title."})

    @ma.validates_schema
    def _something_to_change(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Give name or a setting to change.", "name")


class ChatroomSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)
    updated_at = ma.fields.DateTime(required=True)
    last_message_at = ma.fields.DateTime(allow_none=True, required=True)
    message_count = ma.fields.Integer(required=True)
    model = ma.fields.String(allow_none=True, required=True, metadata={"description": "Null: the default model."})
    system_instruction = ma.fields.String(allow_none=True, required=True)
    temperature = ma.fields.Float(allow_none=True, required=True)
    max_output_tokens = ma.fields.Integer(allow_none=True, required=True)
    active_leaf_id = ma.fields.Integer(allow_none=True, required=True, metadata={
        "description": "The newest message of the branch the room shows and continues (null: no messages)."})


class ModelListSchema(ma.Schema):
    models = ma.fields.List(ma.fields.String(), required=True, metadata={"example": ["gemini-2.5-flash"]})
    default = ma.fields.String(required=True, metadata={"example": "gemini-2.5-flash"})


class ChatroomListSchema(ma.Schema):
    chatrooms = ma.fields.List(ma.fields.Nested(ChatroomSchema), required=True)


class MessageErrorSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "rate_limited"})
    message = ma.fields.String(required=True)


RATINGS = ("up", "down")
MAX_FEEDBACK_COMMENT = 2000


class FeedbackSchema(ma.Schema):
    rating = ma.fields.String(allow_none=True, required=True, metadata={"enum": list(RATINGS)})
    comment = ma.fields.String(allow_none=True, required=True)
    # Stored as ISO 8601 text inside the JSON column, in the format of every other timestamp.
    updated_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class FeedbackUpdateSchema(ma.Schema):
    rating = ma.fields.String(required=True, allow_none=True, validate=ma.validate.OneOf(RATINGS),
                              metadata={"description": "up, down, or null to take the rating back."})
    comment = ma.fields.String(load_default=None, allow_none=True,
                               validate=ma.validate.Length(max=MAX_FEEDBACK_COMMENT))


class TokenUsageSchema(ma.Schema):
    prompt_tokens = ma.fields.Integer(required=True)
    output_tokens = ma.fields.Integer(required=True, metadata={"description": "The answer."})
    thinking_tokens = ma.fields.Integer(required=True, metadata={"description": "The model's thoughts."})
    cached_tokens = ma.fields.Integer(required=True, metadata={"description": "Prompt tokens served from cache."})
    total_tokens = ma.fields.Integer(required=True)


class MessageSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    chatroom_id = ma.fields.Integer(required=True)
    role = ma.fields.String(required=True, metadata={"enum": ["user", "model"]})
    content = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={
        "enum": ["pending", "complete", "failed", "blocked", "stopped"],
        "description": "stopped: the user stopped the reply; content holds the text generated until then."})
    error = ma.fields.Nested(MessageErrorSchema, allow_none=True, required=True)
    reply_to = ma.fields.Integer(allow_none=True, required=True)
    parent_id = ma.fields.Integer(allow_none=True, required=True, metadata={
        "description": "The message this one follows: a reply's user message; a user message's previous reply "
                       "(null for the first)."})
    created_at = ma.fields.DateTime(required=True)
    completed_at = ma.fields.DateTime(allow_none=True, required=True)
    usage = ma.fields.Nested(TokenUsageSchema, allow_none=True, required=True,
                             metadata={"description": "Gemini's token counts of a finished reply (null while pending, "
                                                      "for user messages, or when Gemini was not called)."})
    feedback = ma.fields.Nested(FeedbackSchema, allow_none=True, required=True,
                                metadata={"description": "The user's rating of a reply (null: none)."})
    # dump_default: a message read without its attachments (a reply, a post without files) has none.
    attachments = ma.fields.List(ma.fields.Nested(AttachmentSchema), required=True, dump_default=list, metadata={
        "description": "The files sent with a user message, in the order given (a reply has none)."})


class BranchMessageSchema(MessageSchema):
    sibling_ids = ma.fields.List(ma.fields.Integer(), required=True, metadata={
        "description": "The messages with the same parent, this one included, oldest first (\"2 / 3\")."})


class MessagePageSchema(ma.Schema):
    messages = ma.fields.List(ma.fields.Nested(BranchMessageSchema), required=True)
    has_more = ma.fields.Boolean(required=True)


# MessagePageSchema is the first base so that the OpenAPI document lists the room's fields first.
class ChatroomDetailSchema(MessagePageSchema, ChatroomSchema):
    """A Chatroom and a page of its messages in one flat object; dumps {"room", "messages", "has_more"}."""

    def get_attribute(self, obj, attr, default):
        # The room's fields are read off the room, so a new room field is declared on ChatroomSchema alone.
        source = obj if attr in MessagePageSchema._declared_fields else obj["room"]
        return super().get_attribute(source, attr, default)


class MessageCreateSchema(AliasedSchema):
    ALIASES = {"message": "content", "input": "content"}
    content = ma.fields.String(required=True, validate=[ma.validate.Length(min=1, max=MAX_CONTENT), _not_blank],
                               metadata={"example": "Plan a 3-day trip to Lisbon.",
                                         "description": "1-8000 characters. Aliases: message, input."})
    parent_id = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=1, max=MAX_ID), metadata={
        "description": "The reply of this room to follow (null: start from the top). Default: the active leaf. "
                       "Posting under an earlier message's parent edits it: a new branch."})
    attachment_ids = ma.fields.List(
        ma.fields.Integer(validate=ma.validate.Range(min=1, max=MAX_ID)),
        validate=[ma.validate.Length(max=MAX_ATTACHMENTS), _distinct], metadata={
            "description": f"Up to {MAX_ATTACHMENTS} of your files (POST /files), sent to Gemini with this message "
                           "and again with later ones while they fit the history budget."})


class ActiveLeafSchema(ma.Schema):
    message_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=MAX_ID), metadata={
        "description": "Any message of the room: the branch continues to its newest descendant."})


class PostedMessageSchema(ma.Schema):
    message = ma.fields.Nested(MessageSchema, required=True)
    reply = ma.fields.Nested(MessageSchema, required=True)


class RoomQuerySchema(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))


class PageQuerySchema(ma.Schema):
    before = ma.fields.Integer(validate=ma.validate.Range(min=1, max=MAX_ID), metadata={"description": "Messages before this one, on its branch."})
    after = ma.fields.Integer(validate=ma.validate.Range(min=0, max=MAX_ID), metadata={"description": "Messages after this one, on the active branch (0: from the first)."})
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))

    @ma.validates_schema
    def _one_direction(self, data, **kwargs):
        if "before" in data and "after" in data:
            raise ma.ValidationError("Use before or after, not both.", "before")


class WaitQuerySchema(ma.Schema):
    wait = ma.fields.Float(load_default=0, validate=ma.validate.Range(min=0, max=30),
                           metadata={"description": "Seconds (0-30) to wait for the reply before answering."})
