"""The Stripe webhook: signatures (S7), each handled event type, redelivery and disorder (R7).

Events are built by the fake Stripe server and signed exactly as Stripe signs them; the app re-reads
subscriptions from the fake through the real SDK.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from gemini_backend.extensions import db
from gemini_backend.models import StripeEvent, Subscription, User
from gemini_backend.services.tokens import user_state
from tests.factories import auth_headers, create_user
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.stripe_signing import signed_headers
from tests.conftest import STRIPE_CONFIG
from tests.test_billing import NO_RETRY

SECRET = STRIPE_CONFIG["STRIPE_WEBHOOK_SECRET"]


def deliver(client, event: dict | bytes, secret: str = SECRET, timestamp: int | None = None, headers=None):
    """POST an event to the webhook signed as Stripe signs it (or with the given headers)."""
    payload = event if isinstance(event, bytes) else FakeStripe.payload(event)
    return client.post("/webhook/stripe", data=payload,
                       headers=headers if headers is not None else signed_headers(payload, secret, timestamp))


def state(app, user_id: int) -> dict:
    """What the app now believes: tier (through the cached user state), stored subscription, events recorded."""
    with app.app_context():
        user = db.session.get(User, user_id)
        sub = db.session.scalars(select(Subscription).where(Subscription.user_id == user_id)).first()
        return {"tier": user_state(user_id)["tier"], "is_pro": user.is_pro, "customer": user.stripe_customer_id,
                "status": sub.status if sub else None, "sub_id": sub.stripe_subscription_id if sub else None,
                "period_end": int(sub.current_period_end.timestamp()) if sub and sub.current_period_end else None,
                "cancel_at_period_end": sub.cancel_at_period_end if sub else None,
                "events": db.session.scalar(select(func.count()).select_from(StripeEvent))}


def pro_subscription(fake, user_id: int, status: str = "active", **fields) -> dict:
    """A subscription in the fake for a new customer, carrying the user id in its metadata."""
    customer = fake.add_customer(metadata={"user_id": str(user_id)})
    return fake.add_subscription(customer["id"], status, metadata={"user_id": str(user_id)}, **fields)


def test_checkout_completed_makes_the_user_pro_at_once(billing_app, bclient, fake):
    """After a real checkout, checkout.session.completed links the user and applies the subscription that
    Stripe reports (period end read from items.data[0]); the cached tier changes without waiting."""
    uid = create_user(billing_app)
    session_id = bclient.post("/subscribe/pro", headers=auth_headers(billing_app, uid)).json["session_id"]
    assert state(billing_app, uid)["tier"] == "basic"  # and now cached as basic
    event = fake.checkout_session_completed_event(session_id)
    r = deliver(bclient, event)
    assert r.status_code == 200 and r.json == {"received": True}
    sub = fake.subscription(event["data"]["object"]["subscription"])
    assert "current_period_end" not in sub  # the pinned API version's shape
    now = state(billing_app, uid)
    assert now["tier"] == "pro" and now["is_pro"] and now["status"] == "active" and now["sub_id"] == sub["id"]
    assert now["period_end"] == sub["items"]["data"][0]["current_period_end"]
    assert now["customer"] == sub["customer"] and now["events"] == 1
    status = bclient.get("/subscription/status", headers=auth_headers(billing_app, uid)).json
    assert status["tier"] == "pro" and status["status"] == "active" and status["current_period_end"]


def test_checkout_completed_stores_a_customer_made_by_checkout(billing_app, bclient, fake):
    """A session without our customer (made elsewhere) links the user by client_reference_id and stores the
    customer Checkout created."""
    uid = create_user(billing_app)
    session = {"id": "cs_test_external", "object": "checkout.session", "mode": "subscription",
               "client_reference_id": str(uid), "metadata": {}, "customer": None}
    event = fake.checkout_session_completed_event(session)
    assert deliver(bclient, event).status_code == 200
    now = state(billing_app, uid)
    assert now["tier"] == "pro" and now["customer"] == event["data"]["object"]["customer"]


@pytest.mark.parametrize("by", ["metadata", "customer"])
def test_subscription_created_finds_the_user_by_metadata_or_customer(billing_app, bclient, fake, by):
    """customer.subscription.created makes Pro the user named in the subscription's metadata, or else the
    user who owns its Stripe customer."""
    uid = create_user(billing_app)
    customer = fake.add_customer()
    with billing_app.app_context():
        db.session.get(User, uid).stripe_customer_id = customer["id"]
        db.session.commit()
    metadata = {"user_id": str(uid)} if by == "metadata" else {}
    sub = fake.add_subscription(customer["id"], "trialing", metadata=metadata)
    assert deliver(bclient, fake.subscription_event("customer.subscription.created", sub["id"])).status_code == 200
    now = state(billing_app, uid)
    assert now["tier"] == "pro" and now["status"] == "trialing"


def test_updates_and_deletion_move_the_tier(billing_app, bclient, fake):
    """updated to past_due -> basic, back to active -> pro, cancel at period end reported, deleted -> basic."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    deliver(bclient, fake.subscription_event("customer.subscription.created", sub["id"]))
    assert state(billing_app, uid)["tier"] == "pro"
    fake.set_subscription_status(sub["id"], "past_due")
    deliver(bclient, fake.subscription_event("customer.subscription.updated", sub["id"]))
    assert state(billing_app, uid)["tier"] == "basic" and state(billing_app, uid)["status"] == "past_due"
    fake.set_subscription_status(sub["id"], "active", cancel_at_period_end=True)
    deliver(bclient, fake.subscription_event("customer.subscription.updated", sub["id"]))
    now = state(billing_app, uid)
    assert now["tier"] == "pro" and now["cancel_at_period_end"] is True
    fake.set_subscription_status(sub["id"], "canceled")
    r = deliver(bclient, fake.subscription_event("customer.subscription.deleted", sub["id"]))
    assert r.status_code == 200
    now = state(billing_app, uid)
    assert now["tier"] == "basic" and now["status"] == "canceled" and now["events"] == 4


def test_invoice_events_re_read_the_subscription(billing_app, bclient, fake):
    """invoice.payment_failed and invoice.paid name the subscription under parent.subscription_details; the
    app re-reads it from Stripe and applies Stripe's status (past_due -> basic, active -> pro)."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    deliver(bclient, fake.subscription_event("customer.subscription.created", sub["id"]))
    fake.set_subscription_status(sub["id"], "past_due")
    failed = fake.invoice_event("invoice.payment_failed", sub["id"])
    assert "subscription" not in failed["data"]["object"]
    reads = len(fake.requests_to(f"/v1/subscriptions/{sub['id']}", "GET"))
    assert deliver(bclient, failed).status_code == 200
    assert state(billing_app, uid)["tier"] == "basic"
    assert len(fake.requests_to(f"/v1/subscriptions/{sub['id']}", "GET")) == reads + 1
    fake.set_subscription_status(sub["id"], "active")
    assert deliver(bclient, fake.invoice_event("invoice.paid", sub["id"])).status_code == 200
    assert state(billing_app, uid)["tier"] == "pro"


def test_the_same_event_three_times_applies_once(billing_app, bclient, fake):
    """R7: one event delivered 3 times answers 200 each time, is recorded once and read from Stripe once."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    event = fake.subscription_event("customer.subscription.created", sub["id"])
    for _ in range(3):
        r = deliver(bclient, event)
        assert r.status_code == 200 and r.json == {"received": True}
    assert state(billing_app, uid)["tier"] == "pro"
    with billing_app.app_context():
        assert db.session.scalars(select(StripeEvent.id)).all() == [event["id"]]
    assert len(fake.requests_to(f"/v1/subscriptions/{sub['id']}", "GET")) == 1


def test_concurrent_redeliveries_apply_once(billing_app, fake):
    """R7 under concurrency: the same event delivered by 5 threads at once answers 200 to all and is
    recorded once (the event id insert, in the transaction of the change, lets only one through)."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    event = fake.subscription_event("customer.subscription.created", sub["id"])
    barrier = threading.Barrier(5)
    codes: list[int] = []

    def post() -> None:
        client = billing_app.test_client()
        barrier.wait()
        codes.append(deliver(client, event).status_code)

    threads = [threading.Thread(target=post) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [200] * 5
    now = state(billing_app, uid)
    assert now["events"] == 1 and now["tier"] == "pro"


@pytest.mark.parametrize("final", ["canceled", "active"])
def test_events_out_of_order_end_in_stripe_state(billing_app, bclient, fake, final):
    """R7: created, past_due, recovered/deleted, invoice events delivered newest first still leave the user
    in the state Stripe holds last (each event applied once)."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    t = int(time.time()) - 100
    events = [fake.subscription_event("customer.subscription.created", sub["id"], created=t)]
    fake.set_subscription_status(sub["id"], "past_due")
    events.append(fake.subscription_event("customer.subscription.updated", sub["id"], created=t + 1))
    events.append(fake.invoice_event("invoice.payment_failed", sub["id"], created=t + 2))
    fake.set_subscription_status(sub["id"], final)
    kind = "customer.subscription.deleted" if final == "canceled" else "customer.subscription.updated"
    events.append(fake.subscription_event(kind, sub["id"], created=t + 3))
    for event in reversed(events):
        assert deliver(bclient, event).status_code == 200
    now = state(billing_app, uid)
    assert now["status"] == final and now["tier"] == ("pro" if final == "active" else "basic")
    assert now["events"] == len(events)


def test_news_of_an_old_subscription_does_not_end_the_live_one(billing_app, bclient, fake):
    """A user who re-subscribed stays Pro when the deletion of their previous subscription arrives late."""
    uid = create_user(billing_app)
    old = pro_subscription(fake, uid, "canceled")
    live = pro_subscription(fake, uid)
    deliver(bclient, fake.subscription_event("customer.subscription.created", live["id"]))
    deliver(bclient, fake.subscription_event("customer.subscription.deleted", old["id"]))
    now = state(billing_app, uid)
    assert now["tier"] == "pro" and now["sub_id"] == live["id"] and now["events"] == 2


def test_stripe_unreachable_during_re_read_is_503_and_retried_later(billing_app, bclient, fake):
    """When Stripe cannot be read the webhook answers 503 and records nothing, so Stripe's retry applies it."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    event = fake.subscription_event("customer.subscription.created", sub["id"])
    fake.fail_next.append((500, {"type": "api_error", "message": "An unknown error occurred"}, NO_RETRY))
    r = deliver(bclient, event)
    assert r.status_code == 503 and r.json["error"] == "billing_unreachable"
    assert state(billing_app, uid)["events"] == 0 and state(billing_app, uid)["tier"] == "basic"
    assert deliver(bclient, event).status_code == 200
    assert state(billing_app, uid)["tier"] == "pro"


def test_a_subscription_stripe_no_longer_has_falls_back_to_the_event(billing_app, bclient, fake):
    """A subscription event whose subscription Stripe answers 404 for is applied from the event's own copy
    (a 5xx would make Stripe retry for days for nothing)."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    event = fake.subscription_event("customer.subscription.created", sub["id"])
    del fake.subscriptions[sub["id"]]
    assert deliver(bclient, event).status_code == 200
    assert state(billing_app, uid)["tier"] == "pro"


def test_unknown_types_and_unknown_users_are_acknowledged_and_change_nothing(billing_app, bclient, fake):
    """An event type the app does not handle, and a subscription of nobody we know, are 200, recorded, inert."""
    uid = create_user(billing_app)
    other = fake.event("customer.created", fake.add_customer())
    stranger = fake.add_subscription(fake.add_customer()["id"], metadata={"user_id": "999999"})
    for event in (other, fake.subscription_event("customer.subscription.created", stranger["id"])):
        assert deliver(bclient, event).status_code == 200
    now = state(billing_app, uid)
    assert now["tier"] == "basic" and now["status"] is None and now["events"] == 2


@pytest.mark.parametrize("attack", ["forged", "missing", "stale", "tampered", "garbage"])
def test_s7_bad_signatures_are_400_and_change_nothing(billing_app, bclient, fake, attack):
    """S7: a signature made with another secret, no signature, one older than 300 s, a body changed after
    signing, or a malformed header are all 400 invalid_signature; nothing is recorded, Stripe is not called."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    payload = FakeStripe.payload(fake.subscription_event("customer.subscription.created", sub["id"]))
    headers = signed_headers(payload, SECRET)
    if attack == "forged":
        headers = signed_headers(payload, "whsec_attacker")
    elif attack == "missing":
        del headers["Stripe-Signature"]
    elif attack == "stale":
        headers = signed_headers(payload, SECRET, int(time.time()) - 301)
    elif attack == "tampered":
        payload = payload.replace(b'"active"', b'"trialing"')
    else:
        headers["Stripe-Signature"] = "t=abc,v1"
    requests_before = len(fake.requests)
    r = deliver(bclient, payload, headers=headers)
    assert r.status_code == 400 and r.json["error"] == "invalid_signature", r.json
    now = state(billing_app, uid)
    assert now["events"] == 0 and now["tier"] == "basic" and now["status"] is None
    assert len(fake.requests) == requests_before


def test_a_signature_within_tolerance_is_accepted(billing_app, bclient, fake):
    """A correct signature 200 s old is inside the 300 s tolerance and applies."""
    uid = create_user(billing_app)
    sub = pro_subscription(fake, uid)
    event = fake.subscription_event("customer.subscription.created", sub["id"])
    assert deliver(bclient, event, timestamp=int(time.time()) - 200).status_code == 200
    assert state(billing_app, uid)["tier"] == "pro"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"object": "event"}', json.dumps(
    {"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": "x"}}).encode()])
def test_signed_bodies_that_are_not_events_are_400_invalid_payload(bclient, body):
    """A correctly signed body that is not a Stripe event is 400 invalid_payload."""
    r = bclient.post("/webhook/stripe", data=body,
                     headers={**signed_headers(body, SECRET), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["error"] == "invalid_payload", r.json


def test_without_a_webhook_secret_nothing_is_accepted(make_app, fake):
    """With no STRIPE_WEBHOOK_SECRET configured the webhook answers 503 webhook_not_configured, even for a
    correctly signed event: unsigned events are never trusted."""
    unconfigured = make_app(**{**STRIPE_CONFIG, "STRIPE_WEBHOOK_SECRET": None}, STRIPE_API_BASE=fake.base_url)
    uid = create_user(unconfigured)
    sub = pro_subscription(fake, uid)
    r = deliver(unconfigured.test_client(), fake.subscription_event("customer.subscription.created", sub["id"]))
    assert r.status_code == 503 and r.json["error"] == "webhook_not_configured"
    assert state(unconfigured, uid)["tier"] == "basic" and state(unconfigured, uid)["events"] == 0
