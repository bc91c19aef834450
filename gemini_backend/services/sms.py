"""OTP delivery behind one small interface: `response` (the code goes back in the JSON), `log`, `twilio`."""
from __future__ import annotations

import logging

import requests
from flask import current_app

from gemini_backend.errors import ServiceUnavailable

log = logging.getLogger(__name__)
TWILIO_API = "https://api.twilio.com"


def deliver_code(phone: str, code: str, purpose: str) -> str | None:
    """Send the code by the configured channel; returns the code only when delivery is `response`."""
    channel = current_app.config["OTP_DELIVERY"]
    text = f"Your verification code is {code}. It expires in {current_app.config['OTP_TTL_SECONDS'] // 60} minutes."
    if channel == "response":
        return code
    if channel == "log":
        log.info("OTP for %s (%s): %s", phone, purpose, code)
        return None
    if channel == "twilio":
        send_twilio_sms(phone, text)
        return None
    raise ServiceUnavailable(f"OTP_DELIVERY={channel!r} is not a known channel.", error="otp_delivery_unavailable")


def send_twilio_sms(to: str, body: str) -> None:
    """POST the message to Twilio's Messages API (form-encoded, basic auth), as Twilio documents it."""
    cfg = current_app.config
    sid, token, sender = cfg["TWILIO_ACCOUNT_SID"], cfg["TWILIO_AUTH_TOKEN"], cfg["TWILIO_FROM"]
    if not (sid and token and sender):
        raise ServiceUnavailable("SMS delivery is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM).",
                                 error="otp_delivery_unavailable")
    url = f"{(cfg['TWILIO_API_BASE'] or TWILIO_API).rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
    try:
        response = requests.post(url, data={"To": to, "From": sender, "Body": body}, auth=(sid, token), timeout=10)
    except requests.RequestException as exc:
        log.warning("Twilio unreachable: %s", exc)
        raise ServiceUnavailable("The SMS provider is not reachable; try again shortly.",
                                 error="otp_delivery_failed") from None
    if response.status_code >= 300:
        detail = _twilio_message(response)
        log.warning("Twilio refused the message (%s): %s", response.status_code, detail)
        raise ServiceUnavailable("The SMS provider refused to send the code; try again later.",
                                 error="otp_delivery_failed")


def _twilio_message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message"))
    except ValueError:
        return response.text[:200]
