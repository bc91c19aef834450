"""Logging: one line per record, tagged with the request id when there is one."""
from __future__ import annotations

import logging

from flask import Flask, g, has_request_context


class RequestIdFilter(logging.Filter):
    """Add `request_id` to every record ('-' outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure(app: Flask) -> None:
    """Send the app's logs to stderr once, at LOG_LEVEL."""
    root = logging.getLogger("gemini_backend")
    root.setLevel(app.config["LOG_LEVEL"])
    if not any(getattr(h, "_gemini_backend", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._gemini_backend = True  # type: ignore[attr-defined]
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
