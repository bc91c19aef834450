"""Request plumbing: request ids, trailing slashes, JSON-only bodies, security headers, local Swagger UI assets."""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import flask_smorest
import marshmallow as ma
import swagger_ui_bundle
from typing import Any, Callable

from flask import Flask, Response, g, jsonify, request, send_from_directory
from flask.sessions import SessionInterface
from flask_cors import CORS
from webargs.flaskparser import FlaskParser
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from gemini_backend.errors import error_response

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class IdConverter(IntegerConverter):
    """`<id:name>`: a positive integer that fits a BIGINT (larger ones are 404, never a database error)."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        super().__init__(url_map, min=1, max=2**63 - 1)


@functools.cache
def _schema_instance(schema_class: type[ma.Schema]) -> ma.Schema:
    """The one shared instance of a request schema class (schemas keep no per-load state)."""
    return schema_class()


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, where a body nested too deeply for Python's JSON decoder is 400 invalid_json
    (like any other undecodable body), not a RecursionError and a 500."""

    def _get_schema(self, argmap, req):
        # webargs makes a new instance of a schema class on every request; one per class does the same job.
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            return _schema_instance(argmap)
        return super()._get_schema(argmap, req)

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            raise json.JSONDecodeError("Invalid JSON: nested too deeply", doc="<request body>", pos=0) from None


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest Blueprint whose @arguments parse JSON bodies with JsonBodyParser."""

    ARGUMENTS_PARSER = JsonBodyParser()


class StripTrailingSlash:
    """WSGI middleware: `/chatroom/` is served as `/chatroom` (no redirect), as API.md requires."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if len(path) > 1 and path.endswith("/") and not path.startswith("/docs/static"):
            environ["PATH_INFO"] = path.rstrip("/") or "/"
        return self.wsgi_app(environ, start_response)


class NoCookieSessions(SessionInterface):
    """The API keeps no cookie sessions (clients send bearer tokens): skip Flask's cookie work on every request."""

    def open_session(self, app: Flask, request) -> None:
        return None  # Flask then uses its read-only null session

    def save_session(self, app: Flask, session, response) -> None:
        return None


EXPOSED_HEADERS = ["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Cache",
                   "X-Request-ID"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-Request-ID"]


def install_cors(app: Flask) -> None:
    """CORS for the origins in CORS_ORIGINS only (none when unset), exposing the headers clients read."""
    origins = app.config["CORS_ORIGINS"]
    if origins:
        CORS(app, origins=origins, expose_headers=EXPOSED_HEADERS, allow_headers=ALLOWED_HEADERS,
             methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"], max_age=600)


def install_proxy_fix(app: Flask) -> None:
    """Behind TRUSTED_PROXY_HOPS reverse proxies, take the client address (and scheme) from the entries they
    appended to X-Forwarded-For (-Proto); with 0 the headers are ignored, so a direct client cannot forge them."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def install(app: Flask) -> None:
    """Hook the request plumbing into the app."""
    install_cors(app)
    app.session_interface = NoCookieSessions()
    app.wsgi_app = StripTrailingSlash(app.wsgi_app)  # type: ignore[method-assign]
    install_proxy_fix(app)
    app.url_map.converters["id"] = IdConverter
    swagger_dir = Path(swagger_ui_bundle.swagger_ui_path)

    @app.get("/docs/static/<path:filename>")
    def swagger_ui_asset(filename: str):
        """Swagger UI's files, served by the app so /docs works with no internet."""
        return send_from_directory(swagger_dir, filename, max_age=86400)

    def tag_request():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()

    def require_json_body():
        # A body in any other format would be read as "no fields" and hide the client's mistake.
        if request.routing_exception is not None:
            return None  # 404/405 win over a body problem
        if request.method in _BODY_METHODS and (request.content_length or request.headers.get("Transfer-Encoding")):
            if not request.is_json:
                if not _takes_multipart(app):
                    return error_response(415, "unsupported_media_type",
                                          "Send the body as JSON with Content-Type: application/json.")
                if request.mimetype != "multipart/form-data":
                    return error_response(415, "unsupported_media_type",
                                          "Send the file as multipart/form-data, in the field `file`.")
        return None

    # Ahead of Flask-Limiter's check (bound earlier, in bind_storage): its 429 carries the request id, and a body
    # that is not JSON is refused before it costs a limit hit (a storage round trip) or counts against the client.
    app.before_request_funcs.setdefault(None, [])[:0] = [tag_request, require_json_body]

    def drop_retry_after_on_success(response):
        """Flask-Limiter puts Retry-After on every limited route's response; it means something only on a refusal."""
        if response.status_code < 400:
            response.headers.pop("Retry-After", None)
        return response

    # First in the list, so it runs last: Flask runs after_request hooks in reverse, Flask-Limiter's included.
    app.after_request_funcs.setdefault(None, []).insert(0, drop_retry_after_on_success)

    @app.after_request
    def finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def multipart_body(limit: Callable[[], int]):
    """Decorator, under @jwt_required: the route takes a multipart/form-data body (an upload) of at most limit()
    bytes, its own limit in place of MAX_CONTENT_LENGTH (Werkzeug answers 413 above it, before the form is read)."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            request.max_content_length = limit()
            return view(*args, **kwargs)
        wrapper.takes_multipart = True  # type: ignore[attr-defined]  # copied up by the decorators above
        return wrapper
    return decorator


def _takes_multipart(app: Flask) -> bool:
    """Whether the requested route is a multipart_body one (asked only of bodies that are not JSON)."""
    view = app.view_functions.get(request.endpoint or "")
    handler = getattr(getattr(view, "view_class", None), request.method.lower(), view)
    return bool(getattr(handler, "takes_multipart", False))


# The OpenAPI security requirement of a route that takes an access token (the scheme api/__init__ registers).
BEARER = [{"bearerAuth": []}]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response from an already serialised body (flask-smorest passes a Response through untouched)."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response
