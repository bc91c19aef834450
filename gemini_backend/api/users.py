"""The signed-in user's profile and usage."""
from __future__ import annotations

from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.errors import document_errors
from gemini_backend.http import Blueprint
from gemini_backend.schemas.auth import UserSchema
from gemini_backend.schemas.billing import RATE_LIMIT_HEADERS, UsageSchema
from gemini_backend.services import quota, token_usage
from gemini_backend.services.tokens import current_account

blp = Blueprint("users", __name__, url_prefix="/user", description="The signed-in user")
BEARER = [{"bearerAuth": []}]


@blp.route("/me")
class Me(MethodView):
    @jwt_required()
    @blp.response(200, UserSchema)
    @document_errors(blp, 401)
    @blp.doc(security=BEARER)
    def get(self):
        """The signed-in user, with tier and subscription."""
        return current_account()


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
