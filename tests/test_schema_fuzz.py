"""QUALITY.md S9: fuzz every operation of the app's own /openapi.json with schemathesis, in-process (WSGI).

Each operation is one test (schemathesis' examples, coverage and fuzzing phases; FUZZ_MAX_EXAMPLES, 30 by
default, for the fuzzing phase) against a fresh app over emptied stores, holding a World: a Pro user (the
documented example phone and password) and a Basic user with no message left today, each owning a room with a
user message and its finished reply. Every case is steered by a stable hash of its generated data:
- secured operations get a real bearer token of one of the users (the refresh token for /auth/refresh), or no
  token, or schemathesis' fuzzed Authorization value;
- path ids mostly hit the token user's room, message or reply, sometimes the other user's room or the
  generated ids;
- half of the auth bodies use the Pro user's phone with its password or a live code (sign-ups a valid new
  number), so success paths are fuzzed too;
- some string fields get NUL, a lone surrogate, RTL/emoji or a BOM appended.

Checks on every response: no 5xx (except a documented 503 for what the tests leave unconfigured: Stripe);
the status code is documented explicitly for the operation (the catch-all `default` does not count); body,
content type and documented headers match the document; every error is the one error shape of API.md.

Stripe and Gemini are not configured here: billing routes answer 503 billing_unavailable (or 409 for the Pro
user), the webhook 503 webhook_not_configured. Nothing consumes the queue, so every pending reply is marked
failed before each case (a stream or long-poll never waits on a reply nobody will finish) and `wait` is capped.
"""
from __future__ import annotations

import os
import zlib
from http import HTTPStatus

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import content_type_conformance
from schemathesis.specs.openapi.checks import (response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)
from sqlalchemy import update

from gemini_backend import create_app
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Message, User, utcnow
from tests import backends
from tests.factories import create_user, tokens_for

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "30"))
MAX_WAIT = 0.2  # seconds: cap for the long-poll `wait` query parameter (nobody finishes replies here)
# The documented examples of /openapi.json: the examples phase logs in as the Pro user.
PHONE, PASSWORD = "+14155552671", "correct horse battery"
# 5xx the test environment explains: Stripe is not configured.
EXPECTED_UNAVAILABLE = {"billing_unavailable", "webhook_not_configured"}
FAILED = {"code": "ai_not_configured", "message": "Gemini is not configured."}

# Only /openapi.json is read from this app: no database is touched at import time.
schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"APP_ENV": "test"}))
schema.config.update(request_timeout=5)  # an event stream is read for at most this long
schema.config.generation.update(max_examples=MAX_EXAMPLES)


def _bucket(salt: str, *parts, modulo: int) -> int:
    """A stable choice derived from the generated data, so Hypothesis replays and shrinks the same case."""
    return zlib.crc32(repr((salt, *parts)).encode("utf-8", "surrogatepass")) % modulo


class World:
    """What the fuzzed requests aim at: a Pro user (with a password) and a Basic user (with a Stripe customer id,
    so the portal reaches Stripe's configuration check, and no message left today), each with a room holding a
    user message and its reply."""

    def __init__(self, app) -> None:
        self.app = app
        self.pro = create_user(app, phone=PHONE, password=PASSWORD, pro=True, name="Fuzz")
        self.basic = create_user(app)
        with app.app_context():
            db.session.execute(update(User).where(User.id == self.basic).values(stripe_customer_id="cus_fuzz"))
            db.session.commit()
        self.rooms: dict[int, tuple[int, int, int]] = {}
        self.codes: dict[str, str] = {}
        self.reset()
        self._use_up_daily_quota(self.basic)

    def otp(self, purpose: str) -> str:
        """A live one-time code of the Pro user for purpose (OTP_DELIVERY=response in tests), asked for once."""
        if purpose not in self.codes:
            response = self.app.test_client().post("/auth/send-otp", json={"phone": PHONE, "purpose": purpose})
            assert response.status_code == 200, response.json
            self.codes[purpose] = response.json["otp"]
        return self.codes[purpose]

    def _use_up_daily_quota(self, user_id: int) -> None:
        """The Basic user has no message left today: its posts answer 429 daily_limit_reached (with Retry-After)."""
        client, headers = self.app.test_client(), {"Authorization": f"Bearer {self.tokens(user_id)['access_token']}"}
        room = self.rooms[user_id][0]
        for _ in range(self.app.config["BASIC_DAILY_LIMIT"]):
            response = client.post(f"/chatroom/{room}/message", json={"content": "hi"}, headers=headers)
            assert response.status_code == 202, response.json
        assert client.post(f"/chatroom/{room}/message", json={"content": "hi"}, headers=headers).status_code == 429
        self.reset()

    def _room_with_messages(self, user_id: int) -> tuple[int, int, int]:
        now = utcnow()
        room = Chatroom(user_id=user_id, name="Fuzz room", created_at=now, updated_at=now, last_activity_at=now,
                        last_message_at=now, message_count=2)
        db.session.add(room)
        db.session.flush()
        message = Message(chatroom_id=room.id, role="user", content="Hello", status="complete", created_at=now,
                          completed_at=now)
        db.session.add(message)
        db.session.flush()
        reply = Message(chatroom_id=room.id, role="model", content="", status="failed", reply_to=message.id,
                        parent_id=message.id, error=FAILED, created_at=now, completed_at=now)
        db.session.add(reply)
        db.session.flush()
        room.active_leaf_id = reply.id
        db.session.commit()
        return room.id, message.id, reply.id

    def reset(self) -> None:
        """Before each case: no pending reply, and each user's room and messages exist (a case may delete them)."""
        with self.app.app_context():
            db.session.execute(update(Message).where(Message.status == "pending").values(
                status="failed", completed_at=utcnow(), error=FAILED))
            db.session.commit()
            for user_id in (self.pro, self.basic):
                if user_id not in self.rooms or db.session.get(Chatroom, self.rooms[user_id][0]) is None:
                    self.rooms[user_id] = self._room_with_messages(user_id)
            db.session.remove()

    def tokens(self, user_id: int) -> dict:
        return tokens_for(self.app, user_id)


@pytest.fixture()
def fuzz_app(_schema):
    """The app under test, like conftest's `app`, with the per-IP auth limit raised so auth cases reach
    validation instead of all answering 429 (the 429 itself is checked in test_auth_rate_limit_documented)."""
    app = create_app({"APP_ENV": "test", "AUTH_RATE_LIMIT": "100000 per minute"})
    with app.app_context():
        backends.empty_all_stores(app)
        world = World(app)
    yield app, world
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _aim_path_parameters(case, world: World, user_id: int) -> None:
    """Mostly real ids: the token user's own room, its user message or its reply; sometimes the other user's room
    (404, never 403), sometimes the generated ids (mostly unknown: 404)."""
    params = case.path_parameters
    if not params or "room_id" not in params:
        return
    choice = _bucket("path", case.operation.label, case.method, params, case.query, case.body, case.headers,
                     modulo=6)
    if choice == 0:
        return
    owner = (world.basic if user_id == world.pro else world.pro) if choice == 1 else user_id
    room, message, reply = world.rooms[owner]
    params["room_id"] = room
    if "message_id" in params and choice >= 3:
        params["message_id"] = message if choice == 3 else reply


def _aim_body(case, world: World) -> None:
    """Half of the auth cases use the Pro user's phone (and its password or a live code), so the success paths
    and their response schemas are fuzzed too, not only validation; sign-ups get a valid new number."""
    body, path = case.body, case.operation.path
    if not isinstance(body, dict) or not path.startswith("/auth/"):
        return
    choice = _bucket("body", case.operation.label, case.method, body, case.query, case.headers, modulo=4)
    if choice >= 2:
        return
    if path == "/auth/signup":
        body["phone"] = f"+1202555{_bucket('phone', body, modulo=10000):04d}"
    elif path in ("/auth/login", "/auth/send-otp", "/auth/forgot-password"):
        body["phone"] = PHONE
        if path == "/auth/login" and choice == 0:
            body["password"] = PASSWORD
    elif path in ("/auth/verify-otp", "/auth/reset-password"):
        body["phone"] = PHONE
        body["otp"] = world.otp("login" if path == "/auth/verify-otp" else "reset")
    elif path == "/auth/change-password" and choice == 0:
        body["current_password"] = PASSWORD


HOSTILE_TEXT = ("\x00", "\ud800", "\u202e\U0001f600" * 40, "\ufeff")  # NUL, a lone surrogate, RTL + emoji, BOM


def _hostile_text(case) -> None:
    """Now and then, put text no database stores (NUL, a lone surrogate) or odd unicode into a string field:
    generators rarely produce those, and they are what turns into driver errors (500) on PostgreSQL."""
    if not isinstance(case.body, dict) or case.media_type == "multipart/form-data":  # no client encodes those there
        return
    names = [name for name, value in case.body.items() if isinstance(value, str)]
    choice = _bucket("text", case.operation.label, case.method, case.path_parameters, case.query, case.body,
                     case.headers, modulo=3 * len(HOSTILE_TEXT))
    if names and choice < len(HOSTILE_TEXT):
        name = names[choice % len(names)]
        case.body[name] = case.body[name][:40] + HOSTILE_TEXT[choice]


def _cap_wait(case) -> None:
    if isinstance(case.query, dict) and "wait" in case.query:
        try:
            value = float(case.query["wait"])
        except (TypeError, ValueError):
            return
        if MAX_WAIT < value <= 30:
            case.query["wait"] = MAX_WAIT


def _authenticate(case, world: World) -> tuple[dict[str, str], int]:
    """Headers with no token, a fuzzed or forged one, or a real one of the Pro or the Basic user; and the user
    the case acts as (the Pro user when no real token is sent)."""
    if not case.operation.definition.raw.get("security"):
        return {}, world.pro
    choice = _bucket("auth", case.operation.label, case.method, case.path_parameters, case.query, case.body,
                     case.headers, modulo=10)
    generated = case.headers.pop("Authorization", None) if isinstance(case.headers, dict) else None
    if choice == 0:
        return {}, world.pro  # 401 token_missing
    if choice == 1:
        # schemathesis' own (fuzzed) Authorization value, or a forged token: 401
        return {"Authorization": generated if generated is not None else "Bearer not.a.token"}, world.pro
    user_id = world.pro if choice < 7 else world.basic
    kind = "refresh_token" if case.operation.path == "/auth/refresh" else "access_token"
    return {"Authorization": f"Bearer {world.tokens(user_id)[kind]}"}, user_id


def no_unexpected_server_error(ctx, response, case) -> None:
    """No 5xx, except a documented 503 for the dependency the tests leave unconfigured (Stripe)."""
    if response.status_code < 500:
        return
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    documented = str(response.status_code) in case.operation.definition.raw.get("responses", {})
    if response.status_code == 503 and documented and error in EXPECTED_UNAVAILABLE:
        return
    raise AssertionError(f"Server error {response.status_code} ({error}): {response.text[:500]}")


def status_code_documented(ctx, response, case) -> None:
    """The status code is one the operation documents explicitly, not only through the `default` response."""
    if case.method.upper() != case.operation.method.upper():
        return  # a coverage probe with a method the path does not serve (405): not this operation's response
    responses = case.operation.definition.raw.get("responses", {})
    if str(response.status_code) not in responses:
        raise AssertionError(f"Undocumented status {response.status_code} for {case.operation.label} "
                             f"(documented: {', '.join(sorted(responses))}): {response.text[:300]}")


def error_shape(ctx, response, case) -> None:
    """Every non-2xx body is {code, status, error, message, errors?} with code == the HTTP status."""
    if response.status_code < 400:
        return
    body = _json(response)
    assert isinstance(body, dict), f"error body is not a JSON object: {response.text[:300]}"
    allowed = {"code", "status", "error", "message", "errors"}
    if case.operation.path == "/readyz":
        allowed.add("checks")
    assert {"code", "status", "error", "message"} <= set(body) <= allowed, body
    assert body["code"] == response.status_code, body
    assert body["status"] == HTTPStatus(response.status_code).phrase, body
    assert isinstance(body["error"], str) and body["error"] and body["error"] == body["error"].lower(), body
    assert isinstance(body["message"], str) and body["message"], body
    if "errors" in body:
        assert isinstance(body["errors"], dict) and body["errors"], body


def _json(response):
    try:
        return response.json()
    except Exception:
        return None


CHECKS = [no_unexpected_server_error, status_code_documented, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, error_shape]


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))
def test_fuzz_operation(case, fuzz_app):
    app, world = fuzz_app
    world.reset()
    headers, user_id = _authenticate(case, world)
    _aim_path_parameters(case, world, user_id)
    _aim_body(case, world)
    _hostile_text(case)
    _cap_wait(case)
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)


DEEP = "[" * 50_000 + "]" * 50_000  # within MAX_CONTENT_LENGTH, beyond Python's JSON recursion limit


@pytest.mark.parametrize("method, path, data, headers, status", [
    ("POST", "/auth/signup", DEEP, {}, 400),
    ("POST", "/chatroom/{room_id}/message", '{"content": ' + DEEP + "}", {}, 400),
    ("POST", "/chatroom", '{"name": "a\\u0000b"}', {}, 422),
    ("POST", "/chatroom", '{"title": "\\ud800"}', {}, 422),
    ("PATCH", "/chatroom/{room_id}", '{"name": "x\\udfff"}', {}, 422),
    ("POST", "/chatroom/{room_id}/message", '{"content": "NUL \\u0000 here"}', {}, 422),
    ("POST", "/chatroom/{room_id}/message", '{"content": "hi"}', {"Idempotency-Key": "a\x00b"}, 422),
    ("POST", "/auth/signup", '{"phone": "+12025550123", "name": "\\ud83d"}', {}, 422),
    ("POST", "/auth/login", '{"phone": "+14155552671", "password": "x\\ud800yyyyyyy"}', {}, 422),
    ("POST", "/auth/change-password", '{"new_password": "abcdefgh\\u0000"}', {}, 422),
])
def test_hostile_input_is_a_client_error(fuzz_app, method, path, data, headers, status):
    """What the fuzzing found: JSON nested too deeply was a RecursionError (500); NUL or a lone surrogate in a
    text field was a driver error (500; NUL on PostgreSQL only); so was NUL in Idempotency-Key. Now 400/422."""
    app, world = fuzz_app
    room = world.rooms[world.pro][0]
    operation = schema[path][method]
    headers = {**headers, "Authorization": f"Bearer {world.tokens(world.pro)['access_token']}"}
    response = app.test_client().open(path.format(room_id=room), method=method, data=data, headers=headers,
                                      content_type="application/json")
    assert response.status_code == status, response.json
    case = operation.Case(path_parameters={"room_id": room} if "{room_id}" in path else None)
    case.validate_response(response, checks=[no_unexpected_server_error, status_code_documented,
                                             content_type_conformance, response_schema_conformance, error_shape])


def test_auth_rate_limit_documented(app, client):
    """The per-IP auth limit (conftest's app, default AUTH_RATE_LIMIT) answers 429 with Retry-After, as documented
    for the operation."""
    operation = schema["/auth/login"]["POST"]
    for _ in range(100):
        response = client.post("/auth/login", json={})  # 422 until the limit: counted, and no password hashing
        if response.status_code != 422:
            break
    assert response.status_code == 429, response.json
    assert response.headers.get("Retry-After")
    case = operation.Case(body={})
    case.validate_response(response, checks=[status_code_documented, content_type_conformance,
                                             response_schema_conformance, response_headers_conformance,
                                             error_shape])
