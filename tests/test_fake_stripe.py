"""The fake Stripe server and webhook signer are faithful to the real SDK.

Everything here goes through the real ``stripe`` package over real HTTP to
``tests.fakes.stripe_server.FakeStripe``; nothing is mocked. If these pass, app
tests that point ``STRIPE_API_BASE`` at the fake exercise the same SDK code
paths (encoding, error classes, retries, signature checks) as production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import stripe

from tests.fakes.stripe_server import DEFAULT_API_VERSION, FakeStripe, parse_form
from tests.fakes.stripe_signing import sign_payload, signed_headers

API_KEY = "sk_test_fake_123456789"
WHSEC = "whsec_test_secret"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake():
    with FakeStripe() as server:
        yield server


@pytest.fixture
def client(fake):
    return stripe.StripeClient(
        API_KEY, base_addresses={"api": fake.base_url}, max_network_retries=0
    )


@pytest.fixture
def module_stripe(fake, monkeypatch):
    """Point the module-level (global) stripe configuration at the fake."""
    monkeypatch.setattr(stripe, "api_key", API_KEY)
    monkeypatch.setattr(stripe, "api_base", fake.base_url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    return stripe


def _checkout_params(customer: str, **over):
    params = {
        "mode": "subscription",
        "line_items": [{"price": "price_pro_test", "quantity": 1}],
        "customer": customer,
        "client_reference_id": "42",
        "metadata": {"user_id": "42"},
        "subscription_data": {"metadata": {"user_id": "42"}},
        "success_url": "http://localhost:5000/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://localhost:5000/billing/cancel",
    }
    params.update(over)
    return params


# --------------------------------------------------------------------------- #
# happy paths through the SDK
# --------------------------------------------------------------------------- #
def test_sdk_pins_the_api_version_the_fake_assumes(client, fake):
    """The SDK sends Stripe-Version equal to the fake's default api_version (used
    on events), so events and responses claim the version the SDK expects."""
    client.v1.customers.create(params={"email": "a@example.com"})
    sent = fake.requests[-1]["headers"]["Stripe-Version"]
    assert sent == stripe._api_version._ApiVersion.CURRENT == DEFAULT_API_VERSION


def test_create_and_retrieve_customer_form_encoded(client, fake):
    """Customer create goes out form-encoded with bracketed metadata and a Bearer
    key; the fake parses it and answers a Stripe-shaped cus_ object that the SDK
    turns into a stripe.Customer, retrievable by id."""
    cus = client.v1.customers.create(
        params={
            "phone": "+15555550100",
            "name": "Ada",
            "email": "ada@example.com",
            "metadata": {"user_id": "42"},
        }
    )
    assert isinstance(cus, stripe.Customer)
    assert cus.id.startswith("cus_")
    assert (cus.object, cus.livemode) == ("customer", False)
    assert (cus.phone, cus.name, cus.email) == ("+15555550100", "Ada", "ada@example.com")
    assert cus.metadata["user_id"] == "42"
    assert isinstance(cus.created, int)

    req = fake.requests_to("/v1/customers", "POST")[0]
    assert "metadata[user_id]=42" in req["body"]
    assert req["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert req["params"]["metadata"] == {"user_id": "42"}

    again = client.v1.customers.retrieve(cus.id)
    assert again.id == cus.id and again.email == "ada@example.com"


def test_checkout_session_subscription_mode(client, fake):
    """A subscription-mode Checkout Session with client_reference_id, metadata
    and subscription_data[metadata] is encoded as line_items[0][price]=...,
    parsed back into lists/dicts, and answered with a cs_test_ id and a
    checkout.stripe.com URL the app can hand to the browser."""
    cus = client.v1.customers.create(params={"email": "ada@example.com"})
    sess = client.v1.checkout.sessions.create(params=_checkout_params(cus.id))

    assert isinstance(sess, stripe.checkout.Session)
    assert sess.id.startswith("cs_test_")
    assert sess.url.startswith("https://checkout.stripe.com/c/pay/" + sess.id)
    assert (sess.mode, sess.status, sess.payment_status) == ("subscription", "open", "unpaid")
    assert sess.customer == cus.id
    assert sess.client_reference_id == "42"
    assert sess.metadata["user_id"] == "42"
    assert sess.subscription is None

    body = fake.requests_to("/v1/checkout/sessions", "POST")[0]["body"]
    assert "line_items[0][price]=price_pro_test" in body
    assert "subscription_data[metadata][user_id]=42" in body
    sent = fake.checkout_session_params(sess.id)
    assert sent["line_items"] == [{"price": "price_pro_test", "quantity": "1"}]
    assert sent["subscription_data"] == {"metadata": {"user_id": "42"}}

    fetched = client.v1.checkout.sessions.retrieve(sess.id, params={"expand": ["customer"]})
    assert fetched.customer.id == cus.id  # expanded into a Customer object


def test_billing_portal_session(client):
    """A Billing Portal session for an existing customer returns a bps_ object
    with a billing.stripe.com URL and echoes return_url."""
    cus = client.v1.customers.create(params={"email": "ada@example.com"})
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": cus.id, "return_url": "http://localhost:5000/account"}
    )
    assert isinstance(portal, stripe.billing_portal.Session)
    assert portal.id.startswith("bps_")
    assert portal.url.startswith("https://billing.stripe.com/p/session/")
    assert portal.customer == cus.id
    assert portal.return_url == "http://localhost:5000/account"


def test_retrieve_subscription_with_item_period(client, fake):
    """A subscription stored with add_subscription comes back through the SDK
    with status, customer, metadata, cancel_at_period_end and
    current_period_end on items.data[0] (where the pinned API version keeps
    it); set_subscription_status changes are visible on the next retrieve."""
    end = int(time.time()) + 30 * 86400
    stored = fake.add_subscription(
        "cus_abc", "active", metadata={"user_id": "42"}, current_period_end=end
    )
    sub = client.v1.subscriptions.retrieve(stored["id"])
    assert isinstance(sub, stripe.Subscription)
    assert sub.id.startswith("sub_")
    assert (sub.status, sub.customer, sub.cancel_at_period_end) == ("active", "cus_abc", False)
    assert sub.metadata["user_id"] == "42"
    item = sub["items"]["data"][0]
    assert item["object"] == "subscription_item"
    assert item["current_period_end"] == end
    assert item["price"]["id"] == "price_pro_test"
    assert sub["current_period_end"] == end  # legacy copy, top_level_period=True

    fake.set_subscription_status(stored["id"], "past_due", cancel_at_period_end=True,
                                 current_period_end=end + 60)
    sub = client.v1.subscriptions.retrieve(stored["id"])
    assert (sub.status, sub.cancel_at_period_end) == ("past_due", True)
    assert sub["items"]["data"][0]["current_period_end"] == end + 60


def test_exact_basil_shape_has_no_top_level_period():
    """With top_level_period=False the subscription has current_period_end only
    on its items, as the API version the SDK pins returns it, so app tests can
    prove they read items.data[0].current_period_end."""
    with FakeStripe(top_level_period=False) as strict:
        c = stripe.StripeClient(API_KEY, base_addresses={"api": strict.base_url},
                                max_network_retries=0)
        stored = strict.add_subscription("cus_abc")
        sub = c.v1.subscriptions.retrieve(stored["id"])
        assert "current_period_end" not in sub
        assert sub["items"]["data"][0]["current_period_end"] > time.time()


def test_module_level_configuration(module_stripe, fake):
    """Setting stripe.api_key and stripe.api_base (module level, the legacy
    resource API) reaches the fake just like StripeClient does."""
    cus = stripe.Customer.create(email="ada@example.com", metadata={"user_id": "7"})
    sess = stripe.checkout.Session.create(**_checkout_params(cus.id, client_reference_id="7"))
    assert sess.url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    portal = stripe.billing_portal.Session.create(customer=cus.id, return_url="http://x/")
    assert portal.url.startswith("https://billing.stripe.com/")
    sub = stripe.Subscription.retrieve(fake.add_subscription(cus.id)["id"])
    assert sub.status == "active" and sub.customer == cus.id
    price = stripe.Price.retrieve("price_pro_test")
    assert price.recurring.interval == "month" and price.type == "recurring"
    assert {r["path"] for r in fake.requests} >= {
        "/v1/customers", "/v1/checkout/sessions", "/v1/billing_portal/sessions",
        f"/v1/subscriptions/{sub.id}", "/v1/prices/price_pro_test",
    }


# --------------------------------------------------------------------------- #
# errors, as the SDK surfaces them
# --------------------------------------------------------------------------- #
def test_unknown_price_is_invalid_request(client, fake):
    """A subscription checkout with a price the account does not have fails as
    Stripe fails it: HTTP 400, resource_missing "No such price", param
    line_items[0][price], raised as stripe.InvalidRequestError; no session is
    created."""
    cus = client.v1.customers.create(params={"email": "a@example.com"})
    params = _checkout_params(cus.id, line_items=[{"price": "price_nope", "quantity": 1}])
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.checkout.sessions.create(params=params)
    err = ei.value
    assert err.http_status == 400
    assert err.code == "resource_missing"
    assert err.param == "line_items[0][price]"
    assert "No such price: 'price_nope'" in err.user_message
    assert err.request_id and err.request_id.startswith("req_")
    assert fake.checkout_sessions == {}


@pytest.mark.parametrize(
    "override, param, code",
    [
        ({"mode": None}, "mode", "parameter_missing"),
        ({"line_items": None}, "line_items", "parameter_missing"),
        ({"customer": "cus_missing"}, "customer", "resource_missing"),
        ({"payment_method_typos": ["card"]}, "payment_method_typos", "parameter_unknown"),
    ],
)
def test_checkout_validates_like_stripe(client, override, param, code):
    """Missing mode/line_items, an unknown customer and an unknown parameter are
    each refused with Stripe's 400 error code and param (the SDK drops None
    values, so {"mode": None} really omits mode)."""
    cus = client.v1.customers.create(params={"email": "a@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.checkout.sessions.create(params={**_checkout_params(cus.id), **override})
    assert (ei.value.http_status, ei.value.param, ei.value.code) == (400, param, code)


def test_unknown_subscription_is_404(client):
    """Retrieving a subscription id the account does not have raises
    InvalidRequestError with HTTP 404 and resource_missing."""
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v1.subscriptions.retrieve("sub_missing")
    assert (ei.value.http_status, ei.value.code) == (404, "resource_missing")


def test_forced_500_raises_api_error_without_retry(client, fake):
    """A queued 500 reaches the SDK as stripe.APIError (HTTP 500) and, with
    max_network_retries=0, after exactly one request; the next call succeeds."""
    fake.fail_next.append((500, {"type": "api_error", "message": "boom"}))
    with pytest.raises(stripe.APIError) as ei:
        client.v1.customers.create(params={"email": "a@example.com"})
    assert ei.value.http_status == 500
    assert "boom" in str(ei.value)
    assert len(fake.requests) == 1
    assert client.v1.customers.create(params={"email": "a@example.com"}).id.startswith("cus_")


def test_forced_402_raises_card_error(client, fake):
    """A queued 402 card_error is raised as stripe.CardError with its code."""
    fake.fail_next.append(
        (402, {"error": {"type": "card_error", "code": "card_declined",
                         "message": "Your card was declined."}})
    )
    with pytest.raises(stripe.CardError) as ei:
        client.v1.customers.create(params={"email": "a@example.com"})
    assert (ei.value.http_status, ei.value.code) == (402, "card_declined")


def test_sdk_retry_reuses_idempotency_key(fake):
    """With retries enabled the SDK retries a 500 with the same Idempotency-Key
    and the fake answers the retry normally, so app code using retries can be
    tested against transient Stripe failures."""
    c = stripe.StripeClient(API_KEY, base_addresses={"api": fake.base_url},
                            max_network_retries=1)
    fake.fail_next.append((500, None))
    cus = c.v1.customers.create(params={"email": "a@example.com"})
    assert cus.id.startswith("cus_")
    posts = fake.requests_to("/v1/customers", "POST")
    assert len(posts) == 2
    keys = {r["headers"]["Idempotency-Key"] for r in posts}
    assert len(keys) == 1 and None not in keys


def test_idempotency_key_replays_and_rejects_other_params(client, fake):
    """The same Idempotency-Key with the same params replays the first result
    (one customer, not two); reused with other params it is an
    idempotency_error, raised by the SDK as stripe.IdempotencyError."""
    opts = {"idempotency_key": "idem-1"}
    a = client.v1.customers.create(params={"email": "a@example.com"}, options=opts)
    b = client.v1.customers.create(params={"email": "a@example.com"}, options=opts)
    assert a.id == b.id and len(fake.customers) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "b@example.com"}, options=opts)


def test_missing_api_key(fake, monkeypatch):
    """Without an API key the SDK raises AuthenticationError before sending
    anything; the fake itself answers 401 with Stripe's error JSON when the
    Authorization header is absent."""
    monkeypatch.setattr(stripe, "api_key", None)
    monkeypatch.setattr(stripe, "api_base", fake.base_url)
    with pytest.raises(stripe.AuthenticationError):
        stripe.Customer.create(email="a@example.com")
    assert fake.requests == []

    req = urllib.request.Request(fake.base_url + "/v1/customers", data=b"email=a%40b.c",
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    assert ei.value.code == 401
    body = json.loads(ei.value.read())
    assert body["error"]["type"] == "invalid_request_error"
    assert "API key" in body["error"]["message"]
    assert fake.customers == {}


def test_invalid_api_key_is_authentication_error(fake):
    """A key the fake does not accept (not sk_test_/rk_test_) is refused by the
    server with 401, which the SDK raises as stripe.AuthenticationError."""
    c = stripe.StripeClient("sk_live_not_allowed_here", base_addresses={"api": fake.base_url},
                            max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as ei:
        c.v1.customers.create(params={"email": "a@example.com"})
    assert ei.value.http_status == 401
    assert "Invalid API Key" in str(ei.value)


def test_unrecognized_url_is_404(fake):
    """An endpoint the fake does not implement answers Stripe's 404
    "Unrecognized request URL" instead of pretending to succeed."""
    req = urllib.request.Request(fake.base_url + "/v1/charges",
                                 headers={"Authorization": f"Bearer {API_KEY}"})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    assert ei.value.code == 404
    assert "Unrecognized request URL" in json.loads(ei.value.read())["error"]["message"]


def test_parse_form_nesting():
    """The form parser rebuilds Stripe's bracket encoding: nested dicts, indexed
    lists and [] appends."""
    parsed = parse_form(
        "mode=subscription&line_items[0][price]=p1&line_items[0][quantity]=1"
        "&line_items[1][price]=p2&metadata[user_id]=42&expand[]=a&expand[]=b"
        "&subscription_data[metadata][k]=v"
    )
    assert parsed == {
        "mode": "subscription",
        "line_items": [{"price": "p1", "quantity": "1"}, {"price": "p2"}],
        "metadata": {"user_id": "42"},
        "expand": ["a", "b"],
        "subscription_data": {"metadata": {"k": "v"}},
    }


# --------------------------------------------------------------------------- #
# webhook signatures and events
# --------------------------------------------------------------------------- #
def test_signature_matches_sdk_and_is_accepted(fake):
    """sign_payload produces the same header as the SDK's own signer and
    stripe.Webhook.construct_event (300 s tolerance) accepts it, yielding the
    event envelope built by FakeStripe.event."""
    sub = fake.add_subscription("cus_abc")
    evt = fake.event("customer.subscription.updated", sub)
    payload = FakeStripe.payload(evt)
    ts = int(time.time())
    header = sign_payload(payload, WHSEC, ts)
    assert header == stripe.WebhookSignature.generate_signature_header(
        payload.decode(), WHSEC, ts)
    assert sign_payload(payload.decode(), WHSEC, ts) == header  # str == bytes

    event = stripe.Webhook.construct_event(payload, header, WHSEC, tolerance=300)
    assert isinstance(event, stripe.Event)
    assert event.id.startswith("evt_") and event.type == "customer.subscription.updated"
    assert event.api_version == DEFAULT_API_VERSION and event.livemode is False
    assert event.data.object.id == sub["id"]
    assert event.data.object["items"]["data"][0]["current_period_end"] == \
        sub["items"]["data"][0]["current_period_end"]

    headers = signed_headers(payload, WHSEC)
    stripe.Webhook.construct_event(payload, headers["Stripe-Signature"], WHSEC, tolerance=300)


def test_signature_wrong_secret_rejected():
    """A signature made with another secret fails verification."""
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "x",
                          "data": {"object": {}}})
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign_payload(payload, "whsec_other"),
                                       WHSEC, tolerance=300)


def test_signature_tampered_body_rejected():
    """Changing one byte of the signed body fails verification."""
    payload = b'{"id": "evt_1", "object": "event", "type": "x", "data": {"object": {}}}'
    header = sign_payload(payload, WHSEC)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.replace(b"x", b"y"), header, WHSEC,
                                       tolerance=300)


def test_signature_older_than_tolerance_rejected():
    """A correct signature whose timestamp is more than 300 s old is rejected;
    one 200 s old is still accepted."""
    payload = b'{"id": "evt_1", "object": "event", "type": "x", "data": {"object": {}}}'
    old = sign_payload(payload, WHSEC, int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError) as ei:
        stripe.Webhook.construct_event(payload, old, WHSEC, tolerance=300)
    assert "tolerance" in str(ei.value).lower()
    recent = sign_payload(payload, WHSEC, int(time.time()) - 200)
    stripe.Webhook.construct_event(payload, recent, WHSEC, tolerance=300)


def test_checkout_completed_event_links_session_and_subscription(client, fake):
    """checkout_session_completed_event completes an SDK-created session and
    creates the active subscription (with subscription_data metadata) that the
    app can then re-read through the SDK; the event verifies when signed."""
    cus = client.v1.customers.create(params={"email": "ada@example.com"})
    sess = client.v1.checkout.sessions.create(params=_checkout_params(cus.id))
    evt = fake.checkout_session_completed_event(sess.id)
    payload = FakeStripe.payload(evt)
    event = stripe.Webhook.construct_event(payload, sign_payload(payload, WHSEC), WHSEC)
    obj = event.data.object
    assert event.type == "checkout.session.completed"
    assert (obj.id, obj.status, obj.payment_status) == (sess.id, "complete", "paid")
    assert (obj.client_reference_id, obj.customer) == ("42", cus.id)
    sub = client.v1.subscriptions.retrieve(obj.subscription)
    assert (sub.status, sub.customer, sub.metadata["user_id"]) == ("active", cus.id, "42")
    assert client.v1.checkout.sessions.retrieve(sess.id).status == "complete"

    inv = fake.invoice_event("invoice.payment_failed", sub.id)
    parent = inv["data"]["object"]["parent"]["subscription_details"]
    assert parent["subscription"] == sub.id
    assert inv["data"]["object"]["status"] == "open"


def test_runnable_as_module():
    """`python -m tests.fakes.stripe_server --port N` prints its base URL and
    serves Stripe routes until stopped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.stripe_server", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:")
        c = stripe.StripeClient(API_KEY, base_addresses={"api": line}, max_network_retries=0)
        assert c.v1.prices.retrieve("price_pro_test").id == "price_pro_test"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
