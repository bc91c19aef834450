"""The message tree of a room: the branch from a message up to the root, siblings, and the active leaf.

Every message has a parent (a user message follows a reply, a reply answers its user message), so a room is a
tree and a branch is the path from one message to the root, read in depth order. The room's active_leaf_id names the
branch it shows and continues; every post and regeneration makes its new reply the active leaf.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from sqlalchemy import CTE, ColumnElement, func, literal, or_, select

from gemini_backend.errors import NotFound
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Message
from gemini_backend.services import files

messages = Message.__table__


def ancestry(start: Any, room_id: Any = None, max_rows: int | None = None, stop_at: int | None = None) -> CTE:
    """A recursive CTE of (id, depth): the message `start` (an id or a bind parameter; depth 1) and its ancestors,
    at most max_rows of them, ending below stop_at (which it leaves out) when that is one of them."""
    anchor = select(messages.c.id, messages.c.parent_id, literal(1).label("depth")).where(messages.c.id == start)
    if room_id is not None:
        anchor = anchor.where(messages.c.chatroom_id == room_id)
    if stop_at is not None:
        anchor = anchor.where(messages.c.id != stop_at)
    path = anchor.cte("path", recursive=True)
    parent = messages.alias("parent")
    step = select(parent.c.id, parent.c.parent_id, path.c.depth + 1).join(path, parent.c.id == path.c.parent_id)
    if max_rows is not None:
        step = step.where(path.c.depth < max_rows)
    if stop_at is not None:
        step = step.where(parent.c.id != stop_at)
    return path.union_all(step)


def branch_page(room: Chatroom, before: int | None, after: int | None, limit: int) -> tuple[list[Message], bool]:
    """A page of the room's active branch, oldest first: its newest `limit` messages, or those before a message
    (on that message's branch) or after one; with each message's sibling_ids; and whether more exist."""
    if before is not None:
        path = ancestry(before, room.id, max_rows=limit + 2)
    elif room.active_leaf_id is None:
        return [], False
    else:
        path = ancestry(room.active_leaf_id, room.id, max_rows=None if after is not None else limit + 1,
                        stop_at=after)
    query = select(Message).join(path, Message.id == path.c.id)
    if before is not None:
        query = query.where(path.c.depth > 1)  # the message itself is not before itself
    # Depth, not id: a branch is in creation order, but rows written before the tree may interleave.
    nearest_first = after is None
    order = path.c.depth.asc() if nearest_first else path.c.depth.desc()
    rows = list(db.session.scalars(query.order_by(order).limit(limit + 1)).all())
    page = rows[:limit]
    if nearest_first:
        page.reverse()
    with_siblings(room.id, page)
    files.with_attachments(page)
    return page, len(rows) > limit


def active_branch(room: Chatroom) -> list[Message]:
    """Every message of the room's active branch, oldest first (empty when the room has none)."""
    if room.active_leaf_id is None:
        return []
    path = ancestry(room.active_leaf_id, room.id)
    return list(db.session.scalars(select(Message).join(path, Message.id == path.c.id)
                                   .order_by(path.c.depth.desc())).all())


def with_siblings(room_id: int, page: Sequence[Message]) -> None:
    """Set each message's sibling_ids: the messages with its parent, itself included, oldest first (one query)."""
    parents = {message.parent_id for message in page}
    if not parents:
        return
    known = [parent for parent in parents if parent is not None]
    among: list[ColumnElement[bool]] = [messages.c.parent_id.in_(known)] if known else []
    if None in parents:
        among.append(messages.c.parent_id.is_(None))
    children: dict[int | None, list[int]] = defaultdict(list)
    for child_id, parent_id in db.session.execute(
            select(messages.c.id, messages.c.parent_id)
            .where(messages.c.chatroom_id == room_id, or_(*among)).order_by(messages.c.id)):
        children[parent_id].append(child_id)
    for message in page:
        message.sibling_ids = children[message.parent_id]


def newest_descendant(room_id: int, message_id: int) -> int:
    """The newest message under a message of the room (the message itself when it has none); 404 when the room
    has no such message."""
    anchor = select(messages.c.id).where(messages.c.id == message_id, messages.c.chatroom_id == room_id)
    tree = anchor.cte("tree", recursive=True)
    child = messages.alias("child")
    tree = tree.union_all(select(child.c.id).join(tree, child.c.parent_id == tree.c.id))
    newest = db.session.scalar(select(func.max(tree.c.id)))
    if newest is None:
        raise NotFound("No such message.", error="message_not_found")
    return newest


def activate(room: Chatroom, message_id: int) -> None:
    """Make the branch through a message of the room the active one (it continues to its newest descendant)."""
    room.active_leaf_id = newest_descendant(room.id, message_id)
    db.session.commit()
