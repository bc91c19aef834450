"""The one error shape of API.md: AppError classes and the handlers that render every error."""
from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)


class ErrorSchema(ma.Schema):
    """The error body of every non-2xx response."""

    code = ma.fields.Integer(required=True, metadata={"description": "HTTP status code", "example": 429})
    status = ma.fields.String(required=True, metadata={"description": "HTTP reason phrase"})
    error = ma.fields.String(required=True, metadata={"description": "stable snake_case machine code"})
    message = ma.fields.String(required=True, metadata={"description": "one human sentence"})
    errors = ma.fields.Dict(metadata={"description": "field validation errors, by location then field"})


class AppError(Exception):
    """An error a client can act on; rendered in the one error shape."""

    status = 400
    error = "bad_request"
    message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, error: str | None = None, status: int | None = None,
                 errors: dict | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.error = error or self.error
        self.status = status or self.status
        self.errors = errors
        self.headers = headers or {}


class InvalidField(AppError):
    """422 validation_error naming one field, in the shape a schema's own error has (message: field: problem)."""

    status, error = 422, "validation_error"

    def __init__(self, field: str, problem: str, location: str = "json", message: str | None = None) -> None:
        super().__init__(message or f"{field}: {problem}", errors={location: {field: [problem]}})


class NotFound(AppError):
    status, error, message = 404, "not_found", "The resource does not exist."


class Conflict(AppError):
    status, error, message = 409, "conflict", "The request conflicts with the current state."


class Unauthorized(AppError):
    status, error, message = 401, "unauthorized", "Authentication is required."


class TooManyRequests(AppError):
    status, error, message = 429, "rate_limited", "Too many requests; try again later."


class ServiceUnavailable(AppError):
    status, error, message = 503, "service_unavailable", "A dependency is not available; try again later."


# Codes for the HTTP errors Werkzeug and webargs raise, where the snake_case phrase is not the best name.
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited",
               500: "internal_error", 503: "service_unavailable"}
_HTTP_MESSAGES = {
    404: "No such route or resource.",
    405: "This method is not allowed on this route.",
    413: "The request body is too large.",
    415: "Send the body as JSON with Content-Type: application/json.",
    422: "Some fields are invalid.",
    500: "Something went wrong on our side; the error has been logged.",
}


def error_body(status: int, error: str, message: str, errors: dict | None = None) -> dict[str, Any]:
    """Build the error body dict."""
    body: dict[str, Any] = {"code": status, "status": HTTPStatus(status).phrase, "error": error, "message": message}
    if errors:
        body["errors"] = errors
    return body


def error_response(status: int, error: str, message: str, errors: dict | None = None,
                   headers: dict[str, str] | None = None):
    """Build a Flask JSON response in the error shape."""
    response = jsonify(error_body(status, error, message, errors))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


RETRY_AFTER_HEADER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                      "schema": {"type": "integer", "minimum": 0}}}
# API.md: a 429 always carries Retry-After.
REQUIRED_RETRY_AFTER_HEADER = {"Retry-After": {**RETRY_AFTER_HEADER["Retry-After"], "required": True}}

# What each shared error status means for any operation that documents it (the `error` codes a client may see).
ERROR_DOCS: dict[int, str] = {
    400: "invalid_json: the body is not valid JSON.",
    401: "token_missing, token_invalid, token_expired or token_revoked: send a valid token as "
         "'Authorization: Bearer <token>'.",
    404: "not_found (unknown id or route) or a more specific *_not_found: no such resource of yours; "
         "another user's resource is 404 too.",
    409: "conflict: the request conflicts with the current state.",
    413: "payload_too_large: the body is larger than MAX_CONTENT_LENGTH.",
    415: "unsupported_media_type: a body that is not JSON; send Content-Type: application/json.",
    422: "validation_error: some fields are invalid; `errors` lists them by location, then field.",
    429: "rate_limited: too many requests; retry after Retry-After seconds.",
    502: "bad_gateway: an upstream service refused the request.",
    503: "service_unavailable: a dependency is not configured or not reachable; retry after Retry-After seconds.",
}


def document_errors(blp, *statuses: int, notes: dict[int, str] | None = None,
                    headers: dict[int, dict[str, Any]] | None = None):
    """Decorator documenting an operation's error responses, all in the one error shape (ErrorSchema).

    `statuses` get the shared meaning of ERROR_DOCS; `notes` adds (or, for a status not in `statuses`,
    gives alone) the operation's own causes, e.g. {409: "phone_taken: ..."}; `headers` documents extra
    response headers by status (429 always documents Retry-After, 503 may carry it).
    """
    notes = notes or {}
    codes = sorted(set(statuses) | set(notes))

    def decorator(func):
        for code in codes:
            parts = [notes[code]] if code in notes else []
            if code in statuses and ERROR_DOCS.get(code) and ERROR_DOCS[code] not in parts:
                parts.append(ERROR_DOCS[code])
            documented = {429: REQUIRED_RETRY_AFTER_HEADER, 503: RETRY_AFTER_HEADER}.get(code, {})
            documented = {**documented, **(headers or {}).get(code, {})}
            func = blp.alt_response(code, schema=ErrorSchema, description=" Or ".join(parts) or None,
                                    headers=documented or None)(func)
        return func
    return decorator


class Api(flask_smorest.Api):
    """flask-smorest Api whose HTTP errors use the one error shape."""

    ERROR_SCHEMA = ErrorSchema

    def _register_responses(self):
        """flask-smorest's response components (one per status, in the error shape), with a DEFAULT_ERROR that
        says what it covers."""
        from flask_smorest.utils import prepare_response
        for status in HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Any other error, in the same shape: 500 internal_error (quote the request id "
                                   "in its message), 503 service_unavailable when the database or Redis is not "
                                   "reachable, 405 method_not_allowed.",
                    "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def handle_http_exception(self, error: HTTPException):
        """Render any HTTPException (abort, webargs validation, routing, Flask-Limiter) in the error shape."""
        code = error.code or 500
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        headers = dict(data.get("headers") or {})
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))  # RFC 9110 15.5.6: a 405 names the methods
        name = _HTTP_CODES.get(code) or _snake(HTTPStatus(code).phrase)
        message = data.get("message") or _HTTP_MESSAGES.get(code) or (error.description or HTTPStatus(code).phrase)
        if code == 400 and errors and _is_json_decode_error(errors):
            name, message, errors = "invalid_json", "The request body is not valid JSON.", None
        elif code == 422 and errors:
            message = _first_validation_message(errors)
        if code == 429 and not data.get("message"):
            message = f"Too many requests (limit: {error.description}); retry after Retry-After seconds."
        if code >= 500:
            log.error("HTTP %s on request %s: %s", code, g.get("request_id"), error)
        return error_response(code, data.get("error") or name, message, errors, headers)


def _is_json_decode_error(errors: dict) -> bool:
    return "Invalid JSON" in str(errors.get("json"))


def _first_validation_message(errors: dict) -> str:
    """Turn webargs' nested messages into one readable sentence naming the first bad field."""
    for location, fields in errors.items():
        if isinstance(fields, dict):
            for field, problems in fields.items():
                first = problems[0] if isinstance(problems, list) and problems else problems
                if isinstance(first, dict):
                    first = next(iter(first.values()), "is invalid")
                    first = first[0] if isinstance(first, list) else first
                if field == "_schema":
                    return str(first)
                return f"{field}: {first}"
    return "Some fields are invalid."


def register_error_handlers(app: Flask) -> None:
    """Render AppError and any unhandled exception in the error shape; never a trace."""

    @app.errorhandler(AppError)
    def handle_app_error(exc: AppError):
        return error_response(exc.status, exc.error, exc.message, exc.errors, exc.headers)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return app.extensions["flask-smorest"]["apis"][""]["ext_obj"].handle_http_exception(exc)
        if _is_unavailable(exc):
            log.warning("dependency unavailable on request %s: %s", g.get("request_id"), exc)
            return error_response(503, "service_unavailable",
                                  "A dependency (database or Redis) is not reachable; try again shortly.",
                                  headers={"Retry-After": "5"})
        log.exception("unhandled error on request %s", g.get("request_id"))
        return error_response(500, "internal_error",
                              f"Something went wrong on our side; quote request id {g.get('request_id')}.")


def _is_unavailable(exc: Exception) -> bool:
    """True for connection-level failures of PostgreSQL or Redis (503, not 500)."""
    import redis
    from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeout
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, PoolTimeout)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    from sqlalchemy.exc import OperationalError
    return isinstance(exc, OperationalError)


def register_jwt_loaders(jwt) -> None:
    """Make every flask-jwt-extended failure a 401 in the error shape."""

    @jwt.unauthorized_loader
    def missing_token(reason: str):
        return error_response(401, "token_missing", "Send an access token as 'Authorization: Bearer <token>'.")

    @jwt.invalid_token_loader
    def invalid_token(reason: str):
        return error_response(401, "token_invalid", f"The token is not valid: {reason}.")

    @jwt.expired_token_loader
    def expired_token(header: dict, payload: dict):
        return error_response(401, "token_expired", "The token has expired; refresh it or log in again.")

    @jwt.revoked_token_loader
    def revoked_token(header: dict, payload: dict):
        return error_response(401, "token_revoked", "The token has been revoked; log in again.")

    @jwt.needs_fresh_token_loader
    def stale_token(header: dict, payload: dict):
        return error_response(401, "token_not_fresh", "This action needs a fresh login.")

    @jwt.token_verification_failed_loader
    def failed_claims(header: dict, payload: dict):
        return error_response(401, "token_invalid", "The token failed verification.")
