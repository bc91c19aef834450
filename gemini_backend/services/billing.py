"""Stripe billing: Checkout and Billing Portal sessions, the stored subscription, and the webhook that keeps it true.

Stripe is the source of truth. A webhook event is only a signal: each handled event re-reads the subscription
from Stripe and stores what Stripe says now, so redeliveries and out-of-order deliveries all end in Stripe's
current state. The event id is recorded in the same transaction as the change, so an event applies once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import stripe
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gemini_backend.caching import drop_user_state
from gemini_backend.errors import AppError, Conflict, ServiceUnavailable
from gemini_backend.extensions import db
from gemini_backend.models import StripeEvent, Subscription, User

log = logging.getLogger(__name__)

PRO_STATUSES = frozenset({"active", "trialing"})
# Subscriptions that will never bill again: nothing to cancel.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
SUBSCRIPTION_EVENTS = frozenset({"customer.subscription.created", "customer.subscription.updated",
                                 "customer.subscription.deleted"})
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_failed"})
WEBHOOK_TOLERANCE = 300
_clients: dict[tuple[str, str | None, float], stripe.StripeClient] = {}
_clients_lock = threading.Lock()


def _unavailable() -> AppError:
    """503 billing_unavailable: Stripe is not configured here."""
    return ServiceUnavailable("Billing is not configured on this server; try again later.",
                              error="billing_unavailable")


def stripe_client() -> stripe.StripeClient:
    """The StripeClient for the configured key and API base (503 billing_unavailable without a key)."""
    cfg = current_app.config
    if not cfg.get("STRIPE_SECRET_KEY"):
        raise _unavailable()
    ident = (cfg["STRIPE_SECRET_KEY"], cfg.get("STRIPE_API_BASE"), float(cfg.get("STRIPE_TIMEOUT") or 20))
    with _clients_lock:
        client = _clients.get(ident)
        if client is None:
            # The SDK's default timeout is 80 s; a webhook or a click should not wait that long.
            client = stripe.StripeClient(ident[0], base_addresses={"api": ident[1]} if ident[1] else None,
                                         max_network_retries=2, http_client=stripe.RequestsClient(timeout=ident[2]))
            _clients[ident] = client
    return client


@contextmanager
def stripe_errors() -> Iterator[None]:
    """Map Stripe SDK errors: misconfigured or unreachable Stripe -> 503, a refused request -> 502, never a 500."""
    try:
        yield
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        log.error("Stripe refused our API key: %s", exc)
        raise ServiceUnavailable("Billing is misconfigured on this server; try again later.",
                                 error="billing_unavailable") from exc
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise _unreachable(exc) from exc
    except stripe.StripeError as exc:
        if isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500:
            raise _unreachable(exc) from exc
        log.warning("Stripe refused a request: %s", exc)
        raise AppError(f"Stripe refused the request: {exc.user_message or 'unknown error'}",
                       status=502, error="billing_error") from exc


def _unreachable(exc: Exception) -> AppError:
    """503 billing_unreachable: Stripe is down, slow or rate limiting us; worth a retry."""
    log.warning("Stripe not reachable: %s", exc)
    return ServiceUnavailable("Stripe is not reachable right now; try again shortly.", error="billing_unreachable",
                              headers={"Retry-After": "10"})


def _idempotency_key(kind: str, user_id: int, params: dict[str, Any], *extra: Any) -> str:
    """A Stripe Idempotency-Key that is the same exactly when the request would be the same."""
    digest = hashlib.sha256(json.dumps([params, *extra], sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"gb-{kind}-{user_id}-{digest}"


def start_checkout(user: User) -> dict[str, str]:
    """A Stripe Checkout Session (subscription mode, the Pro price) for the user's reused or new Stripe customer."""
    if user.tier == "pro":
        raise Conflict("You already have Pro; manage it with POST /subscribe/portal.", error="already_pro")
    price = current_app.config.get("STRIPE_PRO_PRICE_ID")
    client = stripe_client()
    if not price:
        raise _unavailable()
    with stripe_errors():
        customer = _ensure_customer(client, user)
        try:
            session = _create_checkout_session(client, user, customer, price)
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing" or exc.param != "customer":
                raise
            # The stored customer is gone (deleted, or the key now points at another account): make a new one.
            customer = _ensure_customer(client, user, replace=customer)
            session = _create_checkout_session(client, user, customer, price)
    return {"checkout_url": session.url, "url": session.url, "session_id": session.id}


def _ensure_customer(client: stripe.StripeClient, user: User, replace: str | None = None) -> str:
    """The user's Stripe customer id, creating and storing the customer when there is none (or it is `replace`)."""
    if user.stripe_customer_id and user.stripe_customer_id != replace:
        return user.stripe_customer_id
    params: dict[str, Any] = {"phone": user.phone, "metadata": {"user_id": str(user.id)}}
    if user.name:
        params["name"] = user.name
    # Same key for a racing second click: Stripe replays the first customer instead of creating another.
    customer = client.v1.customers.create(
        params=params, options={"idempotency_key": _idempotency_key("customer", user.id, params, replace)})
    current = User.stripe_customer_id.is_(None) if replace is None else User.stripe_customer_id == replace
    db.session.execute(update(User).where(User.id == user.id, current).values(stripe_customer_id=customer.id))
    db.session.commit()
    db.session.refresh(user)
    return user.stripe_customer_id or customer.id


def _create_checkout_session(client: stripe.StripeClient, user: User, customer: str, price: str):
    """Create the subscription-mode Checkout Session for the Pro price."""
    domain = current_app.config["DOMAIN"]
    metadata = {"user_id": str(user.id)}
    params: dict[str, Any] = {
        "mode": "subscription",
        "customer": customer,
        "line_items": [{"price": price, "quantity": 1}],
        "client_reference_id": str(user.id),
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "success_url": f"{domain}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{domain}/billing/cancel",
    }
    # A double click within the same minute gets the same Session back instead of a second open one.
    key = _idempotency_key("checkout", user.id, params, int(time.time() // 60))
    return client.v1.checkout.sessions.create(params=params, options={"idempotency_key": key})


def open_portal(user: User) -> dict[str, str]:
    """A Stripe Billing Portal session for the user's customer (409 no_billing_account without one)."""
    client = stripe_client()  # 503 billing_unavailable first when Stripe is not configured at all
    if not user.stripe_customer_id:
        raise Conflict("There is no billing account yet; subscribe with POST /subscribe/pro first.",
                       error="no_billing_account")
    params = {"customer": user.stripe_customer_id, "return_url": f"{current_app.config['DOMAIN']}/billing"}
    with stripe_errors():
        portal = client.v1.billing_portal.sessions.create(params=params)
    return {"url": portal.url}


def cancel_subscriptions(user: User) -> list[str]:
    """Cancel at once every live Stripe subscription of the user (account deletion); returns their ids.

    Raises 502/503 (stripe_errors) when Stripe fails, before anything of ours changed, so the caller may stop.
    Besides the stored subscription, the customer's are listed at Stripe: a checkout completed moments ago may
    have made one whose webhook has not arrived yet.
    """
    stored = user.subscription
    known = (stored.stripe_subscription_id
             if stored is not None and stored.stripe_subscription_id and stored.status not in ENDED_STATUSES
             else None)
    user_id, customer = user.id, user.stripe_customer_id
    if known is None and not customer:
        return []
    # Hand the connection back while Stripe answers (up to STRIPE_TIMEOUT, with retries).
    db.session.commit()
    if not current_app.config.get("STRIPE_SECRET_KEY"):
        if known is not None:
            # Nothing can reach Stripe from here; an operator must cancel it in the Dashboard.
            log.error("deleting user %s without cancelling Stripe subscription %s: STRIPE_SECRET_KEY is not set",
                      user_id, known)
        return []
    client = stripe_client()
    with stripe_errors():
        live = {known} if known else set()
        if customer:
            live |= _live_subscriptions_of(client, customer)
        for sub_id in sorted(live):
            try:
                client.v1.subscriptions.cancel(sub_id, params={"cancellation_details": {"comment": "account deleted"}})
            except stripe.InvalidRequestError as exc:
                if exc.code != "resource_missing":
                    raise
                # Stripe answers 404 for a subscription that has already ended (or was deleted): nothing bills.
                log.info("subscription %s of user %s was already gone at Stripe", sub_id, user_id)
    return sorted(live)


def _live_subscriptions_of(client: stripe.StripeClient, customer: str) -> set[str]:
    """The ids of the customer's subscriptions that may still bill (an unknown customer has none)."""
    try:
        # Stripe's default list leaves out canceled subscriptions.
        listed = client.v1.subscriptions.list(params={"customer": customer, "limit": 100})
        return {sub.id for sub in listed.auto_paging_iter() if sub.status not in ENDED_STATUSES}
    except stripe.InvalidRequestError as exc:
        if exc.code != "resource_missing":
            raise
        return set()


# --------------------------------------------------------------------------- webhooks

def handle_event(payload: bytes, sig_header: str | None) -> None:
    """Verify a Stripe webhook and apply it once; raises 400/503 so that only failures worth a retry are 5xx."""
    event = _verified_event(payload, sig_header)
    if db.session.get(StripeEvent, event["id"]) is not None:
        return  # a redelivery: already applied
    subscription, version = _current_subscription(event)  # 503 when Stripe is unreachable, so Stripe retries
    user_id = _apply(event, subscription, version)
    if user_id is not None:
        drop_user_state(user_id)


def _verified_event(payload: bytes, sig_header: str | None) -> dict[str, Any]:
    """The event, once its Stripe-Signature (HMAC over the raw body, at most 300 s old) checks out."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise ServiceUnavailable("Stripe webhooks are not configured on this server (STRIPE_WEBHOOK_SECRET).",
                                 error="webhook_not_configured")
    try:
        event = stripe.Webhook.construct_event(payload, sig_header, secret, tolerance=WEBHOOK_TOLERANCE,
                                               api_key=current_app.config.get("STRIPE_SECRET_KEY"))
        data = event.to_dict()
    except stripe.SignatureVerificationError as exc:
        raise AppError(f"The Stripe-Signature header does not verify: {exc.user_message}", status=400,
                       error="invalid_signature") from exc
    except (ValueError, TypeError, AttributeError) as exc:
        raise AppError("The webhook body is not a Stripe event.", status=400, error="invalid_payload") from exc
    obj = (data.get("data") or {}).get("object")
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str) or not isinstance(obj, dict):
        raise AppError("The webhook body is not a Stripe event.", status=400, error="invalid_payload")
    return data


def _subscription_id(event: dict[str, Any]) -> str | None:
    """The id of the subscription an event is about, or None for events that change no subscription."""
    kind, obj = event["type"], event["data"]["object"]
    if kind in SUBSCRIPTION_EVENTS:
        ref = obj.get("id")
    elif kind == "checkout.session.completed":
        ref = obj.get("subscription")
    elif kind in INVOICE_EVENTS:
        # Since API version 2025-03-31 the invoice names its subscription under parent.subscription_details.
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        ref = details.get("subscription") or obj.get("subscription")
    else:
        return None
    return ref.get("id") if isinstance(ref, dict) else ref


def _current_subscription(event: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """Re-read the event's subscription from Stripe; returns it with its version (the read time, in ms)."""
    sub_id = _subscription_id(event)
    if not sub_id:
        return None, 0
    client = stripe_client()
    read_at = time.time_ns() // 1_000_000
    with stripe_errors():
        try:
            return client.v1.subscriptions.retrieve(sub_id).to_dict(), read_at
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":
                raise
    # Stripe does not know it (deleted test data, another account): only the event's own copy is left.
    log.warning("subscription %s of event %s is unknown to Stripe", sub_id, event["id"])
    obj = event["data"]["object"]
    return (obj if event["type"] in SUBSCRIPTION_EVENTS else None), int(event.get("created") or 0) * 1000


def _apply(event: dict[str, Any], subscription: dict[str, Any] | None, version: int) -> int | None:
    """Record the event and store its effect in one transaction; returns the user whose tier may have changed."""
    db.session.add(StripeEvent(id=event["id"], type=event["type"], created=event.get("created")))
    try:
        # Inserting first takes the write lock (SQLite) / the id (PostgreSQL): a racing duplicate stops here.
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return None
    obj = event["data"]["object"]
    user = None
    if event["type"] == "checkout.session.completed":
        user = _find_user([obj.get("client_reference_id"), (obj.get("metadata") or {}).get("user_id")],
                          _id_of(obj.get("customer")))
        if user is not None and not user.stripe_customer_id and _id_of(obj.get("customer")):
            user.stripe_customer_id = _id_of(obj.get("customer"))
    if subscription is not None:
        user = user or _find_user([(subscription.get("metadata") or {}).get("user_id")],
                                  _id_of(subscription.get("customer")))
        if user is not None:
            _store_subscription(user, subscription, version)
    if user is None and (subscription is not None or event["type"] == "checkout.session.completed"):
        log.warning("Stripe event %s (%s) matches no user; recorded and ignored", event["id"], event["type"])
    db.session.commit()
    return user.id if user is not None else None


def _id_of(ref: Any) -> str | None:
    """The id of a Stripe reference, expanded (an object) or not (an id)."""
    return ref.get("id") if isinstance(ref, dict) else ref


_USER_ID = re.compile(r"[0-9]{1,18}")


def _find_user(user_ids: list[Any], customer: str | None) -> User | None:
    """The user named by a user id (client_reference_id, metadata), else the owner of the Stripe customer; locked."""
    query = select(User).with_for_update().execution_options(populate_existing=True)
    for raw in user_ids:
        # ASCII digits that fit a BIGINT: "²" passes isdigit() but not int(), and a larger number fails the query.
        if raw is not None and _USER_ID.fullmatch(str(raw)):
            user = db.session.scalars(query.where(User.id == int(raw))).first()
            if user is not None:
                return user
    if customer:
        return db.session.scalars(query.where(User.stripe_customer_id == customer)).first()
    return None


def _store_subscription(user: User, sub: dict[str, Any], version: int) -> None:
    """Store Stripe's subscription on the user's row unless the row holds a newer read, then derive is_pro."""
    row = db.session.scalars(select(Subscription).where(Subscription.user_id == user.id)
                             .execution_options(populate_existing=True)).first()
    if row is None:
        row = Subscription(user_id=user.id)
        db.session.add(row)
    elif row.stripe_updated_at is not None and version < row.stripe_updated_at:
        return  # a concurrent handler already stored a later read
    elif (row.stripe_subscription_id not in (None, sub["id"]) and row.status in PRO_STATUSES
          and sub.get("status") not in PRO_STATUSES):
        return  # the news about an older subscription must not end the user's live one
    item = ((sub.get("items") or {}).get("data") or [{}])[0]
    # Since API version 2025-03-31 the period lives on each subscription item, not on the subscription.
    period_end = item.get("current_period_end") or sub.get("current_period_end")
    cancel_at = sub.get("cancel_at")
    row.stripe_subscription_id = sub["id"]
    row.stripe_customer_id = _id_of(sub.get("customer"))
    row.status = str(sub.get("status") or "none")
    row.price_id = _id_of(item.get("price"))
    row.current_period_end = datetime.fromtimestamp(period_end, tz=timezone.utc) if period_end else None
    row.cancel_at_period_end = bool(sub.get("cancel_at_period_end")) or bool(
        cancel_at and period_end and cancel_at <= period_end)
    row.stripe_updated_at = version
    user.is_pro = row.status in PRO_STATUSES
