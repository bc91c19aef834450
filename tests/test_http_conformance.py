"""HTTP conformance: every 405 names the allowed methods; every declared limit is enforced, and only those."""
from __future__ import annotations

from http import HTTPStatus

import pytest
from flask import Blueprint
from werkzeug.exceptions import MethodNotAllowed, NotFound

from gemini_backend.extensions import limiter
from tests.chat_helpers import ChatUser
from tests.factories import new_phone

SHAPE = {"code", "status", "error", "message"}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _allowed_methods(adapter, path: str, candidates: set[str]) -> set[str]:
    """The methods of every rule the path matches, with the HEAD and OPTIONS that Flask and Werkzeug add."""
    allowed: set[str] = set()
    for method in candidates:
        try:
            rule, _ = adapter.match(path, method=method, return_rule=True)
        except (MethodNotAllowed, NotFound):
            continue
        allowed |= rule.methods
    return allowed


def test_every_405_carries_allow_and_the_error_shape(app, client):
    """RFC 9110 15.5.6: every method a route does not serve is 405, Allow lists exactly those it does, error shape."""
    adapter = app.url_map.bind("localhost")
    candidates = METHODS.union(*(rule.methods for rule in app.url_map.iter_rules()))
    problems, checked = [], 0
    for rule in app.url_map.iter_rules():
        path = adapter.build(rule.endpoint, dict.fromkeys(rule.arguments, 1))
        allowed = _allowed_methods(adapter, path, candidates)
        for method in sorted(candidates - allowed):
            r = client.open(path, method=method)
            checked += 1
            allow = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
            if r.status_code != 405 or allow != allowed:
                problems.append(f"{method} {path}: {r.status_code}, Allow {sorted(allow)} != {sorted(allowed)}")
                continue
            if method == "HEAD":
                if r.data:
                    problems.append(f"HEAD {path}: a body on a HEAD answer")
                continue
            body = r.get_json(silent=True)
            if not (isinstance(body, dict) and SHAPE <= set(body) and body["code"] == 405
                    and body["status"] == HTTPStatus(405).phrase and body["error"] == "method_not_allowed"):
                problems.append(f"{method} {path}: not the error shape: {r.data[:200]!r}")
    assert checked > 50 and not problems, "\n".join(problems)


# A blueprint like any resource's, with a limit declared on one route and one declared for the whole
# blueprint: the before/after request hooks of Flask-Limiter have to run for both to be checked and described.
probe = Blueprint("limit_probe", __name__, url_prefix="/limit-probe")
probe_wide = Blueprint("limit_probe_wide", __name__, url_prefix="/limit-probe-wide")


@probe.get("/route")
@limiter.limit("1/minute")
def limited_route():
    """A route with a limit of its own."""
    return {"ok": True}


@probe_wide.get("/route")
def route_of_limited_blueprint():
    """A route of a blueprint with a blueprint-wide limit."""
    return {"ok": True}


limiter.limit("1/minute")(probe_wide)


@pytest.fixture()
def probe_client(app):
    """conftest's app (emptied limit counters) with the probe blueprints, registered before its first request."""
    app.register_blueprint(probe)
    app.register_blueprint(probe_wide)
    return app.test_client()


@pytest.mark.parametrize("path", ["/limit-probe/route", "/limit-probe-wide/route"])
def test_a_limit_outside_the_auth_routes_is_enforced(probe_client, path):
    """A limit on a route or blueprint other than auth is described (X-RateLimit-*), then enforced (429)."""
    first = probe_client.get(path)
    assert first.status_code == 200, first.json
    assert first.headers["X-RateLimit-Limit"] == "1" and first.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in first.headers
    second = probe_client.get(path)
    assert second.status_code == 429 and second.json["error"] == "rate_limited", second.json
    assert int(second.headers["Retry-After"]) > 0 and second.headers["X-RateLimit-Remaining"] == "0"


def test_unlimited_routes_get_no_rate_limit_headers(app, client):
    """Flask-Limiter describes only limited routes; the message post carries its quota's headers, once each."""
    alice = ChatUser(app, client)
    room = alice.room()
    unlimited = [client.get("/healthz"), client.get("/"), alice.get("/chatroom"), alice.get("/user/me"),
                 alice.get(f"/chatroom/{room}"), client.get("/no/such/route"), client.get("/auth/login")]
    for r in unlimited:
        assert r.status_code < 500 and not any(h in r.headers for h in RATE_LIMIT_HEADERS), (r.status, r.headers)
    post = alice.post(f"/chatroom/{room}/message", json={"content": "hi"})
    assert post.status_code == 202, post.json
    assert [post.headers.getlist(h) for h in RATE_LIMIT_HEADERS[:2]] == [["5"], ["4"]]
    assert len(post.headers.getlist("X-RateLimit-Reset")) == 1
    login = client.post("/auth/login", json={"phone": new_phone(), "password": "whatever1"})
    assert login.status_code == 401 and login.headers["X-RateLimit-Limit"] == app.config["AUTH_RATE_LIMIT"].split()[0]


def test_the_auth_limit_runs_after_the_request_is_tagged_and_the_body_checked(app, client):
    """A non-JSON body is 415 without spending the per-IP auth limit; its 429 echoes the client's X-Request-ID."""
    app.config["AUTH_RATE_LIMIT"] = "1 per minute"
    body = {"phone": new_phone(), "password": "whatever1"}
    not_json = client.post("/auth/login", data="phone=1", content_type="application/x-www-form-urlencoded")
    assert not_json.status_code == 415 and "X-RateLimit-Limit" not in not_json.headers, not_json.headers
    assert client.post("/auth/login", json=body).status_code == 401
    r = client.post("/auth/login", json=body, headers={"X-Request-ID": "probe-429"})
    assert r.status_code == 429 and r.headers["X-Request-ID"] == "probe-429", (r.status, r.headers)
