"""The bad-input catalogue: every malformed request gets the one error shape with the right status."""
import pytest

SHAPE = {"code", "status", "error", "message"}


def _assert_shape(r, status, error=None):
    assert r.status_code == status, r.data
    assert r.is_json, r.data
    assert SHAPE <= set(r.json) and r.json["code"] == status
    assert b"Traceback" not in r.data and b"<html" not in r.data.lower()
    if error:
        assert r.json["error"] == error, r.json


@pytest.mark.parametrize("method, path, kwargs, status, error", [
    ("get", "/no/such/route", {}, 404, "not_found"),
    ("post", "/no/such/route", {"data": "x", "content_type": "text/plain"}, 404, "not_found"),
    ("delete", "/auth/signup", {}, 405, "method_not_allowed"),
    ("get", "/auth/login", {}, 405, "method_not_allowed"),
    ("post", "/auth/signup", {"data": "phone=1", "content_type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    ("post", "/auth/signup", {"data": "{\"phone\": ", "content_type": "application/json"}, 400, "invalid_json"),
    ("post", "/auth/signup", {"data": "\xff\xfe", "content_type": "application/json"}, 400, "invalid_json"),
    ("post", "/auth/signup", {"json": ["a", "list"]}, 422, "validation_error"),
    ("post", "/auth/signup", {"json": {"phone": None}}, 422, "validation_error"),
    ("post", "/auth/signup", {"json": {}}, 422, "validation_error"),
    ("post", "/auth/signup", {"json": {"phone": 12345}}, 422, "validation_error"),
    ("get", "/user/me", {}, 401, "token_missing"),
    ("get", "/user/me", {"headers": {"Authorization": "Bearer garbage"}}, 401, "token_invalid"),
    ("get", "/user/me", {"headers": {"Authorization": "Basic abc"}}, 401, None),
    ("get", "/user/me", {"headers": {"Authorization": "Bearer"}}, 401, None),
])
def test_bad_requests_get_the_error_shape(client, method, path, kwargs, status, error):
    """Unknown route, wrong method, non-JSON, invalid JSON, wrong types, missing/garbage token."""
    _assert_shape(getattr(client, method)(path, **kwargs), status, error)


def test_405_names_the_allowed_methods(client):
    """A wrong method is 405 in the error shape with the Allow header RFC 9110 requires."""
    r = client.delete("/auth/signup")
    _assert_shape(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"].split(", ")
    r = client.put("/chatroom")
    assert set(r.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_oversized_body_is_413(client):
    """A body over MAX_CONTENT_LENGTH is 413 payload_too_large in the error shape."""
    big = '{"phone": "' + "1" * (client.application.config["MAX_CONTENT_LENGTH"] + 10) + '"}'
    _assert_shape(client.post("/auth/signup", data=big, content_type="application/json"), 413, "payload_too_large")


def test_validation_errors_name_the_field(client):
    """422 carries errors by location and field and a sentence naming the first bad field."""
    r = client.post("/auth/signup", json={"phone": "+12025550143", "password": "short"})
    _assert_shape(r, 422, "validation_error")
    assert r.json["errors"]["json"]["password"] and r.json["message"].startswith("password")


def test_trailing_slash_is_the_same_route(client):
    """`/user/me/` is `/user/me`: no redirect."""
    r = client.get("/user/me/")
    _assert_shape(r, 401, "token_missing")


def test_unhandled_exception_is_500_without_trace(app, app_logs):
    """An unexpected exception answers 500 in the error shape with the request id, and is logged with it."""
    @app.get("/__boom")
    def boom():
        raise RuntimeError("kaboom secret detail")
    r = app.test_client().get("/__boom", headers={"X-Request-ID": "req-123"})
    _assert_shape(r, 500, "internal_error")
    assert "kaboom" not in r.get_data(as_text=True) and "req-123" in r.json["message"]
    assert r.headers["X-Request-ID"] == "req-123"
    assert "kaboom secret detail" in app_logs.text and "req-123" in app_logs.text


def test_database_down_is_503_not_500(app):
    """A request that needs an unreachable database answers 503 service_unavailable, fast."""
    from gemini_backend import create_app
    broken = create_app({"APP_ENV": "test",
                         "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://postgres@127.0.0.1:1/none"})
    r = broken.test_client().post("/auth/signup", json={"phone": "+12025550143"})
    _assert_shape(r, 503, "service_unavailable")
    assert r.headers["Retry-After"]
