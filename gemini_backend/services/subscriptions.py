"""The Subscription view of a user, shared by /user/me and /subscription/status."""
from __future__ import annotations

from typing import Any

from gemini_backend.models import User


def describe_subscription(user: User) -> dict[str, Any]:
    """The Subscription object of API.md: tier, Stripe status, period end, cancel flag."""
    sub = user.subscription
    return {
        "tier": user.tier,
        "status": sub.status if sub else "none",
        "current_period_end": sub.current_period_end if sub else None,
        "cancel_at_period_end": bool(sub.cancel_at_period_end) if sub else False,
    }
