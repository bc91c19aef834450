"""Subscription, usage and billing schemas."""
from __future__ import annotations

import marshmallow as ma


class SubscriptionSchema(ma.Schema):
    """Dumps a User: its tier and its Stripe subscription (status "none" when it never had one)."""

    tier = ma.fields.String(required=True, metadata={"enum": ["basic", "pro"]})
    status = ma.fields.String(required=True, attribute="subscription.status", dump_default="none", metadata={
        "description": "none, active, trialing, past_due, unpaid, canceled, incomplete, incomplete_expired, paused"})
    current_period_end = ma.fields.DateTime(allow_none=True, attribute="subscription.current_period_end",
                                            dump_default=None)
    cancel_at_period_end = ma.fields.Boolean(required=True, attribute="subscription.cancel_at_period_end",
                                             dump_default=False)


# On message posts (and GET /user/usage): Basic's daily quota, or Pro's per-minute throttle when there is one.
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "Messages allowed in the window (Basic: the UTC day; Pro: the minute).",
                          "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Messages left in the window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Unix time (seconds) when the window resets.", "schema": {"type": "integer"}},
}


class UsageSchema(ma.Schema):
    tier = ma.fields.String(required=True, metadata={"enum": ["basic", "pro"]})
    daily_limit = ma.fields.Integer(required=True, allow_none=True, metadata={
        "description": "Accepted messages allowed per UTC day; null for Pro (no daily limit).", "example": 5})
    used_today = ma.fields.Integer(required=True, metadata={"description": "Messages accepted since 00:00 UTC."})
    remaining = ma.fields.Integer(required=True, allow_none=True, metadata={
        "description": "Messages left today; null for Pro."})
    resets_at = ma.fields.DateTime(required=True, metadata={"description": "The next 00:00 UTC."})
    tokens_today = ma.fields.Integer(required=True, metadata={
        "description": "Gemini tokens of your replies finished since 00:00 UTC."})
    tokens_this_month = ma.fields.Integer(required=True, metadata={
        "description": "The same since the first of the month (UTC)."})


class CheckoutSchema(ma.Schema):
    checkout_url = ma.fields.String(required=True, metadata={
        "description": "Stripe Checkout page to send the browser to.",
        "example": "https://checkout.stripe.com/c/pay/cs_test_a1..."})
    url = ma.fields.String(required=True, metadata={"description": "Same as checkout_url, for older clients."})
    session_id = ma.fields.String(required=True, metadata={"example": "cs_test_a1..."})


class PortalSchema(ma.Schema):
    url = ma.fields.String(required=True, metadata={
        "description": "Stripe Billing Portal page where the user manages or cancels Pro.",
        "example": "https://billing.stripe.com/p/session/test_..."})


class WebhookReceivedSchema(ma.Schema):
    received = ma.fields.Boolean(required=True, metadata={"example": True})
