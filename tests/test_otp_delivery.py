"""OTP delivery through Twilio's REST API, against a fake Twilio on 127.0.0.1."""
import re

import pytest

from gemini_backend import create_app
from tests.factories import new_phone
from tests.fakes.twilio import FakeTwilio


@pytest.fixture()
def twilio(app):
    with FakeTwilio() as fake:
        yield fake


def _app(twilio, **overrides):
    return create_app({"APP_ENV": "test", "OTP_DELIVERY": "twilio", "TWILIO_ACCOUNT_SID": twilio.account_sid,
                       "TWILIO_AUTH_TOKEN": twilio.auth_token, "TWILIO_FROM": "+15005550006",
                       "TWILIO_API_BASE": twilio.base_url, **overrides})


def test_twilio_sends_the_code_that_logs_in(twilio):
    """The SMS carries a 6-digit code (not echoed in the response) that verify-otp accepts."""
    client = _app(twilio).test_client()
    phone = new_phone()
    client.post("/auth/signup", json={"phone": phone})
    r = client.post("/auth/send-otp", json={"phone": phone})
    assert r.status_code == 200 and "otp" not in r.json
    [sms] = twilio.messages
    assert sms["To"] == phone and sms["From"] == "+15005550006"
    code = re.search(r"\b(\d{6})\b", sms["Body"]).group(1)
    assert client.post("/auth/verify-otp", json={"phone": phone, "otp": code}).status_code == 200


def test_unknown_numbers_get_no_sms_but_the_same_answer(twilio):
    """No SMS goes to a number without an account, and the answer is the same."""
    client = _app(twilio).test_client()
    r = client.post("/auth/send-otp", json={"phone": new_phone()})
    assert r.status_code == 200 and twilio.messages == []


@pytest.mark.parametrize("problem", ["refused", "bad_credentials", "unreachable"])
def test_twilio_failures_are_503(twilio, problem):
    """A Twilio refusal, wrong credentials or an unreachable API is a clear 503, never a 500."""
    overrides = {"refused": {}, "bad_credentials": {"TWILIO_AUTH_TOKEN": "wrong"},
                 "unreachable": {"TWILIO_API_BASE": "http://127.0.0.1:1"}}[problem]
    if problem == "refused":
        twilio.fail_status = 400
    client = _app(twilio, **overrides).test_client()
    phone = new_phone()
    client.post("/auth/signup", json={"phone": phone})
    r = client.post("/auth/send-otp", json={"phone": phone})
    assert r.status_code == 503 and r.json["error"] == "otp_delivery_failed"
