"""Search request and response schemas."""
from __future__ import annotations

import base64
import binascii
import json
import math

import marshmallow as ma

from gemini_backend.schemas.common import UNSTORABLE_MESSAGE, has_unstorable_text

MAX_QUERY = 500  # characters; longer is 422
MAX_LIMIT = 50
MAX_ID = 2**63 - 1


def encode_cursor(score: float, message_id: int) -> str:
    """The opaque `before` value for the results after (score, message_id): base64url of JSON, no padding."""
    return base64.urlsafe_b64encode(json.dumps([score, message_id]).encode()).rstrip(b"=").decode()


class Cursor(ma.fields.String):
    """`before`: a cursor from `next_before`, loaded as (score, message_id)."""

    default_error_messages = {"invalid": "Not a valid cursor: pass next_before of the previous page."}

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[float, int]:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError):
            raise self.make_error("invalid") from None
        if not (isinstance(decoded, list) and len(decoded) == 2):
            raise self.make_error("invalid")
        score, message_id = decoded
        valid_score = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
        valid_id = isinstance(message_id, int) and not isinstance(message_id, bool) and 1 <= message_id <= MAX_ID
        if not (valid_score and valid_id):
            raise self.make_error("invalid")
        return float(score), message_id


def _searchable_text(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must contain a non-space character.")
    if has_unstorable_text(value):
        raise ma.ValidationError(UNSTORABLE_MESSAGE)


class SearchQuerySchema(ma.Schema):
    q = ma.fields.String(required=True, validate=[ma.validate.Length(min=1, max=MAX_QUERY), _searchable_text],
                         metadata={"example": "lisbon \"tram 28\"", "description":
                                   "Words to find (all of them), \"a quoted phrase\", `OR` between two words "
                                   "for either, -word to leave out. Case-insensitive whole words, no stemming. "
                                   f"At most {MAX_QUERY} characters; blank is 422."})
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=MAX_LIMIT))
    before = Cursor(metadata={"description": "The next page: next_before of the previous page."})


class SearchResultSchema(ma.Schema):
    chatroom_id = ma.fields.Integer(required=True)
    chatroom_name = ma.fields.String(required=True)
    message_id = ma.fields.Integer(required=True)
    role = ma.fields.String(required=True, metadata={"enum": ["user", "model"]})
    snippet = ma.fields.String(required=True, metadata={
        "example": "took the <mark>tram</mark> to Belém &amp; back",
        "description": "A passage of the message, HTML-escaped, with the matched words in <mark>...</mark> "
                       "(the only markup)."})
    created_at = ma.fields.DateTime(required=True)


class SearchPageSchema(ma.Schema):
    results = ma.fields.List(ma.fields.Nested(SearchResultSchema), required=True)
    has_more = ma.fields.Boolean(required=True)
    next_before = ma.fields.String(allow_none=True, required=True, metadata={
        "description": "Pass as `before` for the next page; null on the last page."})
