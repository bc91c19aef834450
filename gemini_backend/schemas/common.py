"""Schemas shared by several resources, and the probes'."""
from __future__ import annotations

import re
from typing import Any

import marshmallow as ma

# Text no database can store: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates (not encodable as UTF-8),
# both reachable through JSON escapes ("\u0000", "\ud800"). A 422 for the field, never a 500 from the driver.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "Must be valid Unicode text without NUL (\\u0000) characters."


def has_unstorable_text(value: Any) -> bool:
    """True when value (a string, or strings nested in lists and dicts) holds NUL or a lone surrogate."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(has_unstorable_text(k) or has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_unstorable_text(v) for v in value)
    return False


class AliasedSchema(ma.Schema):
    """A request schema that accepts older clients' field names (ALIASES: alias -> canonical), ignores unknown
    fields, and refuses (422) text no database stores in a declared field: NUL or a lone surrogate."""

    ALIASES: dict[str, str] = {}

    class Meta:
        unknown = ma.EXCLUDE

    @ma.pre_load
    def _apply_aliases(self, data, **kwargs):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, canonical in self.ALIASES.items():
            if alias in data and data.get(canonical) is None:
                data[canonical] = data.pop(alias)
            else:
                data.pop(alias, None)
        self._reject_unstorable_text(data)
        return data

    def _reject_unstorable_text(self, data: dict) -> None:
        """422 for any declared field whose text holds NUL or a lone surrogate (unknown fields are ignored)."""
        errors = {}
        for name, field in self.load_fields.items():
            key = field.data_key or name
            if key in data and has_unstorable_text(data[key]):
                errors[key] = [UNSTORABLE_MESSAGE]
        if errors:
            raise ma.ValidationError(errors)


class MessageOnlySchema(ma.Schema):
    message = ma.fields.String(required=True, metadata={"example": "Done."})


class ServerInfoSchema(ma.Schema):
    name = ma.fields.String(required=True, metadata={"example": "Gemini Backend"})
    version = ma.fields.String(required=True, metadata={"example": "1.0.0"})
    docs = ma.fields.String(required=True, metadata={"example": "/docs"})
    openapi = ma.fields.String(required=True, metadata={"example": "/openapi.json"})
    health = ma.fields.String(required=True, metadata={"example": "/healthz"})


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})


class ReadinessSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), required=True)
    code = ma.fields.Integer()
    error = ma.fields.String()
    message = ma.fields.String()
