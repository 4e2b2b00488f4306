"""Subscribers and their states."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from digest.timeutil import UTCDateTime, utcnow


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
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    confirmed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    unsubscribed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
