"""Auth request schemas (with the aliases older clients send) and the Tokens/User response schemas."""
from __future__ import annotations

import marshmallow as ma
import phonenumbers
from flask import current_app

from gemini_backend.schemas.billing import SubscriptionSchema
from gemini_backend.schemas.common import AliasedSchema

PASSWORD = {"validate": ma.validate.Length(min=8, max=128), "metadata": {"example": "correct horse battery"}}


def to_e164(text: str) -> str:
    """The number in E.164 (numbers without + read in PHONE_DEFAULT_REGION); ValueError when it cannot be one."""
    if len(text) > 32:
        raise ValueError("too long for a phone number")
    try:
        number = phonenumbers.parse(text, current_app.config["PHONE_DEFAULT_REGION"])
    except phonenumbers.NumberParseException as exc:
        raise ValueError(str(exc)) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PhoneField(ma.fields.String):
    """A phone number, normalised to E.164 with `phonenumbers` (PHONE_DEFAULT_REGION for numbers without +)."""

    default_error_messages = {"invalid_phone": "Not a valid phone number."}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        try:
            return to_e164(super()._deserialize(value, attr, data, **kwargs))
        except ValueError:
            raise self.make_error("invalid_phone") from None


def phone_field() -> PhoneField:
    return PhoneField(required=True, metadata={
        "example": "+14155552671",
        "description": "E.164, or a national number in the default region. Aliases: mobile_number, mobile, phone_number."})


PHONE_ALIASES = {"mobile_number": "phone", "mobile": "phone", "phone_number": "phone"}
OTP_ALIASES = {"code": "otp", "otp_code": "otp"}
NEW_PASSWORD_ALIASES = {"newPassword": "new_password"}


def otp_field() -> ma.fields.String:
    return ma.fields.String(required=True, validate=ma.validate.Regexp(r"^\d{6}$", error="Must be 6 digits."),
                            metadata={"example": "123456", "description": "Aliases: code, otp_code."})


class SignupSchema(AliasedSchema):
    ALIASES = {**PHONE_ALIASES, "full_name": "name"}
    phone = phone_field()
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=100), load_default=None, allow_none=True)
    password = ma.fields.String(load_default=None, allow_none=True, **PASSWORD)
    email = ma.fields.Email(load_default=None, allow_none=True, validate=ma.validate.Length(max=254))


class SendOtpSchema(AliasedSchema):
    ALIASES = PHONE_ALIASES
    phone = phone_field()
    purpose = ma.fields.String(load_default="login", validate=ma.validate.OneOf(["login", "reset", "delete"]),
                               metadata={"description": "login; reset: a password-reset code; delete: a code "
                                                        "that confirms DELETE /user/me."})


class ForgotPasswordSchema(AliasedSchema):
    ALIASES = PHONE_ALIASES
    phone = phone_field()


class VerifyOtpSchema(AliasedSchema):
    ALIASES = {**PHONE_ALIASES, **OTP_ALIASES}
    phone = phone_field()
    otp = otp_field()


class LoginSchema(AliasedSchema):
    ALIASES = PHONE_ALIASES
    phone = phone_field()
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))


class LogoutSchema(AliasedSchema):
    all = ma.fields.Boolean(load_default=False, metadata={"description": "Revoke every token of the user."})


class ResetPasswordSchema(AliasedSchema):
    ALIASES = {**PHONE_ALIASES, **OTP_ALIASES, **NEW_PASSWORD_ALIASES}
    phone = phone_field()
    otp = otp_field()
    new_password = ma.fields.String(required=True, **PASSWORD)


class ChangePasswordSchema(AliasedSchema):
    ALIASES = {"newPassword": "new_password", "old_password": "current_password",
               "oldPassword": "current_password", "currentPassword": "current_password"}
    new_password = ma.fields.String(required=True, **PASSWORD)
    current_password = ma.fields.String(load_default=None, allow_none=True,
                                        validate=ma.validate.Length(max=128),
                                        metadata={"description": "Required when a password is set. "
                                                                 "Aliases: old_password, oldPassword."})


class DeleteAccountSchema(AliasedSchema):
    ALIASES = {**OTP_ALIASES, "current_password": "password"}
    # No example: the documented examples must not be a real password (the schema fuzz logs in with them).
    password = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=128),
                                metadata={"description": "The account's password, when one is set. "
                                                         "Alias: current_password."})
    otp = ma.fields.String(load_default=None, allow_none=True,
                           validate=ma.validate.Regexp(r"^\d{6}$", error="Must be 6 digits."),
                           metadata={"description": "A fresh code of purpose delete (POST /auth/send-otp). "
                                                    "Aliases: code, otp_code."})

    @ma.validates_schema
    def _one_proof(self, data, **kwargs):
        if data.get("password") is None and data.get("otp") is None:
            raise ma.ValidationError("Send password, or otp: a code of purpose delete from POST /auth/send-otp.",
                                     "password")


class UserSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    phone = ma.fields.String(required=True)
    name = ma.fields.String(allow_none=True)
    email = ma.fields.String(allow_none=True)
    tier = ma.fields.String(required=True, metadata={"enum": ["basic", "pro"]})
    has_password = ma.fields.Boolean(required=True)
    created_at = ma.fields.DateTime(required=True)
    subscription = ma.fields.Method("dump_subscription", required=True,
                                    metadata={"type": "object", "description": "Subscription"})

    def dump_subscription(self, user) -> dict:
        return SubscriptionSchema().dump(user)


class TokensSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    token = ma.fields.String(required=True, metadata={"description": "Same as access_token, for older clients."})
    token_type = ma.fields.String(required=True, metadata={"example": "bearer"})
    expires_in = ma.fields.Integer(required=True, metadata={"description": "Seconds until the access token expires."})
    refresh_token = ma.fields.String(required=True)
    user = ma.fields.Nested(UserSchema, required=True)


class SignupResponseSchema(ma.Schema):
    message = ma.fields.String(required=True)
    user = ma.fields.Nested(UserSchema, required=True)


class OtpSentSchema(ma.Schema):
    message = ma.fields.String(required=True)
    expires_in = ma.fields.Integer(required=True, metadata={"description": "Seconds the code stays valid."})
    otp = ma.fields.String(metadata={"description": "Only when OTP_DELIVERY=response (development)."})


class PasswordChangedSchema(TokensSchema):
    message = ma.fields.String(required=True)
