"""Auth routes: sign-up, OTP and password login, token refresh and logout, password reset and change."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_jwt_extended import get_jwt, jwt_required

from gemini_backend.errors import document_errors
from gemini_backend.extensions import limiter
from gemini_backend.http import BEARER, Blueprint
from gemini_backend.schemas.auth import (ChangePasswordSchema, ForgotPasswordSchema, LoginSchema, LogoutSchema,
                                         OtpSentSchema, PasswordChangedSchema, ResetPasswordSchema, SendOtpSchema,
                                         SignupResponseSchema, SignupSchema, TokensSchema, VerifyOtpSchema)
from gemini_backend.schemas.common import MessageOnlySchema
from gemini_backend.services import auth, tokens

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Phone OTP and password login, JWT sessions")


def _auth_rate_limit() -> str:
    return current_app.config["AUTH_RATE_LIMIT"]


# Per client IP, on every auth route: slows credential stuffing and OTP guessing across numbers.
limiter.limit(_auth_rate_limit)(blp)


# What every auth route with a JSON body can answer besides its own errors (429: the per-IP limit above).
BODY_ERRORS = (400, 413, 415, 422, 429)


@blp.route("/signup")
class Signup(MethodView):
    @blp.arguments(SignupSchema)
    @blp.response(201, SignupResponseSchema)
    @document_errors(blp, *BODY_ERRORS, notes={409: "phone_taken: the number already has an account."})
    def post(self, data):
        """Create an account for a phone number (password optional)."""
        user = auth.sign_up(**data)
        return {"message": "Account created. Request a code with /auth/send-otp to log in.", "user": user}


@blp.route("/send-otp")
class SendOtp(MethodView):
    @blp.arguments(SendOtpSchema)
    @blp.response(200, OtpSentSchema)
    @document_errors(blp, *BODY_ERRORS, notes={429: "otp_rate_limited: 1 code a minute, 5 an hour per number."})
    def post(self, data):
        """Send a one-time code (same answer for known and unknown numbers)."""
        return auth.send_login_code(data["phone"], data["purpose"])


@blp.route("/verify-otp")
class VerifyOtp(MethodView):
    @blp.arguments(VerifyOtpSchema)
    @blp.response(200, TokensSchema)
    @document_errors(blp, *BODY_ERRORS,
                     notes={400: "otp_invalid: wrong, expired, used or dead code, or unknown number."})
    def post(self, data):
        """Log in with a one-time code; returns access and refresh tokens."""
        return auth.login_with_code(data["phone"], data["otp"])


@blp.route("/login")
class Login(MethodView):
    @blp.arguments(LoginSchema)
    @blp.response(200, TokensSchema)
    @document_errors(blp, *BODY_ERRORS, notes={401: "invalid_credentials: wrong phone or password."})
    def post(self, data):
        """Log in with phone and password."""
        return auth.login_with_password(data["phone"], data["password"])


@blp.route("/refresh")
class Refresh(MethodView):
    @jwt_required(refresh=True)
    @blp.response(200, TokensSchema)
    @document_errors(blp, 415, 429, notes={401: "token_missing, token_invalid, token_expired or token_revoked "
                                              "(a spent refresh token revokes the whole session family)."})
    @blp.doc(security=BEARER, description="Send the refresh token as the bearer token. It is spent: use the new one.")
    def post(self):
        """Exchange a refresh token for a new pair (rotation)."""
        return tokens.rotate_refresh_token(tokens.current_account(), get_jwt())


@blp.route("/logout")
class Logout(MethodView):
    @jwt_required()
    @blp.arguments(LogoutSchema, required=False)
    @blp.response(200, MessageOnlySchema)
    @document_errors(blp, 401, *BODY_ERRORS)
    @blp.doc(security=BEARER)
    def post(self, data):
        """Revoke this session's tokens, or every token of the user with {"all": true}."""
        if data.get("all"):
            tokens.revoke_all(tokens.current_account())
            return {"message": "Logged out everywhere."}
        tokens.revoke_session(get_jwt())
        return {"message": "Logged out."}


@blp.route("/forgot-password")
class ForgotPassword(MethodView):
    @blp.arguments(ForgotPasswordSchema)
    @blp.response(200, OtpSentSchema)
    @document_errors(blp, *BODY_ERRORS, notes={429: "otp_rate_limited: 1 code a minute, 5 an hour per number."})
    def post(self, data):
        """Send a password-reset code (same answer for known and unknown numbers)."""
        return auth.send_login_code(data["phone"], "reset")


@blp.route("/reset-password")
class ResetPassword(MethodView):
    @blp.arguments(ResetPasswordSchema)
    @blp.response(200, MessageOnlySchema)
    @document_errors(blp, *BODY_ERRORS, notes={400: "otp_invalid: wrong, expired, used or dead code."})
    def post(self, data):
        """Set a new password with a reset code; every earlier token is revoked."""
        auth.reset_password(data["phone"], data["otp"], data["new_password"])
        return {"message": "Password reset. Log in with the new password."}


@blp.route("/change-password")
class ChangePassword(MethodView):
    @jwt_required()
    @blp.arguments(ChangePasswordSchema)
    @blp.response(200, PasswordChangedSchema)
    @blp.doc(security=BEARER)
    @document_errors(blp, 401, *BODY_ERRORS,
                     notes={400: "wrong_password: current_password is missing or wrong."})
    def post(self, data):
        """Change the password; every other session is revoked, this one goes on with the fresh pair."""
        fresh = auth.change_password(tokens.current_account(), data["new_password"], data["current_password"],
                                     get_jwt().get("sid"))
        return {"message": "Password changed.", **fresh}
