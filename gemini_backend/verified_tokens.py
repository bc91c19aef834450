"""flask-jwt-extended's JWTManager with a bounded memory of the tokens it has already verified.

A client sends the same access token with every request until it expires. Verifying it costs two JWT decodes
and an HMAC on every request (flask-jwt-extended decodes once unverified to find the key, then again verified);
remembering the verified claims per exact token string makes the repeat cheap. What still runs on every request:
the expiry check (here), the revocation check (services.tokens.is_token_revoked) and the token type check.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from flask import current_app
from flask_jwt_extended import JWTManager

MAX_REMEMBERED = 2048  # per app; a full memory starts over (a token's next request verifies it again)


class RememberingJWTManager(JWTManager):
    """JWTManager whose decode remembers verified tokens (per app, bounded) and re-checks only their expiry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None, allow_expired: bool = False) -> dict:
        if csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        # Per app: each app has its own secret (tests make many apps in one process).
        remembered: dict[str, dict] = current_app.extensions.setdefault("verified_tokens", {})
        claims = remembered.get(encoded_token)
        if claims is not None and _unexpired(claims, current_app.config["JWT_DECODE_LEEWAY"]):
            return dict(claims)  # a copy: nobody may change the remembered claims
        # Unknown, or expired: the full decode verifies it, or raises exactly what flask-jwt-extended raises.
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        with self._lock:
            if len(remembered) >= MAX_REMEMBERED:
                remembered.clear()
            remembered[encoded_token] = dict(claims)
        return claims


def _unexpired(claims: dict, leeway: Any) -> bool:
    """PyJWT's own rule: a token is expired once exp <= now - leeway; one without exp never expires."""
    exp = claims.get("exp")
    if exp is None:
        return True
    seconds = leeway.total_seconds() if hasattr(leeway, "total_seconds") else float(leeway or 0)
    return exp > time.time() - seconds
