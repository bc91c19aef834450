"""The signed-in user's profile and usage, and account deletion."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.errors import document_errors
from gemini_backend.extensions import limiter
from gemini_backend.http import BEARER, Blueprint
from gemini_backend.schemas.auth import DeleteAccountSchema, UserSchema
from gemini_backend.schemas.billing import RATE_LIMIT_HEADERS, UsageSchema
from gemini_backend.services import accounts, quota, token_usage
from gemini_backend.services.tokens import current_account

blp = Blueprint("users", __name__, url_prefix="/user", description="The signed-in user")


@blp.route("/me")
class Me(MethodView):
    @jwt_required()
    @blp.response(200, UserSchema)
    @document_errors(blp, 401)
    @blp.doc(security=BEARER)
    def get(self):
        """The signed-in user, with tier and subscription."""
        return current_account()

    # Per client IP, as on the auth routes: a stolen access token must not buy unlimited password guesses.
    @limiter.limit(lambda: current_app.config["AUTH_RATE_LIMIT"])
    @jwt_required()
    @blp.arguments(DeleteAccountSchema)
    @blp.response(204)
    @document_errors(blp, 400, 401, 413, 415, 422, 429, notes={
        400: "wrong_password (password wrong, or the account has none) or otp_invalid (not a live code of "
             "purpose delete).",
        502: "billing_error: Stripe refused to cancel the subscription; nothing was deleted.",
        503: "billing_unreachable or billing_unavailable: Stripe could not cancel the subscription; nothing was "
             "deleted, retry after Retry-After seconds."})
    @blp.doc(security=BEARER, description="Send `password` (when one is set) or `otp`, a fresh code of purpose "
             "`delete` from POST /auth/send-otp; every proof sent must be right. The Stripe subscription is "
             "cancelled at once, then every room, message, file, share, idempotency record and code of the user is "
             "deleted and every token refused. The phone number may sign up again as a new account.")
    def delete(self, data):
        """Delete the account and everything in it; cannot be undone."""
        accounts.delete_account(current_account(), data["password"], data["otp"])


@blp.route("/usage")
class Usage(MethodView):
    @jwt_required()
    @blp.response(200, UsageSchema, headers=RATE_LIMIT_HEADERS)
    @document_errors(blp, 401)
    @blp.doc(security=BEARER)
    def get(self):
        """Today's message usage against the tier's daily limit (UTC day), and the Gemini tokens your replies used."""
        user = current_account()
        usage = quota.usage(user.id, user.tier)
        return {**usage, **token_usage.token_totals(user.id)}, 200, quota.rate_limit_headers(usage)
