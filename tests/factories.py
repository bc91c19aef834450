"""Rows and tokens for tests, made through the app's own services."""
from __future__ import annotations

import itertools

from gemini_backend.extensions import db
from gemini_backend.models import User
from gemini_backend.services.tokens import issue_tokens

_numbers = itertools.count(1)


def new_phone() -> str:
    """A distinct valid US number (555-01xx range is reserved for fiction)."""
    return f"+1202555{next(_numbers) % 10000:04d}"


def create_user(app, phone: str | None = None, password: str | None = None, name: str | None = None,
                pro: bool = False) -> int:
    """Insert a user (optionally with a password, optionally Pro by manual grant) and return its id."""
    from gemini_backend.services.passwords import hash_password
    with app.app_context():
        user = User(phone=phone or new_phone(), name=name, pro_override=pro,
                    password_hash=hash_password(password) if password else None)
        db.session.add(user)
        db.session.commit()
        return user.id


def tokens_for(app, user_id: int) -> dict:
    """A fresh Tokens dict (access and refresh) for the user."""
    with app.app_context():
        tokens = issue_tokens(db.session.get(User, user_id))
        tokens.pop("user")
        return tokens


def auth_headers(app, user_id: int) -> dict[str, str]:
    """`Authorization: Bearer <access token>` for the user."""
    return {"Authorization": f"Bearer {tokens_for(app, user_id)['access_token']}"}
