"""Billing routes through the real stripe SDK against the fake Stripe server, and the `flask billing` commands.

The `fake`, `make_app`, `billing_app` and `bclient` fixtures live in conftest.py.
"""
from __future__ import annotations

import time

import pytest

from gemini_backend.billing_cli import billing_cli
from gemini_backend.extensions import db
from gemini_backend.models import Subscription, User
from gemini_backend.services.tokens import user_state
from tests.conftest import STRIPE_CONFIG
from tests.factories import auth_headers, create_user
from tests.helpers import free_port

NO_RETRY = {"Stripe-Should-Retry": "false"}


def user_row(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def subscribe(client, app, user_id: int, path: str = "/subscribe/pro"):
    return client.post(path, headers=auth_headers(app, user_id))


def same_minute() -> None:
    """Wait out the last seconds of a minute, so two clicks share the checkout idempotency window."""
    if time.time() % 60 > 57:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_checkout_creates_the_customer_once_and_reuses_it(billing_app, bclient, fake):
    """The first upgrade creates one Stripe customer (phone, user id) and stores its id; later checkouts,
    through either path, reuse it and never create another customer."""
    uid = create_user(billing_app, name="Ada")
    first = subscribe(bclient, billing_app, uid)
    assert first.status_code == 200, first.json
    assert first.json["checkout_url"] == first.json["url"]
    assert first.json["url"].startswith("https://checkout.stripe.com/c/pay/" + first.json["session_id"])
    customer_id = user_row(billing_app, uid).stripe_customer_id
    assert customer_id in fake.customers
    assert fake.customers[customer_id]["metadata"] == {"user_id": str(uid)}
    assert fake.customers[customer_id]["name"] == "Ada"

    time.sleep(0.01)
    second = subscribe(bclient, billing_app, uid, "/subscription/pro")
    assert second.status_code == 200, second.json
    assert len(fake.requests_to("/v1/customers", "POST")) == 1
    assert fake.checkout_session(second.json["session_id"])["customer"] == customer_id
    assert user_row(billing_app, uid).stripe_customer_id == customer_id


def test_checkout_sends_what_stripe_needs(billing_app, bclient, fake):
    """The Checkout Session is created in subscription mode for the Pro price, with the user id as
    client_reference_id and in metadata and subscription_data[metadata], and the DOMAIN's return URLs."""
    uid = create_user(billing_app)
    r = subscribe(bclient, billing_app, uid)
    assert r.status_code == 200, r.json
    sent = fake.checkout_session_params(r.json["session_id"])
    assert sent["mode"] == "subscription"
    assert sent["line_items"] == [{"price": "price_pro_test", "quantity": "1"}]
    assert sent["customer"] == user_row(billing_app, uid).stripe_customer_id
    assert sent["client_reference_id"] == str(uid)
    assert sent["metadata"] == {"user_id": str(uid)}
    assert sent["subscription_data"] == {"metadata": {"user_id": str(uid)}}
    assert sent["success_url"] == "https://chat.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}"
    assert sent["cancel_url"] == "https://chat.example.com/billing/cancel"
    request = fake.requests_to("/v1/checkout/sessions", "POST")[0]
    assert request["headers"]["Idempotency-Key"].startswith(f"gb-checkout-{uid}-")


def test_double_click_returns_the_same_session(billing_app, bclient, fake):
    """Two clicks in a row get the same Checkout Session back (idempotency key), not two open sessions."""
    uid = create_user(billing_app)
    same_minute()
    first, second = subscribe(bclient, billing_app, uid), subscribe(bclient, billing_app, uid)
    assert first.status_code == second.status_code == 200
    assert first.json["session_id"] == second.json["session_id"]
    assert len(fake.checkout_sessions) == 1 and len(fake.requests_to("/v1/checkout/sessions", "POST")) == 2


def test_a_customer_deleted_in_stripe_is_replaced(billing_app, bclient, fake):
    """A stored customer id Stripe no longer knows (deleted, other account) is replaced by a new customer."""
    uid = create_user(billing_app)
    with billing_app.app_context():
        db.session.get(User, uid).stripe_customer_id = "cus_gone"
        db.session.commit()
    r = subscribe(bclient, billing_app, uid)
    assert r.status_code == 200, r.json
    new_id = user_row(billing_app, uid).stripe_customer_id
    assert new_id != "cus_gone" and new_id in fake.customers
    assert fake.checkout_session(r.json["session_id"])["customer"] == new_id


@pytest.mark.parametrize("how", ["override", "subscription"])
def test_pro_users_get_409_already_pro(billing_app, bclient, fake, how):
    """A Pro user (manual grant, or an active subscription) cannot start a second checkout: 409 already_pro,
    and Stripe is not called."""
    uid = create_user(billing_app, pro=how == "override")
    if how == "subscription":
        with billing_app.app_context():
            db.session.get(User, uid).is_pro = True
            db.session.commit()
    r = subscribe(bclient, billing_app, uid)
    assert r.status_code == 409 and r.json["error"] == "already_pro"
    assert fake.requests == []


@pytest.mark.parametrize("missing", ["STRIPE_SECRET_KEY", "STRIPE_PRO_PRICE_ID"])
def test_unconfigured_billing_is_503(make_app, fake, missing):
    """Without a secret key or a Pro price, checkout answers 503 billing_unavailable in the error shape."""
    config = {**STRIPE_CONFIG, "STRIPE_API_BASE": fake.base_url, missing: None}
    unconfigured = make_app(**config)
    uid = create_user(unconfigured)
    r = subscribe(unconfigured.test_client(), unconfigured, uid)
    assert r.status_code == 503 and r.json["error"] == "billing_unavailable"
    assert r.json["status"] == "Service Unavailable" and "not configured" in r.json["message"]
    assert fake.requests == []


def test_portal_without_stripe_key_is_503(app):
    """A user with a customer id asking for the portal on a server without STRIPE_SECRET_KEY gets 503."""
    uid = create_user(app)
    with app.app_context():
        db.session.get(User, uid).stripe_customer_id = "cus_123"
        db.session.commit()
    r = app.test_client().post("/subscribe/portal", headers=auth_headers(app, uid))
    assert r.status_code == 503 and r.json["error"] == "billing_unavailable"


@pytest.mark.parametrize("status, body, headers, code, error", [
    (400, {"type": "invalid_request_error", "message": "No such price: 'price_pro_test'",
           "code": "resource_missing", "param": "line_items[0][price]"}, {}, 502, "billing_error"),
    (401, {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"}, {}, 503,
     "billing_unavailable"),
    (403, {"type": "invalid_request_error", "message": "The key lacks permission."}, {}, 503,
     "billing_unavailable"),
    (429, {"type": "invalid_request_error", "message": "Too many requests", "code": "rate_limit"}, {}, 503,
     "billing_unreachable"),
    (500, {"type": "api_error", "message": "An unknown error occurred"}, NO_RETRY, 503, "billing_unreachable"),
])
def test_stripe_errors_map_to_502_or_503(billing_app, bclient, fake, status, body, headers, code, error):
    """A Stripe refusal is 502 billing_error carrying Stripe's message; a bad key is 503 billing_unavailable;
    rate limits and Stripe outages are 503 billing_unreachable. Never a 500, and nothing is stored."""
    uid = create_user(billing_app)
    fake.fail_next.append((status, body, headers))
    r = subscribe(bclient, billing_app, uid)
    assert r.status_code == code and r.json["error"] == error, r.json
    assert set(r.json) == {"code", "status", "error", "message"}
    if code == 502:
        assert "No such price" in r.json["message"]
    assert user_row(billing_app, uid).stripe_customer_id is None


def test_a_transient_stripe_500_is_retried(billing_app, bclient, fake):
    """One Stripe 500 is retried by the SDK (max_network_retries=2) and the checkout still succeeds."""
    uid = create_user(billing_app)
    fake.fail_next.append((500, {"type": "api_error", "message": "An unknown error occurred"}))
    r = subscribe(bclient, billing_app, uid)
    assert r.status_code == 200, r.json
    assert len(fake.requests_to("/v1/customers", "POST")) == 2


def test_unreachable_stripe_is_503(make_app):
    """A Stripe API that refuses connections is 503 billing_unreachable with Retry-After, not a 500."""
    dead = make_app(**STRIPE_CONFIG, STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}")
    uid = create_user(dead)
    r = subscribe(dead.test_client(), dead, uid)
    assert r.status_code == 503 and r.json["error"] == "billing_unreachable"
    assert r.headers["Retry-After"]


def test_portal_is_409_without_a_customer_then_works(billing_app, bclient, fake):
    """The Billing Portal needs a Stripe customer: 409 no_billing_account before any checkout, then a
    billing.stripe.com URL for the stored customer (both paths) returning to DOMAIN/billing."""
    uid = create_user(billing_app)
    headers = auth_headers(billing_app, uid)
    r = bclient.post("/subscribe/portal", headers=headers)
    assert r.status_code == 409 and r.json["error"] == "no_billing_account"
    assert subscribe(bclient, billing_app, uid).status_code == 200
    for path in ("/subscribe/portal", "/subscription/portal"):
        r = bclient.post(path, headers=headers)
        assert r.status_code == 200, r.json
        assert r.json["url"].startswith("https://billing.stripe.com/p/session/")
    sent = fake.requests_to("/v1/billing_portal/sessions", "POST")[0]["params"]
    assert sent == {"customer": user_row(billing_app, uid).stripe_customer_id,
                    "return_url": "https://chat.example.com/billing"}


def test_status_is_none_without_a_subscription(bclient, billing_app):
    """A user who never subscribed has status "none" on both paths; the route needs a token."""
    uid = create_user(billing_app)
    for path in ("/subscription/status", "/subscribe/status"):
        r = bclient.get(path, headers=auth_headers(billing_app, uid))
        assert r.status_code == 200
        assert r.json == {"tier": "basic", "status": "none", "current_period_end": None,
                          "cancel_at_period_end": False}
    assert bclient.get("/subscription/status").status_code == 401


def test_status_reports_the_stored_subscription(bclient, billing_app):
    """The status route reports the stored Stripe state and the tier it implies."""
    uid = create_user(billing_app)
    with billing_app.app_context():
        from datetime import datetime, timezone
        db.session.add(Subscription(user_id=uid, status="past_due", stripe_subscription_id="sub_1",
                                    cancel_at_period_end=True,
                                    current_period_end=datetime(2026, 12, 1, tzinfo=timezone.utc)))
        db.session.commit()
    r = bclient.get("/subscription/status", headers=auth_headers(billing_app, uid))
    assert r.json["tier"] == "basic" and r.json["status"] == "past_due" and r.json["cancel_at_period_end"]
    assert r.json["current_period_end"].startswith("2026-12-01T00:00:00")


def test_billing_routes_need_a_token(bclient):
    """Every billing route is 401 in the error shape without a bearer token."""
    for path in ("/subscribe/pro", "/subscription/pro", "/subscribe/portal", "/subscription/portal"):
        r = bclient.post(path)
        assert r.status_code == 401 and r.json["error"] == "token_missing"


# --------------------------------------------------------------------------- flask billing ...

def test_cli_grant_and_revoke_pro_change_the_tier_at_once(app):
    """grant-pro and revoke-pro flip the manual override by phone (any format) and drop the cached tier."""
    uid = create_user(app, phone="+12025550188")
    runner = app.test_cli_runner()
    with app.app_context():
        assert user_state(uid)["tier"] == "basic"  # cached now
    result = runner.invoke(billing_cli, ["grant-pro", "(202) 555-0188"])
    assert result.exit_code == 0, result.output
    assert "+12025550188" in result.output and "pro" in result.output
    with app.app_context():
        assert user_state(uid)["tier"] == "pro"
        assert db.session.get(User, uid).pro_override is True
    result = runner.invoke(billing_cli, ["revoke-pro", "+12025550188"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert user_state(uid)["tier"] == "basic"


def test_cli_show_prints_tier_subscription_and_customer(app):
    """show prints the tier, the override, the subscription status and period end, and the customer id."""
    from datetime import datetime, timezone
    uid = create_user(app, phone="+12025550189", pro=True)
    with app.app_context():
        db.session.get(User, uid).stripe_customer_id = "cus_show"
        db.session.add(Subscription(user_id=uid, status="canceled", stripe_subscription_id="sub_show",
                                    current_period_end=datetime(2026, 12, 1, tzinfo=timezone.utc)))
        db.session.commit()
    result = app.test_cli_runner().invoke(billing_cli, ["show", "+12025550189"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    assert lines["tier"].strip() == "pro" and lines["override"].strip() == "yes"
    assert lines["subscription"].split() == ["canceled", "sub_show"]
    assert lines["period end"].strip().startswith("2026-12-01T00:00:00")
    assert lines["customer"].strip() == "cus_show"


def test_cli_show_a_basic_user_without_subscription(app):
    """show works for a user Stripe never saw: basic, no override, no subscription, no customer."""
    create_user(app, phone="+12025550190")
    result = app.test_cli_runner().invoke(billing_cli, ["show", "2025550190"])
    assert result.exit_code == 0, result.output
    lines = {k: v.strip() for k, v in (line.split(":", 1) for line in result.output.strip().splitlines())}
    assert (lines["tier"], lines["override"], lines["subscription"], lines["period end"], lines["customer"]) == (
        "basic", "no", "none", "-", "-")


@pytest.mark.parametrize("phone, message", [("+12025550177", "No account for +12025550177"),
                                            ("not a phone", "not a phone number")])
def test_cli_unknown_or_invalid_phone_fails_clearly(app, phone, message):
    """An unknown or unparsable number exits non-zero with a message that says so."""
    result = app.test_cli_runner().invoke(billing_cli, ["grant-pro", phone])
    assert result.exit_code != 0 and message in result.output
