"""Billing routes: upgrade to Pro with Stripe Checkout, manage it in the Billing Portal, read its status.

Older clients' paths (/subscription/pro, /subscribe/status, /subscription/portal) are served by the same views.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.errors import document_errors
from gemini_backend.http import BEARER, Blueprint
from gemini_backend.schemas.billing import CheckoutSchema, PortalSchema, SubscriptionSchema
from gemini_backend.services import billing
from gemini_backend.services.tokens import current_account

blp = Blueprint("billing", __name__, description="Pro subscription through Stripe")


@blp.route("/subscribe/pro")
class SubscribePro(MethodView):
    @jwt_required()
    @blp.response(200, CheckoutSchema)
    @document_errors(blp, 401, 415, notes={
        409: "already_pro: the user is Pro already.",
        502: "billing_error: Stripe refused the request.",
        503: "billing_unavailable (Stripe is not configured on this server) or billing_unreachable (Stripe did "
             "not answer); retry after Retry-After seconds."})
    @blp.doc(security=BEARER, description="Opens a Stripe Checkout Session (subscription mode, the Pro price) for "
             "the user's Stripe customer, created once and reused. A repeated click within a minute returns the "
             "same session. The user becomes Pro when Stripe reports the payment (webhook). "
             "Alias: POST /subscription/pro.")
    def post(self):
        """Start the upgrade to Pro: a Stripe Checkout URL."""
        return billing.start_checkout(current_account())


@blp.route("/subscription/status")
class SubscriptionStatus(MethodView):
    @jwt_required()
    @blp.response(200, SubscriptionSchema)
    @document_errors(blp, 401)
    @blp.doc(security=BEARER, description="status is \"none\" when the user never subscribed. "
             "Alias: GET /subscribe/status.")
    def get(self):
        """The user's tier and Stripe subscription."""
        return current_account()


@blp.route("/subscribe/portal")
class BillingPortal(MethodView):
    @jwt_required()
    @blp.response(200, PortalSchema)
    @document_errors(blp, 401, 415, notes={
        409: "no_billing_account: the user has no Stripe customer (never started a checkout).",
        502: "billing_error: Stripe refused the request.",
        503: "billing_unavailable (Stripe is not configured on this server) or billing_unreachable (Stripe did "
             "not answer); retry after Retry-After seconds."})
    @blp.doc(security=BEARER, description="Alias: POST /subscription/portal.")
    def post(self):
        """A Stripe Billing Portal URL to manage or cancel Pro."""
        return billing.open_portal(current_account())


# Aliases for older clients: the same views, documented under their own paths too.
blp.add_url_rule("/subscription/pro", "SubscribeProAlias", SubscribePro)
blp.add_url_rule("/subscribe/status", "SubscriptionStatusAlias", SubscriptionStatus)
blp.add_url_rule("/subscription/portal", "BillingPortalAlias", BillingPortal)
