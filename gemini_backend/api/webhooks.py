"""Stripe's webhook: signed events that keep the stored subscription and the tier in step with Stripe."""
from __future__ import annotations

from flask import request
from flask.views import MethodView

from gemini_backend.errors import document_errors
from gemini_backend.http import Blueprint
from gemini_backend.schemas.billing import WebhookReceivedSchema
from gemini_backend.services import billing

blp = Blueprint("webhooks", __name__, description="Events from Stripe")

_SIGNATURE = {"in": "header", "name": "Stripe-Signature", "required": True, "schema": {"type": "string"},
              "description": "t=<unix time>,v1=<HMAC-SHA256 of \"<t>.<raw body>\" with the endpoint secret>"}
_EVENT_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "A Stripe Event, verified over the exact raw bytes."}}}}


@blp.route("/webhook/stripe", parameters=[_SIGNATURE])
class StripeWebhook(MethodView):
    @blp.response(200, WebhookReceivedSchema)
    @document_errors(blp, 413, 415, notes={
        400: "invalid_signature (forged, missing or older than 300 s) or invalid_payload (not a Stripe event).",
        503: "webhook_not_configured (no STRIPE_WEBHOOK_SECRET), or Stripe/database not reachable while applying "
             "the event (Stripe retries)."})
    @blp.doc(requestBody=_EVENT_BODY, description="Handles checkout.session.completed, "
             "customer.subscription.created/updated/deleted, invoice.paid and invoice.payment_failed; other types "
             "and repeated event ids are acknowledged and change nothing.")
    def post(self):
        """Receive a Stripe event (signature checked over the raw body)."""
        billing.handle_event(request.get_data(), request.headers.get("Stripe-Signature"))
        return {"received": True}
