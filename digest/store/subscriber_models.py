"""Subscribers and their states."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from digest.core.clock import UTCDateTime, utcnow


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


#: States that must never receive mail again without a fresh double opt-in.
SUPPRESSED_STATES = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    status: str = Field(default=SubscriberStatus.PENDING, max_length=20, index=True)
    source: str = Field(default="", max_length=200)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    confirmed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    unsubscribed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # Single-use binding of the newest confirmation link (digest.core.tokens); cleared when
    # the link is used or the address is suppressed, which retires every older link.
    confirm_nonce: str | None = Field(default=None, max_length=32)
    confirm_sent_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # What this reader wants (subscribers/preferences.py): the topics (a sorted JSON
    # list of categories; NULL = every topic), how often, and the reader's time zone
    # for DIGEST_SEND_LOCAL_TIME (NULL = DIGEST_TIMEZONE).
    topics: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    frequency: str = Field(default="weekly", max_length=10)
    timezone: str | None = Field(default=None, max_length=64)


class ConsentAction(StrEnum):
    SUBSCRIBE = "subscribe"
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    IMPORT = "import"
    ADD = "add"


class ConsentEvent(SQLModel, table=True):
    """One entry of the consent log: who did what to a subscription, when, from where."""

    __tablename__ = "consent_event"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    action: str = Field(max_length=20)
    source: str = Field(default="", max_length=200)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)
    detail: str = Field(default="", max_length=500)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Suppression(SQLModel, table=True):
    """An address that must not be mailed without a new double opt-in, kept only as a
    SHA-256 hash so it survives ``digest subscribers forget``."""

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(max_length=64, unique=True, index=True)
    reason: str = Field(max_length=20)
    source: str = Field(default="", max_length=200)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
