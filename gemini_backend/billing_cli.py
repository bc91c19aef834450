"""`flask billing ...`: support commands to grant, revoke and inspect Pro by phone number."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from gemini_backend.caching import drop_user_state
from gemini_backend.extensions import db
from gemini_backend.models import User
from gemini_backend.schemas.auth import to_e164

billing_cli = AppGroup("billing", help="Grant, revoke and inspect Pro (manual overrides win over Stripe).")


def _user(phone: str) -> User:
    """The account of a phone number, or a clear error."""
    try:
        number = to_e164(phone)
    except ValueError as exc:
        raise click.BadParameter(f"{phone!r} is not a phone number ({exc}).", param_hint="PHONE") from None
    user = db.session.scalars(select(User).where(User.phone == number)).first()
    if user is None:
        raise click.ClickException(f"No account for {number}.")
    return user


def _set_override(phone: str, value: bool) -> User:
    user = _user(phone)
    user.pro_override = value
    db.session.commit()
    drop_user_state(user.id)  # the new tier applies to the very next request
    return user


@billing_cli.command("grant-pro")
@click.argument("phone")
def grant_pro(phone: str) -> None:
    """Make the account Pro whatever Stripe says (manual override)."""
    user = _set_override(phone, True)
    click.echo(f"{user.phone}: Pro granted (tier {user.tier}).")


@billing_cli.command("revoke-pro")
@click.argument("phone")
def revoke_pro(phone: str) -> None:
    """Remove the manual override; the tier follows the Stripe subscription again."""
    user = _set_override(phone, False)
    click.echo(f"{user.phone}: override removed (tier {user.tier}).")


@billing_cli.command("show")
@click.argument("phone")
def show(phone: str) -> None:
    """Print the account's tier, override, subscription and Stripe customer."""
    user = _user(phone)
    sub = user.subscription
    status = f"{sub.status} {sub.stripe_subscription_id or ''}".rstrip() if sub else "none"
    end = sub.current_period_end.isoformat() if sub and sub.current_period_end else "-"
    if sub and sub.cancel_at_period_end:
        end += " (cancels then)"
    click.echo(f"user:         {user.id} {user.phone}")
    click.echo(f"tier:         {user.tier}")
    click.echo(f"override:     {'yes' if user.pro_override else 'no'}")
    click.echo(f"subscription: {status}")
    click.echo(f"period end:   {end}")
    click.echo(f"customer:     {user.stripe_customer_id or '-'}")
