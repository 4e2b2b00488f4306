"""The store: comparisons with their two tools and eight reviews, issues, deliveries.

Subscribers live in :mod:`digest.store.subscriber_models`; both register on ``SQLModel.metadata``.
(No ``from __future__ import annotations`` here: SQLModel resolves relationships from
real annotations.)
"""

from datetime import datetime
from enum import StrEnum
from typing import Optional
from uuid import uuid4

from sqlalchemy import Boolean, Column, Index, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, Relationship, SQLModel

from digest.core.clock import UTCDateTime, utcnow

LENSES: tuple[str, ...] = ("dx", "competition", "thesis", "business")
LENS_TITLES = {
    "dx": "Developer experience",
    "competition": "Competition",
    "thesis": "Thesis",
    "business": "Business",
}


def _ts(nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, index=index)


class Comparison(SQLModel, table=True):
    """One "Tool A vs Tool B" page."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=200, unique=True, index=True)
    title: str = Field(max_length=500)
    standfirst: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    url: str | None = Field(default=None, max_length=2000)
    published_at: datetime = Field(sa_column=_ts(index=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    #: who brought it in last: ``api:<token name>``, ``console:<email>``, ``cli``, ``demo``
    imported_by: str | None = Field(default=None, max_length=400)

    tools: list["Tool"] = Relationship(
        back_populates="comparison",
        sa_relationship_kwargs={
            "cascade": "all, delete-orphan",
            "order_by": "Tool.position",
            "lazy": "selectin",
        },
    )


class Tool(SQLModel, table=True):
    """One side of a comparison (position 0 is tool A)."""

    __table_args__ = (UniqueConstraint("comparison_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True, ondelete="CASCADE")
    position: int
    name: str = Field(max_length=300)
    tagline: str = Field(default="", max_length=1000)
    category: str = Field(default="", max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    panel_ship_pct: int | None = None
    community_pct: int | None = None
    entry: str = Field(default="", max_length=100)

    comparison: Optional["Comparison"] = Relationship(back_populates="tools")
    reviews: list["Review"] = Relationship(
        back_populates="tool",
        sa_relationship_kwargs={
            "cascade": "all, delete-orphan",
            "order_by": "Review.position",
            "lazy": "selectin",
        },
    )


class Review(SQLModel, table=True):
    """One reviewer's quote on one tool through one lens."""

    __table_args__ = (UniqueConstraint("tool_id", "lens"),)

    id: int | None = Field(default=None, primary_key=True)
    tool_id: int = Field(foreign_key="tool.id", index=True, ondelete="CASCADE")
    position: int
    lens: str = Field(max_length=20)
    quote: str = Field(sa_column=Column(Text, nullable=False))
    verdict: str | None = Field(default=None, max_length=10)

    tool: Optional["Tool"] = Relationship(back_populates="reviews")


class IssueState(StrEnum):
    DRAFT = "draft"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


#: An issue in one of these states is "open": at most one is, and a new issue is frozen
#: only when none is (digest/issue/freeze.py).
OPEN_ISSUE_STATES = (IssueState.DRAFT, IssueState.SENDING, IssueState.PAUSED)


class ReviewState(StrEnum):
    """Where a draft stands with the editors (digest/editorial/review.py)."""

    PENDING = "pending"
    APPROVED = "approved"
    HELD = "held"


class Issue(SQLModel, table=True):
    """One issue of the digest, frozen: what an editor previews is what is sent.

    Issues are numbered #1, #2, … in the order they are frozen; ``week`` is the ISO
    week label of the moment it was frozen (``cutoff``), shown beside the number.
    """

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True, index=True)
    week: str = Field(max_length=10, index=True)
    #: the Atom entry id: made once, so it survives a change of DIGEST_BASE_URL
    feed_id: str = Field(
        default_factory=lambda: f"urn:uuid:{uuid4()}", max_length=64, unique=True, index=True
    )
    cutoff: datetime = Field(sa_column=_ts())
    state: str = Field(default=IssueState.DRAFT, max_length=20, index=True)
    state_reason: str | None = Field(default=None, max_length=1000)
    subject: str = Field(max_length=300)
    preheader: str = Field(default="", max_length=300)
    intro: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    html: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    #: when the scheduler will send it (a draft frozen for review), else None
    scheduled_for: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    review: str = Field(default=ReviewState.PENDING, max_length=20)
    reviewed_by: str | None = Field(default=None, max_length=320)
    reviewed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    review_note: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    started_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    #: the editor's note (Markdown) above the comparisons; "" = none
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    #: the subject / preheader follow the comparisons (each reader's copy its own lead)
    #: until an editor writes their own
    subject_auto: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, default=True)
    )
    preheader_auto: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, default=True)
    )
    #: per-variant words (JSON: preference-set key → subject / preheader / intro / note)
    variant_words: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))

    @property
    def label(self) -> str:
        """``#12 (2026-W47)``: how people name an issue."""
        return f"#{self.number} ({self.week})"


class IssueCounter(SQLModel, table=True):
    """One row: the last issue number handed out. Freezing an issue updates it first,
    which serialises freezes on every database (two schedulers at once make one issue)."""

    __tablename__ = "issue_counter"

    id: int = Field(default=1, primary_key=True)
    last_number: int = 0


class IssueEvent(SQLModel, table=True):
    """The history of an issue: who froze, edited, tested, approved, held or sent it,
    when, and what changed (``detail`` is JSON)."""

    __tablename__ = "issue_event"

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", index=True, ondelete="CASCADE")
    at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    actor: str = Field(max_length=320)
    action: str = Field(max_length=30)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class IssueComparison(SQLModel, table=True):
    """Which comparisons an issue features, in order; ``full`` = full card, else a link."""

    __tablename__ = "issue_comparison"

    issue_id: int = Field(foreign_key="issue.id", primary_key=True, ondelete="CASCADE")
    comparison_id: int = Field(foreign_key="comparison.id", primary_key=True, index=True)
    position: int
    full: bool = True
    #: the editor's one-line take on this comparison in this issue
    take: str | None = Field(default=None, max_length=200)


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRY = "retry"
    #: held back until ``next_attempt_at`` by a send limit (a domain's rate, the day's
    #: warm-up allowance) or a local-time wave; waiting is not an attempt
    WAITING = "waiting"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class Delivery(SQLModel, table=True):
    """One recipient of one issue; unique per (issue, subscriber) so nobody gets two."""

    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        Index("ix_delivery_claim", "issue_id", "state", "next_attempt_at"),
        # Fresh rows are claimed in id order; leases are renewed and read by owner.
        Index("ix_delivery_queue", "issue_id", "state", "id"),
        Index("ix_delivery_lease_owner", "lease_owner"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", ondelete="CASCADE")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    #: the compiled variant this reader gets (their topics, their frequency); None = the
    #: issue itself
    variant_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    #: the local-time wave this row belongs to (DIGEST_SEND_LOCAL_TIME), else None
    wave_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    state: str = Field(default=DeliveryState.QUEUED, max_length=20)
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    next_attempt_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    provider_id: str | None = Field(default=None, max_length=300)
    last_error: str | None = Field(default=None, max_length=2000)
    sent_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class MailEventRecord(SQLModel, table=True):
    """A processed event (digest/webhooks/events.py): a provider webhook's, or a DSN or ARF
    report that came back by mail (digest/webhooks/). One row per (provider, event
    id), so a replayed event changes nothing."""

    __tablename__ = "mail_event"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_mail_event_provider_event"),
        Index("ix_mail_event_subscriber", "subscriber_id", "kind", "occurred_at"),
        Index("ix_mail_event_issue", "issue_id", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)
    event_id: str = Field(max_length=300)
    #: how it came: ``webhook``, ``inbound`` (digest inbound) or ``mailbox`` (the poller)
    source: str = Field(default="webhook", max_length=10)
    kind: str = Field(max_length=20)
    email: str = Field(default="", max_length=320)
    subscriber_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    issue_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    delivery_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    provider_message_id: str | None = Field(default=None, max_length=300)
    detail: str = Field(default="", max_length=1000)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class InboundMail(SQLModel, table=True):
    """A message that came back by mail and is for people, not the event store: a
    reader's reply, or a mail system's notice nobody could tie to a delivery. Listed in
    the console; replies are forwarded to ``DIGEST_REPLY_FORWARD`` when it is set."""

    __tablename__ = "inbound_mail"
    __table_args__ = (
        UniqueConstraint("report_id", name="uq_inbound_mail_report"),
        Index("ix_inbound_mail_received", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: the notice's Message-ID (or a hash of its bytes): a redelivery is stored once
    report_id: str = Field(max_length=300)
    kind: str = Field(max_length=20)  # reply / unparsed
    source: str = Field(max_length=10)  # inbound / mailbox
    sender: str = Field(default="", max_length=320)
    subject: str = Field(default="", max_length=300)
    size: int = 0
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    forwarded_to: str | None = Field(default=None, max_length=320)
    forward_error: str | None = Field(default=None, max_length=500)
    received_at: datetime = Field(sa_column=_ts())


class RateBucket(SQLModel, table=True):
    """One shared token bucket (digest/delivery/buckets.py): the global send rate, a
    recipient domain's rate, or a day's warm-up count."""

    __tablename__ = "rate_bucket"

    key: str = Field(primary_key=True, max_length=200)
    tokens: float
    stamp: float


class WebhookNonce(SQLModel, table=True):
    """A signature nonce a provider webhook used (Mailgun's ``token``): kept for the
    age window so a captured signature cannot be replayed with another body."""

    __tablename__ = "webhook_nonce"
    __table_args__ = (
        UniqueConstraint("provider", "nonce", name="uq_webhook_nonce_provider_nonce"),
        Index("ix_webhook_nonce_seen_at", "seen_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)
    nonce: str = Field(max_length=200)
    #: SHA-256 of the body first signed with it: the identical request again is a
    #: harmless retry (its events are deduplicated); any other body is a forgery.
    body_sha256: str = Field(max_length=64)
    seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class IssueVariant(SQLModel, table=True):
    """The issue compiled for one preference set among its recipients (topics and
    frequency): compiled once per set when the send starts, never per reader."""

    __tablename__ = "issue_variant"
    __table_args__ = (UniqueConstraint("issue_id", "key", name="uq_issue_variant_key"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", index=True, ondelete="CASCADE")
    #: ``frequency|topics-json``: the preference set
    key: str = Field(max_length=2000)
    topics: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    frequency: str = Field(default="weekly", max_length=10)
    subject: str = Field(max_length=300)
    html: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    #: the slugs it features, in order (JSON); empty = nothing for this set: no email
    comparisons: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    recipients: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class IssueLink(SQLModel, table=True):
    """A link an issue contains, behind ``/r/<token>``: the token names this row (issue,
    comparison, kind) and never a reader; the redirect only ever leads to ``url``."""

    __tablename__ = "issue_link"
    __table_args__ = (
        UniqueConstraint("issue_id", "comparison_id", "kind", "url", name="uq_issue_link"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", index=True, ondelete="CASCADE")
    comparison_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    kind: str = Field(max_length=20)
    url: str = Field(sa_column=Column(Text, nullable=False))


class ClickCount(SQLModel, table=True):
    """How often a link was followed: per issue and comparison, nothing about who."""

    __tablename__ = "click_count"

    link_id: int = Field(foreign_key="issue_link.id", primary_key=True, ondelete="CASCADE")
    clicks: int = 0
    last_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class ThrottleWindow(SQLModel, table=True):
    """Requests one client made to one throttled route in one fixed window
    (digest/http/throttle.py ``SharedThrottle``): shared by every web process, pruned
    once ``expires`` (a Unix time) has passed."""

    __tablename__ = "throttle_window"

    key: str = Field(primary_key=True, max_length=200)
    window: int = Field(primary_key=True)
    hits: int = 0
    expires: float = Field(index=True)


class ClickSeen(SQLModel, table=True):
    """That some client followed some link in one hour (digest/issue/click_buffer.py):
    a keyed digest that names neither, deleted an hour after its hour, so a client
    counts once per link per hour across every web process."""

    __tablename__ = "click_seen"

    digest: str = Field(primary_key=True, max_length=40)
    hour: int = Field(index=True)
