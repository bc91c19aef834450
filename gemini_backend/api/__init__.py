"""HTTP API: one flask-smorest Blueprint per resource, registered in this order."""
from __future__ import annotations

from importlib import import_module

from flask import Flask

from gemini_backend.extensions import api

# Order here is the order of the tags in /docs.
BLUEPRINT_MODULES = ("auth", "users", "chatrooms", "files", "search", "exports", "shares", "gemini_models", "billing",
                     "webhooks", "health")


def register_blueprints(app: Flask) -> None:
    """Register every resource blueprint and the bearer security scheme."""
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    from gemini_backend.http import IdConverter
    api.register_converter(IdConverter, lambda converter: {"type": "integer", "format": "int64", "minimum": 1})
    for name in BLUEPRINT_MODULES:
        module = import_module(f"gemini_backend.api.{name}")
        api.register_blueprint(module.blp)
