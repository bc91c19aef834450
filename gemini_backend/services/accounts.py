"""Account deletion: prove it is the owner, cancel the Stripe subscription, then remove every row of the user at once.

Stripe comes first and alone: when it fails nothing of ours has changed and the user may simply retry; once it has
answered, one transaction deletes the user's rows in every table. Which rows are the user's is read from the schema
(a user_id or phone column, or a foreign key to a row of the user), so a table added later is covered too.
"""
from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, Table, delete, or_, select

from gemini_backend.caching import drop_chatroom_list, drop_user_state
from gemini_backend.errors import AppError
from gemini_backend.extensions import db
from gemini_backend.models import User
from gemini_backend.services import billing, otp
from gemini_backend.services.passwords import verify_password

log = logging.getLogger(__name__)


def delete_account(user: User, password: str | None, code: str | None) -> None:
    """Delete the account once every proof sent (its password, a code of purpose delete) is right.

    502/503 when Stripe fails to cancel the subscription: then nothing is deleted.
    """
    _confirm(user, password, code)
    user_id, phone = user.id, user.phone  # the row is not read again: a racing deletion may have taken it
    cancelled = billing.cancel_subscriptions(user)
    tables = delete_rows(user_id, phone)
    # The rows are gone, so every token of the user is refused once its cached state is.
    drop_user_state(user_id)
    drop_chatroom_list(user_id)
    log.info("account %s deleted (rows in %s); Stripe subscriptions cancelled: %s", user_id,
             ", ".join(tables) or "no table", ", ".join(cancelled) or "none")


def _confirm(user: User, password: str | None, code: str | None) -> None:
    """Check each proof sent (the schema makes sure there is one); the same errors as a password change and login."""
    if password is not None:
        # verify_password does the same work without a hash, so an account without a password answers alike.
        if not verify_password(user.password_hash, password):
            message = ("The password is wrong." if user.password_hash is not None else
                       "This account has no password; confirm with a code of purpose delete (POST /auth/send-otp).")
            raise AppError(message, status=400, error="wrong_password")
    if code is not None:
        # Not spent here: should Stripe fail, the same code still works for the retry; the deletion removes it.
        otp.verify_code(user.phone, "delete", code, spend=False)


def delete_rows(user_id: int, phone: str) -> list[str]:
    """Delete every row of the user, children before parents, in one transaction; the tables that held some."""
    # Lock the user first: a webhook handler (which locks the user too) has either finished or finds no user.
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update())
    owned = rows_of_user(user_id, phone)
    tables = []
    for table in reversed(db.metadata.sorted_tables):
        # rowcount leaves out rows a cascade took (a message's replies): enough to say the table held some.
        if table in owned and db.session.execute(delete(table).where(owned[table])).rowcount:
            tables.append(table.name)
    db.session.commit()
    return tables


def rows_of_user(user_id: int, phone: str) -> dict[Table, ColumnElement[bool]]:
    """For each table that holds rows of the user, the condition that selects them: the user's own row, rows with
    its user_id or phone, and rows that reference one of those by a foreign key (unless it is SET NULL on delete:
    such a row outlives what it references)."""
    users = User.__table__
    owned: dict[Table, ColumnElement[bool]] = {users: users.c.id == user_id}
    for table in db.metadata.sorted_tables:  # parents before children
        if table is users:
            continue
        conditions = []
        if "user_id" in table.c:
            conditions.append(table.c.user_id == user_id)
        if "phone" in table.c:
            conditions.append(table.c.phone == phone)
        for fk in table.foreign_keys:
            parent = fk.column.table
            if parent is table or parent not in owned or (fk.ondelete or "").upper() == "SET NULL":
                continue  # a self reference (a message's parent) is deleted with the rest of its table
            if parent is users:
                if fk.parent.name != "user_id":
                    conditions.append(fk.parent == user_id)
            else:
                conditions.append(fk.parent.in_(select(fk.column).where(owned[parent])))
        if conditions:
            owned[table] = or_(*conditions)
    return owned
