"""Sign webhook payloads exactly as Stripe does.

Stripe sends ``Stripe-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256, keyed with the endpoint's signing secret (``whsec_...``, used as
its UTF-8 bytes, not base64-decoded), over ``"<t>.<raw body>"``. This is the
scheme ``stripe.Webhook.construct_event`` / ``stripe.WebhookSignature.verify_header``
check; standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["compute_signature", "sign_payload", "signed_headers"]


def _as_bytes(payload: bytes | bytearray | str) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    return payload.encode("utf-8")


def compute_signature(payload: bytes | str, secret: str, timestamp: int) -> str:
    """The hex ``v1`` signature for ``payload`` signed at ``timestamp``."""
    signed = str(int(timestamp)).encode("ascii") + b"." + _as_bytes(payload)
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign_payload(
    payload: bytes | str, secret: str, timestamp: int | None = None
) -> str:
    """Return the ``Stripe-Signature`` header value for ``payload``.

    ``payload`` must be the exact bytes that will be sent as the request body.
    ``timestamp`` defaults to now (Unix seconds); pass an old one to build an
    expired signature.
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={ts},v1={compute_signature(payload, secret, ts)}"


def signed_headers(
    payload: bytes | str, secret: str, timestamp: int | None = None
) -> dict[str, str]:
    """Headers for POSTing ``payload`` to a webhook endpoint as Stripe would."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign_payload(payload, secret, timestamp),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
