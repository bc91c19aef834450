"""Security scenarios S2-S6 and S10 of QUALITY.md."""
import base64
import json
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import select, update

from gemini_backend.extensions import db
from gemini_backend.models import OtpChallenge, User, utcnow
from tests.factories import create_user, new_phone, tokens_for
from tests.test_auth import bearer, login_by_otp, otp_for, signup


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


# --- S2: token problems -------------------------------------------------------------------------

def _forged_tokens(app, user_id):
    good = tokens_for(app, user_id)
    payload = pyjwt.decode(good["access_token"], options={"verify_signature": False})
    secret = app.config["JWT_SECRET_KEY"]
    expired = dict(payload, exp=int(time.time()) - 10, iat=int(time.time()) - 100, nbf=int(time.time()) - 100)
    return {
        "malformed": "not.a.jwt",
        "garbage": "abc",
        "expired": pyjwt.encode(expired, secret, algorithm="HS256"),
        "wrong_signature": pyjwt.encode(payload, "another-secret-another-secret-another", algorithm="HS256"),
        "alg_none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(payload) + ".",
        "hs512": pyjwt.encode(payload, secret, algorithm="HS512"),
        "refresh_as_access": good["refresh_token"],
        "unknown_user": pyjwt.encode(dict(payload, sub="999999"), secret, algorithm="HS256"),
    }


def test_s2_missing_token_is_401(client):
    """No Authorization header: 401 token_missing in the error shape."""
    r = client.get("/user/me")
    assert r.status_code == 401 and r.json["error"] == "token_missing" and r.json["status"] == "Unauthorized"


@pytest.mark.parametrize("kind", ["malformed", "garbage", "expired", "wrong_signature", "alg_none", "hs512",
                                  "refresh_as_access", "unknown_user"])
def test_s2_bad_tokens_are_401(app, client, kind):
    """Malformed, expired, wrong-signature, alg:none, other-algorithm and refresh-as-access tokens are 401."""
    user_id = create_user(app)
    token = _forged_tokens(app, user_id)[kind]
    r = client.get("/user/me", headers=bearer(token))
    assert r.status_code == 401, (kind, r.json)
    assert set(r.json) >= {"code", "status", "error", "message"} and r.json["code"] == 401


def test_s2_an_accepted_token_still_expires(app, client):
    """A token accepted before is 401 token_expired once its exp has passed."""
    user_id = create_user(app)
    payload = pyjwt.decode(tokens_for(app, user_id)["access_token"], options={"verify_signature": False})
    now = int(time.time())
    token = pyjwt.encode(dict(payload, iat=now, nbf=now, exp=now + 2), app.config["JWT_SECRET_KEY"],
                         algorithm="HS256")
    assert client.get("/user/me", headers=bearer(token)).status_code == 200
    time.sleep(max(0.0, now + 2.2 - time.time()))
    r = client.get("/user/me", headers=bearer(token))
    assert r.status_code == 401 and r.json["error"] == "token_expired", r.json


def test_s2_a_token_of_another_app_is_refused(app, client):
    """A token good for one app (another secret) is 401 on this one."""
    from gemini_backend import create_app
    other = create_app({"APP_ENV": "test", "JWT_SECRET_KEY": "another-secret-" + "x" * 40})
    user_id = create_user(app)
    foreign = tokens_for(other, user_id)["access_token"]
    assert other.test_client().get("/user/me", headers=bearer(foreign)).status_code == 200
    assert client.get("/user/me", headers=bearer(foreign)).status_code == 401


def test_s2_access_token_cannot_refresh(app, client):
    """An access token presented to /auth/refresh is 401."""
    t = tokens_for(app, create_user(app))
    assert client.post("/auth/refresh", headers=bearer(t["access_token"])).status_code == 401


# --- S3: guessing -------------------------------------------------------------------------------

def test_s3_code_dies_after_five_wrong_guesses(client):
    """After 5 wrong guesses the right code fails too (the counter is in the database)."""
    phone = new_phone()
    signup(client, phone=phone)
    code = otp_for(client, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        r = client.post("/auth/verify-otp", json={"phone": phone, "otp": wrong})
        assert r.status_code == 400 and r.json["error"] == "otp_invalid"
    r = client.post("/auth/verify-otp", json={"phone": phone, "otp": code})
    assert r.status_code == 400 and r.json["error"] == "otp_invalid"


def test_s3_four_wrong_guesses_still_allow_the_right_code(client):
    """The limit is exactly 5: after 4 wrong guesses the right code still works."""
    phone = new_phone()
    signup(client, phone=phone)
    code = otp_for(client, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(4):
        client.post("/auth/verify-otp", json={"phone": phone, "otp": wrong})
    assert client.post("/auth/verify-otp", json={"phone": phone, "otp": code}).status_code == 200


# --- S4: reuse, expiry, purpose -----------------------------------------------------------------

def test_s4_code_is_single_use(client):
    """A code that logged in once is refused the second time."""
    phone = new_phone()
    signup(client, phone=phone)
    code = otp_for(client, phone)
    assert client.post("/auth/verify-otp", json={"phone": phone, "otp": code}).status_code == 200
    r = client.post("/auth/verify-otp", json={"phone": phone, "otp": code})
    assert r.status_code == 400 and r.json["error"] == "otp_invalid"


def test_s4_expired_code_is_refused(app, client):
    """A code used after its 5 minutes is refused."""
    phone = new_phone()
    signup(client, phone=phone)
    code = otp_for(client, phone)
    with app.app_context():
        db.session.execute(update(OtpChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert client.post("/auth/verify-otp", json={"phone": phone, "otp": code}).status_code == 400


def test_s4_code_is_bound_to_its_purpose(client):
    """A reset code cannot log in, and a login code cannot reset the password."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    reset_code = client.post("/auth/forgot-password", json={"phone": phone}).json["otp"]
    assert client.post("/auth/verify-otp", json={"phone": phone, "otp": reset_code}).status_code == 400
    from gemini_backend.extensions import limiter
    limiter.reset()  # the next send would otherwise wait out the one-a-minute limit
    login_code = otp_for(client, phone)
    r = client.post("/auth/reset-password", json={"phone": phone, "otp": login_code, "new_password": "other-pass"})
    assert r.status_code == 400 and r.json["error"] == "otp_invalid"


def test_s4_a_new_code_replaces_the_old_one(client):
    """Requesting a new code kills the previous one."""
    from gemini_backend.extensions import limiter
    phone = new_phone()
    signup(client, phone=phone)
    first = otp_for(client, phone)
    limiter.reset()
    second = otp_for(client, phone)
    if first != second:
        assert client.post("/auth/verify-otp", json={"phone": phone, "otp": first}).status_code == 400
    assert client.post("/auth/verify-otp", json={"phone": phone, "otp": second}).status_code == 200


def test_s4_unknown_number_is_the_same_otp_invalid(client):
    """verify-otp for a number with no account is the same 400 otp_invalid as a wrong code."""
    phone = new_phone()
    signup(client, phone=phone)
    code = otp_for(client, phone)
    wrong = client.post("/auth/verify-otp", json={"phone": phone, "otp": f"{(int(code) + 1) % 10**6:06d}"})
    unknown = client.post("/auth/verify-otp", json={"phone": new_phone(), "otp": code})
    assert wrong.status_code == unknown.status_code == 400 and wrong.json == unknown.json


# --- S5: send flood and enumeration -------------------------------------------------------------

def test_s5_second_send_within_a_minute_is_429(client):
    """One code per minute per phone: the second send is 429 otp_rate_limited with Retry-After."""
    phone = new_phone()
    assert client.post("/auth/send-otp", json={"phone": phone}).status_code == 200
    r = client.post("/auth/send-otp", json={"phone": phone})
    assert r.status_code == 429 and r.json["error"] == "otp_rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 60


def test_s5_five_sends_an_hour(app, client):
    """At most 5 sends per phone per hour over all purposes, even when the minute limit has passed each time."""
    from gemini_backend.extensions import limiter
    from limits import parse
    phone = new_phone()
    minute = parse("1/minute")
    for _ in range(5):
        assert client.post("/auth/send-otp", json={"phone": phone}).status_code == 200
        with app.app_context():
            limiter.limiter.clear(minute, "otp-send", phone, "login")  # as if a minute had passed
    r = client.post("/auth/send-otp", json={"phone": phone})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60


def test_s5_minute_limit_is_per_purpose(client):
    """A login code and then a reset code for the same number within a minute both go out; a second login
    code is still refused."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    assert client.post("/auth/send-otp", json={"phone": phone}).status_code == 200
    assert client.post("/auth/forgot-password", json={"phone": phone}).status_code == 200
    assert client.post("/auth/send-otp", json={"phone": phone}).status_code == 429


def test_s15_forwarded_for_counts_only_with_trusted_hops(make_app):
    """With TRUSTED_PROXY_HOPS=0 a forged X-Forwarded-For changes nothing: rotating it still hits the per-IP
    limit. With 1 trusted hop, the client address is the proxy's last entry, so distinct clients behind one
    proxy are limited separately."""
    direct = make_app(AUTH_RATE_LIMIT="3 per minute").test_client()
    forged = [direct.post("/auth/login", json={"phone": new_phone(), "password": "whatever1"},
                          headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(4)]
    assert forged[:3] == [401, 401, 401] and forged[3] == 429

    proxied = make_app(AUTH_RATE_LIMIT="3 per minute", TRUSTED_PROXY_HOPS=1).test_client()
    distinct = [proxied.post("/auth/login", json={"phone": new_phone(), "password": "whatever1"},
                             headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(6)]
    assert distinct == [401] * 6
    one_client = [proxied.post("/auth/login", json={"phone": new_phone(), "password": "whatever1"},
                               headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.200"}).status_code
                  for _ in range(4)]
    assert one_client[3] == 429  # only the entry the trusted proxy appended counts, not the forged first one


def test_s5_known_and_unknown_numbers_answer_alike(client):
    """send-otp and forgot-password give the same status and body shape for known and unknown numbers."""
    known = new_phone()
    signup(client, phone=known)
    for route in ("/auth/send-otp", "/auth/forgot-password"):
        from gemini_backend.extensions import limiter
        limiter.reset()
        a = client.post(route, json={"phone": known})
        b = client.post(route, json={"phone": new_phone()})
        assert a.status_code == b.status_code == 200
        assert set(a.json) == set(b.json) and a.json["message"] == b.json["message"]


def test_s5_per_ip_limit_on_auth_routes(app):
    """The auth routes share a per-IP limit (Flask-Limiter): past it, 429 with Retry-After."""
    from gemini_backend import create_app
    limited = create_app({"APP_ENV": "test", "AUTH_RATE_LIMIT": "3 per minute"}).test_client()
    codes = [limited.post("/auth/login", json={"phone": new_phone(), "password": "whatever1"}).status_code
             for _ in range(4)]
    assert codes[:3] == [401, 401, 401] and codes[3] == 429
    r = limited.post("/auth/login", json={"phone": new_phone(), "password": "whatever1"})
    assert r.json["error"] == "rate_limited" and int(r.headers["Retry-After"]) > 0


# --- S6: revoking everything ------------------------------------------------------------------

def _two_sessions(client, phone, password):
    a = client.post("/auth/login", json={"phone": phone, "password": password}).json
    b = client.post("/auth/login", json={"phone": phone, "password": password}).json
    return a, b


def _all_dead(client, sessions):
    for s in sessions:
        assert client.get("/user/me", headers=bearer(s["access_token"])).status_code == 401
        assert client.post("/auth/refresh", headers=bearer(s["refresh_token"])).status_code == 401


def test_s6_password_change_revokes_every_other_session(client):
    """After change-password, every other session's tokens are refused; the calling session goes on: its access
    token still works, its old refresh token is refused, and the fresh pair works."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    a, b = _two_sessions(client, phone, "first-password")
    fresh = client.post("/auth/change-password", headers=bearer(a["access_token"]),
                        json={"new_password": "second-password", "current_password": "first-password"}).json
    _all_dead(client, [b])
    assert client.get("/user/me", headers=bearer(a["access_token"])).status_code == 200
    assert client.post("/auth/refresh", headers=bearer(a["refresh_token"])).status_code == 401
    assert client.get("/user/me", headers=bearer(fresh["access_token"])).status_code == 200
    renewed = client.post("/auth/refresh", headers=bearer(fresh["refresh_token"]))
    assert renewed.status_code == 200
    # A later logout everywhere ends the kept session too.
    assert client.post("/auth/logout", headers=bearer(renewed.json["access_token"]), json={"all": True}).status_code == 200
    assert client.get("/user/me", headers=bearer(a["access_token"])).status_code == 401


def test_s6_second_password_change_ends_the_first_kept_token(client):
    """A password change keeps only the current version's session: an access token kept by an earlier change
    stops working at the next one."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    a = client.post("/auth/login", json={"phone": phone, "password": "first-password"}).json
    fresh = client.post("/auth/change-password", headers=bearer(a["access_token"]),
                        json={"new_password": "second-password", "current_password": "first-password"}).json
    again = client.post("/auth/change-password", headers=bearer(fresh["access_token"]),
                        json={"new_password": "third-password", "current_password": "second-password"})
    assert again.status_code == 200
    assert client.get("/user/me", headers=bearer(a["access_token"])).status_code == 401
    assert client.get("/user/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_s6_reset_revokes_every_earlier_token(client):
    """After reset-password, every earlier access and refresh token is refused."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    a, b = _two_sessions(client, phone, "first-password")
    code = client.post("/auth/forgot-password", json={"phone": phone}).json["otp"]
    assert client.post("/auth/reset-password",
                       json={"phone": phone, "otp": code, "new_password": "second-pass"}).status_code == 200
    _all_dead(client, [a, b])


def test_s6_logout_all_revokes_every_token(client):
    """logout {all: true} revokes every access and refresh token of the user."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    a, b = _two_sessions(client, phone, "first-password")
    assert client.post("/auth/logout", headers=bearer(b["access_token"]), json={"all": True}).status_code == 200
    _all_dead(client, [a, b])


def test_s6_revocation_survives_losing_the_cache(app, client):
    """Revocation lives in the database: with the cache emptied, a revoked token is still refused."""
    from gemini_backend.extensions import cache
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    a, b = _two_sessions(client, phone, "first-password")
    client.post("/auth/logout", headers=bearer(a["access_token"]))
    client.post("/auth/logout", headers=bearer(b["access_token"]), json={"all": True})
    with app.app_context():
        cache.clear()
    _all_dead(client, [a, b])


def test_reused_refresh_token_revokes_the_family(client):
    """A spent refresh token presented again revokes every token of the user (theft signal)."""
    phone = new_phone()
    signup(client, phone=phone)
    t = login_by_otp(client, phone)
    rotated = client.post("/auth/refresh", headers=bearer(t["refresh_token"])).json
    assert client.post("/auth/refresh", headers=bearer(t["refresh_token"])).status_code == 401
    assert client.get("/user/me", headers=bearer(rotated["access_token"])).status_code == 401


# --- S10: storage of secrets ------------------------------------------------------------------

def test_s10_passwords_are_argon2id_and_codes_keyed_hashes(app, client, app_logs):
    """Passwords are stored as argon2id hashes; OTPs only as HMAC-SHA256; neither appears in logs."""
    phone = new_phone()
    signup(client, phone=phone, password="my-secret-pass")
    client.post("/auth/login", json={"phone": phone, "password": "wrong-secret-pass"})
    code = otp_for(client, phone)
    with app.app_context():
        user = db.session.scalars(select(User).where(User.phone == phone)).one()
        challenge = db.session.scalars(select(OtpChallenge)).one()
    assert user.password_hash.startswith("$argon2id$")
    assert code not in challenge.code_hash and len(challenge.code_hash) == 64
    assert app_logs.text and "secret-pass" not in app_logs.text


def test_log_delivery_writes_the_code_to_the_log_not_the_response(app, app_logs):
    """OTP_DELIVERY=log: the code goes to the server log and is absent from the response."""
    from gemini_backend import create_app
    logged = create_app({"APP_ENV": "test", "OTP_DELIVERY": "log"}).test_client()
    phone = new_phone()
    logged.post("/auth/signup", json={"phone": phone})
    r = logged.post("/auth/send-otp", json={"phone": phone})
    assert r.status_code == 200 and "otp" not in r.json
    assert f"OTP for {phone}" in app_logs.text


def test_s10_old_hashes_are_upgraded_at_login(app, client):
    """A password stored with weaker argon2 parameters is rehashed with the current ones at the next login."""
    from argon2 import PasswordHasher
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("old-params-pass")
    phone = new_phone()
    signup(client, phone=phone)
    with app.app_context():
        user = db.session.scalars(select(User).where(User.phone == phone)).one()
        user.password_hash = weak
        db.session.commit()
    assert client.post("/auth/login", json={"phone": phone, "password": "old-params-pass"}).status_code == 200
    with app.app_context():
        stored = db.session.scalars(select(User.password_hash).where(User.phone == phone)).one()
    assert stored != weak and stored.startswith("$argon2id$") and "m=8192" not in stored


def test_successful_auth_responses_carry_no_retry_after(client):
    """Retry-After tells a client to back off: a successful auth response must not carry it."""
    r = client.post("/auth/signup", json={"phone": new_phone()})
    assert r.status_code == 201 and "Retry-After" not in r.headers
    assert "X-RateLimit-Limit" in r.headers  # the per-IP limit is still described
