"""Database models for the whole product (SQLAlchemy 2.0 typed mappings)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, TypeDecorator, UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gemini_backend.extensions import db

# SQLite has no BIGSERIAL; BigInteger with an Integer variant autoincrements on both.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class User(db.Model):
    """An account, identified by its E.164 phone number."""

    __tablename__ = "users"
    # SQLite would otherwise give a deleted account's id to the next sign-up, and with it the deleted account's
    # unexpired tokens and late Stripe events (they name the user by id).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[Optional[str]] = mapped_column(String(100))
    email: Mapped[Optional[str]] = mapped_column(String(254))
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    # "pro" by manual grant (support CLI) wins over the subscription state.
    pro_override: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    is_pro: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    stripe_customer_id: Mapped[Optional[str]] = mapped_column(String(255), unique=True)
    # Tokens carry the version they were issued under; bumping it revokes them all
    # (password change/reset, logout everywhere, a replayed refresh token).
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The session that went on through the last version bump (a password change): its access tokens of the
    # version before stay valid until they expire; its refresh token was replaced.
    kept_session_id: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    subscription: Mapped[Optional["Subscription"]] = relationship(back_populates="user", uselist=False,
                                                                  lazy="selectin")

    @property
    def tier(self) -> str:
        """'pro' or 'basic'."""
        return tier_of(self.is_pro, self.pro_override)

    @property
    def has_password(self) -> bool:
        """Whether a password login is possible."""
        return self.password_hash is not None


def tier_of(is_pro: bool, pro_override: bool) -> str:
    """'pro' (a live subscription, or Pro granted by hand) or 'basic'."""
    return "pro" if (is_pro or pro_override) else "basic"


class OtpChallenge(db.Model):
    """A one-time code sent to a phone for one purpose; only its keyed hash is stored."""

    __tablename__ = "otp_challenges"
    __table_args__ = (Index("ix_otp_challenges_phone_purpose_created", "phone", "purpose", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    consumed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RevokedToken(db.Model):
    """A revoked token id (a rotated refresh token's jti) or session id (logout), kept until it would expire anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), default="jti")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Chatroom(db.Model):
    """A user's conversation with the model."""

    DEFAULT_NAME = "New chat"  # a room still named so is titled after its first reply (services.titles)

    __tablename__ = "chatrooms"
    __table_args__ = (Index("ix_chatrooms_user_activity", "user_id", "last_activity_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    message_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_message_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # max(created_at, last_message_at): the list's sort key, kept in one indexed column.
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The room's reply settings (ai.RoomSettings); null: the server's setting or the model's default.
    model: Mapped[Optional[str]] = mapped_column(String(64))
    system_instruction: Mapped[Optional[str]] = mapped_column(Text)
    temperature: Mapped[Optional[float]] = mapped_column(Float)
    max_output_tokens: Mapped[Optional[int]] = mapped_column(Integer)
    # The newest message of the branch the room shows and continues (services.branches); null while empty. No
    # foreign key: rooms and messages would then reference each other, and a room's deletion takes both anyway.
    active_leaf_id: Mapped[Optional[int]] = mapped_column(BigId)

    messages: Mapped[list["Message"]] = relationship(back_populates="chatroom", cascade="all, delete-orphan",
                                                     passive_deletes=True, lazy="raise")


class Message(db.Model):
    """A user message or the model reply that answers one (reply_to)."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_chatroom_id_id", "chatroom_id", "id"),
        # The sweeper's scan: only unfinished replies, ordered by lease.
        Index("ix_messages_pending_lease", "status", "lease_expires_at"),
        Index("ix_messages_parent_id", "parent_id"),
        Index("ix_messages_reply_to", "reply_to"),
        # A user message has at most one reply in progress, whatever races: a post makes its first, and a
        # regenerate another only once the last one has ended.
        Index("uq_messages_one_pending_reply", "reply_to", unique=True,
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chatroom_id: Mapped[int] = mapped_column(ForeignKey("chatrooms.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(8))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="complete")
    error: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # On a reply: the user message it answers (several after regenerations: siblings).
    reply_to: Mapped[Optional[int]] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    # The message tree: a user message follows a reply (null for a room's first), a reply its user message.
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # On a reply: the UTC day whose quota unit it used (its post's or its regeneration's), cleared when the unit
    # is given back.
    quota_day: Mapped[Optional[str]] = mapped_column(String(10))
    # On a reply: when the user asked to stop it (the record; the running attempt hears it through Redis).
    stop_requested_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    lease_token: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # On a finished reply: Gemini's token counts {prompt_tokens, output_tokens, thinking_tokens, cached_tokens,
    # total_tokens}; null while pending, for user messages, and when Gemini was not called or reported none.
    usage: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # On a reply: the user's rating {rating, comment, updated_at}, or null.
    feedback: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)

    chatroom: Mapped[Chatroom] = relationship(back_populates="messages", lazy="raise")

    # Not stored: the ids of the messages with the same parent, set by services.branches for the answers that
    # show a branch (room detail, message pages).
    sibling_ids = None


class StoredFile(db.Model):
    """A file a user uploaded to attach to messages: its bytes in the database, where every web process and
    consumer reads them; stored once per user and content hash."""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("user_id", "sha256", name="uq_files_user_id_sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Deferred: listing and checking files never loads their bytes.
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageAttachment(db.Model):
    """A file attached to a user message, in the order the user gave."""

    __tablename__ = "message_attachments"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    # No cascade: a file a message uses cannot be deleted (409); deleting the message or the account removes the
    # attachment row in the same statement.
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class Share(db.Model):
    """A read-only snapshot of a room's active branch as it was when shared; anyone with its id may read it."""

    __tablename__ = "shares"

    # Unguessable: secrets.token_urlsafe(32), 256 bits.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    chatroom_id: Mapped[int] = mapped_column(ForeignKey("chatrooms.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    chatroom_name: Mapped[str] = mapped_column(String(100))
    # The shared messages as MessageSchema dumped them: frozen, so later edits, regenerations and messages of
    # the room never show through the link.
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscription(db.Model):
    """The user's Stripe subscription as last reported by Stripe."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    stripe_customer_id: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    stripe_subscription_id: Mapped[Optional[str]] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="none")
    price_id: Mapped[Optional[str]] = mapped_column(String(255))
    current_period_end: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # When we last read this subscription from Stripe (ms), so an older read never overwrites a newer one.
    stripe_updated_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="subscription")


class StripeEvent(db.Model):
    """A Stripe event id already applied, recorded in the same transaction as its effect."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[Optional[int]] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(db.Model):
    """The first response to a request sent with an Idempotency-Key, replayed for 24 h."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[Optional[int]] = mapped_column(Integer)
    response_body: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
