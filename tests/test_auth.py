"""Auth happy paths, with every alias older clients send."""
import pytest

from tests.factories import new_phone


def signup(client, **body):
    return client.post("/auth/signup", json=body)


def otp_for(client, phone, purpose="login", field="phone"):
    r = client.post("/auth/send-otp", json={field: phone, "purpose": purpose})
    assert r.status_code == 200, r.json
    return r.json["otp"]


def login_by_otp(client, phone):
    r = client.post("/auth/verify-otp", json={"phone": phone, "otp": otp_for(client, phone)})
    assert r.status_code == 200, r.json
    return r.json


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("field", ["phone", "mobile_number", "mobile", "phone_number"])
def test_signup_accepts_each_phone_alias(client, field):
    """Sign-up takes the number under any alias and stores it in E.164."""
    r = signup(client, **{field: "(202) 555-0143", "name": "Ada", "password": "s3cret-pass"})
    assert r.status_code == 201, r.json
    user = r.json["user"]
    assert user["phone"] == "+12025550143" and user["name"] == "Ada" and user["has_password"] is True
    assert user["tier"] == "basic" and user["subscription"]["status"] == "none"
    assert "password" not in str(r.json).replace("has_password", "")


def test_duplicate_signup_is_409_even_in_another_format(client):
    """One account per normalised number: the same number written differently is 409 phone_taken."""
    assert signup(client, phone="+12025550143").status_code == 201
    r = signup(client, phone="202-555-0143")
    assert r.status_code == 409 and r.json["error"] == "phone_taken"


@pytest.mark.parametrize("bad", ["abc", "123", "+999999999999999", "", "+1202555014" * 4])
def test_invalid_phone_is_422(client, bad):
    """A string that cannot be a phone number is 422 naming the field."""
    r = signup(client, phone=bad)
    assert r.status_code == 422 and "phone" in r.json["errors"]["json"]


@pytest.mark.parametrize("password", ["short", "x" * 129])
def test_password_length_is_enforced(client, password):
    """Passwords must be 8-128 characters."""
    r = signup(client, phone=new_phone(), password=password)
    assert r.status_code == 422 and "password" in r.json["errors"]["json"]


@pytest.mark.parametrize("code_field", ["otp", "code", "otp_code"])
def test_otp_login_with_each_code_alias(client, code_field):
    """send-otp then verify-otp (otp / code / otp_code) returns the Tokens object."""
    phone = new_phone()
    signup(client, phone=phone)
    code = otp_for(client, phone, field="mobile")
    r = client.post("/auth/verify-otp", json={"mobile_number": phone, code_field: code})
    assert r.status_code == 200, r.json
    t = r.json
    assert t["token_type"] == "bearer" and t["token"] == t["access_token"] and t["refresh_token"]
    assert 15 * 60 <= t["expires_in"] <= 60 * 60
    assert t["user"]["phone"] == phone
    me = client.get("/user/me", headers=bearer(t["access_token"]))
    assert me.status_code == 200 and me.json["phone"] == phone


def test_password_login_and_profile(client):
    """A password account logs in with /auth/login and sees itself at /user/me."""
    phone = new_phone()
    signup(client, phone=phone, password="correct horse", email="ada@example.com")
    r = client.post("/auth/login", json={"mobile": phone, "password": "correct horse"})
    assert r.status_code == 200, r.json
    me = client.get("/user/me", headers=bearer(r.json["access_token"])).json
    assert me["email"] == "ada@example.com" and set(me) >= {"id", "phone", "name", "email", "tier", "has_password",
                                                            "created_at", "subscription"}


def test_wrong_password_and_unknown_number_answer_alike(client):
    """Wrong password and unknown number are the same 401 invalid_credentials."""
    phone = new_phone()
    signup(client, phone=phone, password="correct horse")
    wrong = client.post("/auth/login", json={"phone": phone, "password": "wrong horse"})
    unknown = client.post("/auth/login", json={"phone": new_phone(), "password": "wrong horse"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json and wrong.json["error"] == "invalid_credentials"


def test_refresh_rotates_the_pair(client):
    """/auth/refresh returns a new pair; the new refresh token works, the spent one does not."""
    phone = new_phone()
    signup(client, phone=phone)
    t = login_by_otp(client, phone)
    r = client.post("/auth/refresh", headers=bearer(t["refresh_token"]))
    assert r.status_code == 200 and r.json["refresh_token"] != t["refresh_token"]
    again = client.post("/auth/refresh", headers=bearer(r.json["refresh_token"]))
    assert again.status_code == 200
    spent = client.post("/auth/refresh", headers=bearer(t["refresh_token"]))
    assert spent.status_code == 401 and spent.json["error"] == "token_revoked"


def test_change_password_with_each_alias(client):
    """change-password takes newPassword/old_password, returns fresh tokens, and the new password logs in."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    t = client.post("/auth/login", json={"phone": phone, "password": "first-password"}).json
    r = client.post("/auth/change-password", headers=bearer(t["access_token"]),
                    json={"newPassword": "second-password", "old_password": "first-password"})
    assert r.status_code == 200, r.json
    assert r.json["message"] and r.json["access_token"] and r.json["token"] == r.json["access_token"]
    assert client.get("/user/me", headers=bearer(r.json["access_token"])).status_code == 200
    assert client.post("/auth/login", json={"phone": phone, "password": "second-password"}).status_code == 200
    r = client.post("/auth/change-password", headers=bearer(r.json["access_token"]),
                    json={"new_password": "third-password", "oldPassword": "second-password"})
    assert r.status_code == 200


def test_change_password_requires_the_current_one_when_set(client):
    """Without or with a wrong current password the change is refused and the old password still works."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    t = client.post("/auth/login", json={"phone": phone, "password": "first-password"}).json
    missing = client.post("/auth/change-password", headers=bearer(t["access_token"]),
                          json={"new_password": "second-password"})
    assert missing.status_code == 422 and "current_password" in missing.json["errors"]["json"]
    wrong = client.post("/auth/change-password", headers=bearer(t["access_token"]),
                        json={"new_password": "second-password", "current_password": "nope-nope"})
    assert wrong.status_code == 400 and wrong.json["error"] == "wrong_password"
    assert client.post("/auth/login", json={"phone": phone, "password": "first-password"}).status_code == 200


def test_otp_only_account_can_set_a_first_password(client):
    """An account without a password sets one with change-password and no current password."""
    phone = new_phone()
    signup(client, phone=phone)
    t = login_by_otp(client, phone)
    r = client.post("/auth/change-password", headers=bearer(t["access_token"]), json={"new_password": "brand-new-pw"})
    assert r.status_code == 200 and r.json["user"]["has_password"] is True


def test_forgot_and_reset_password_with_alias(client):
    """forgot-password sends a reset code; reset-password (newPassword alias) sets the password."""
    phone = new_phone()
    signup(client, phone=phone, password="first-password")
    r = client.post("/auth/forgot-password", json={"mobile_number": phone})
    assert r.status_code == 200 and r.json["expires_in"] == 300
    r = client.post("/auth/reset-password", json={"phone": phone, "code": r.json["otp"], "newPassword": "reset-pass-1"})
    assert r.status_code == 200, r.json
    assert client.post("/auth/login", json={"phone": phone, "password": "reset-pass-1"}).status_code == 200
    assert client.post("/auth/login", json={"phone": phone, "password": "first-password"}).status_code == 401


def test_logout_revokes_the_presented_session(client):
    """Plain logout: that session's access and refresh tokens stop working; another session keeps working."""
    phone = new_phone()
    signup(client, phone=phone, password="pass-word-1")
    a = client.post("/auth/login", json={"phone": phone, "password": "pass-word-1"}).json
    b = client.post("/auth/login", json={"phone": phone, "password": "pass-word-1"}).json
    assert client.post("/auth/logout", headers=bearer(a["access_token"])).status_code == 200
    assert client.get("/user/me", headers=bearer(a["access_token"])).status_code == 401
    assert client.post("/auth/refresh", headers=bearer(a["refresh_token"])).status_code == 401
    assert client.get("/user/me", headers=bearer(b["access_token"])).status_code == 200
