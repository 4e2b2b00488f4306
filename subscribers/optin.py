"""Double opt-in and one-click unsubscribe: the state changes behind the public web.

``pending`` → (confirmation link) → ``active`` → (one-click) → ``unsubscribed``.
A suppressed address (unsubscribed, bounced, complained, or forgotten and known only
by hash) keeps its state when someone asks to subscribe it: only the click on the
new confirmation link makes it ``active`` again and lifts the suppression.

Every function here answers the same way for a known and an unknown address when the
caller is the public (no enumeration): the outcome only says whether to send a
confirmation email, which the web layer does after answering.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.core.tokens import address_matches, binding_matches, new_nonce, read_claims
from digest.exceptions import SubscriberError, TokenError
from digest.store.subscriber_models import (
    SUPPRESSED_STATES,
    ConsentAction,
    Subscriber,
    SubscriberStatus,
)
from subscribers.consent import lift_suppression, log_event
from subscribers.lifecycle import suppress
from subscribers.preferences import catalog, check_frequency, check_timezone, normal_topics
from subscribers.service import clean_name, normalize_email

logger = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]

#: One confirmation email per address per this many seconds, whatever the number of
#: requests or client IPs: the form must not become a way to mail-bomb someone.
CONFIRM_RESEND_SECONDS = 600


@dataclass(frozen=True)
class Requester:
    """Who asked, for the consent log."""

    source: str
    ip: str | None = None
    user_agent: str | None = None

    def log(
        self,
        conn: Connection,
        subscriber_id: int,
        action: ConsentAction,
        detail: str,
        when: datetime | None = None,
    ) -> None:
        """One consent-log entry for what this requester did."""
        log_event(
            conn,
            subscriber_id,
            action,
            source=self.source,
            ip=self.ip,
            user_agent=self.user_agent,
            detail=detail,
            when=when,
        )


@dataclass(frozen=True)
class SubscribeOutcome:
    """``recipient`` and ``nonce`` are set when a confirmation email should go out."""

    recipient: Recipient | None = None
    nonce: str | None = None


def _row(conn: Connection, where: Any) -> Any:
    query = select(S).where(where)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def request_subscription(
    engine: Engine,
    email: str,
    name: str | None,
    who: Requester,
    preferences: dict[str, Any] | None = None,
) -> SubscribeOutcome:
    """Record a subscribe request; SubscriberError if the address, the name or a
    preference is invalid. ``preferences``: the sign-up form's topics, frequency and
    time zone (subscribers/preferences.py), kept on a row nobody confirmed yet."""
    address = normalize_email(email)
    clean = clean_name(name)
    for _attempt in range(2):
        try:
            with engine.begin() as conn:
                chosen = _chosen(conn, preferences)
                return _request(conn, address, clean, who, chosen)
        except IntegrityError:
            # Two requests for a new address at once: the other created the row.
            logger.info("concurrent subscribe for one address; retrying")
    raise SubscriberError("too many simultaneous requests for this address; try again")


def _chosen(conn: Connection, preferences: dict[str, Any] | None) -> dict[str, Any]:
    """The stored form of the sign-up's choices (nothing when none were made)."""
    if not preferences:
        return {}
    chosen: dict[str, Any] = {}
    if preferences.get("topics") is not None:
        chosen["topics"] = normal_topics(preferences["topics"], catalog(conn))
    if preferences.get("frequency"):
        chosen["frequency"] = check_frequency(preferences["frequency"])
    if preferences.get("timezone"):
        chosen["timezone"] = check_timezone(preferences["timezone"])
    return chosen


def _request(
    conn: Connection, address: str, name: str, who: Requester, chosen: dict[str, Any]
) -> SubscribeOutcome:
    now = utcnow()
    row = _row(conn, S.c.email == address)
    if row is None:
        nonce = new_nonce()
        key = conn.execute(
            insert(S).values(
                **chosen,
                email=address,
                name=name,
                status=SubscriberStatus.PENDING.value,
                source=who.source[:200],
                created_at=now,
                updated_at=now,
                confirm_nonce=nonce,
                # The throttle slot is taken in the same transaction (see below).
                confirm_sent_at=now,
            )
        ).inserted_primary_key
        assert key is not None
        sid = int(key[0])
        who.log(conn, sid, ConsentAction.SUBSCRIBE, "new address; confirmation requested")
        return SubscribeOutcome(Recipient(sid, address, name), nonce)

    def log(detail: str) -> None:
        who.log(conn, row.id, ConsentAction.SUBSCRIBE, detail)

    if row.status == SubscriberStatus.ACTIVE:
        log("already active; nothing sent")
        return SubscribeOutcome()
    nonce = row.confirm_nonce or new_nonce()
    values: dict[str, Any] = {"confirm_nonce": nonce, "updated_at": now}
    if row.status == SubscriberStatus.PENDING:
        # Nobody has confirmed this row yet, so the newest request may name it and say
        # what it wants.
        if name:
            values["name"] = name
        values.update(chosen)
    conn.execute(update(S).where(S.c.id == row.id).values(**values))
    state = "pending" if row.status == SubscriberStatus.PENDING else f"{row.status}, re-opt-in"
    # The throttle is one conditional UPDATE: of any number of simultaneous requests
    # exactly one takes the slot. It is kept across suppression (unsubscribing from the
    # confirmation clears the nonce, not the time), so "I never asked for this" is not
    # followed by another email at once.
    cutoff = now - timedelta(seconds=CONFIRM_RESEND_SECONDS)
    claimed = conn.execute(
        update(S)
        .where(
            S.c.id == row.id,
            or_(S.c.confirm_sent_at.is_(None), S.c.confirm_sent_at <= cutoff),
        )
        .values(confirm_sent_at=now)
    ).rowcount
    if not claimed:
        log(f"{state}; a confirmation went out less than 10 minutes ago, not resent")
        return SubscribeOutcome()
    log(f"{state}; confirmation requested")
    return SubscribeOutcome(Recipient(row.id, address, values.get("name", row.name)), nonce)


def mark_confirmation_sent(engine: Engine, subscriber_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(S).where(S.c.id == subscriber_id).values(confirm_sent_at=utcnow()))


@dataclass(frozen=True)
class ConfirmOutcome:
    email: str
    name: str
    subscriber_id: int = 0


def confirm_status(engine: Engine, settings: Settings, token: str) -> str:
    """What a confirmation link would do, changing nothing: ``"ready"`` (the button
    confirms) or ``"active"`` (already confirmed: a second visit, or a mail scanner
    came first); TokenError for a forged, expired or superseded link."""
    claims = read_claims(settings, "confirm", token)
    with engine.connect() as conn:
        row = conn.execute(
            select(S.c.status, S.c.confirm_nonce).where(S.c.id == claims.subscriber_id)
        ).first()
    if row is None:
        raise TokenError("this link is not valid")
    usable = row.confirm_nonce is not None and binding_matches(
        bytes.fromhex(row.confirm_nonce), claims
    )
    if not usable and row.status == SubscriberStatus.ACTIVE:
        return "active"
    # Expiry is checked after the state: an old link of an active reader says so.
    read_claims(settings, "confirm", token, max_age=settings.confirm_link_hours * 3600)
    if not usable:
        raise TokenError("this link has already been used or was replaced by a newer one")
    return "ready"


def confirm(engine: Engine, settings: Settings, token: str, who: Requester) -> ConfirmOutcome:
    """Activate the subscriber a confirmation link names.

    TokenError (nothing changed) when the link is forged, expired, for another
    purpose, already used, superseded by a suppression, or its subscriber is gone.
    """
    claims = read_claims(settings, "confirm", token, max_age=settings.confirm_link_hours * 3600)
    with engine.begin() as conn:
        row = _row(conn, S.c.id == claims.subscriber_id)
        if row is None:
            raise TokenError("this link is not valid")
        if row.confirm_nonce is None or not binding_matches(
            bytes.fromhex(row.confirm_nonce), claims
        ):
            if row.status == SubscriberStatus.ACTIVE:
                raise TokenError("this link has already been used; your subscription is active")
            raise TokenError("this link has already been used or was replaced by a newer one")
        now = utcnow()
        was = row.status
        conn.execute(
            update(S)
            .where(S.c.id == row.id)
            .values(
                status=SubscriberStatus.ACTIVE.value,
                confirmed_at=now,
                updated_at=now,
                confirm_nonce=None,
                unsubscribed_at=None,
            )
        )
        lift_suppression(conn, row.email)
        detail = "double opt-in completed" + (f" (was {was})" if was in SUPPRESSED_STATES else "")
        who.log(conn, row.id, ConsentAction.CONFIRM, detail, when=now)
    logger.info("subscriber %s confirmed", row.id)
    return ConfirmOutcome(row.email, row.name, int(row.id))


def unsubscribe_link_recipient(engine: Engine, email: str) -> Recipient | None:
    """Whom to mail a fresh unsubscribe link when someone asks for ``email``: the
    subscriber if the address gets the digest (active or pending), else None. Changes
    nothing; an invalid address is simply nobody (the caller answers the same way)."""
    try:
        address = normalize_email(email)
    except SubscriberError:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(S.c.id, S.c.email, S.c.name, S.c.status).where(S.c.email == address)
        ).first()
    if row is None or row.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return None
    return Recipient(row.id, row.email, row.name or "")


def unsubscribe_status(engine: Engine, settings: Settings, token: str) -> str | None:
    """The state of the subscriber an unsubscribe link names (None: nobody any more);
    TokenError when the link is forged. Changes nothing."""
    claims = read_claims(settings, "unsubscribe", token)
    with engine.connect() as conn:
        row = conn.execute(select(S.c.email, S.c.status).where(S.c.id == claims.subscriber_id))
        found = row.first()
    if found is None or not address_matches(claims, found.email):
        return None
    return str(found.status)


def unsubscribe(engine: Engine, settings: Settings, token: str, who: Requester) -> bool:
    """Unsubscribe whoever the link names, at once; True if this call changed a state.

    A link whose subscriber is gone (forgotten) or already suppressed changes nothing.
    """
    claims = read_claims(settings, "unsubscribe", token)
    with engine.begin() as conn:
        row = _row(conn, S.c.id == claims.subscriber_id)
        if row is None or not address_matches(claims, row.email):
            return False
        changed = suppress(
            conn,
            [row.id],
            SubscriberStatus.UNSUBSCRIBED,
            source=who.source,
            detail="unsubscribe link",
            ip=who.ip,
            user_agent=who.user_agent,
        )
    return changed > 0


@dataclass(frozen=True)
class LinkReader:
    """Whom an unsubscribe link names, for its pages: their state and address."""

    subscriber_id: int
    email: str
    status: str


def link_reader(engine: Engine, settings: Settings, token: str) -> LinkReader | None:
    """The subscriber an unsubscribe link names (None: nobody any more); TokenError
    when the link is forged. Changes nothing."""
    claims = read_claims(settings, "unsubscribe", token)
    with engine.connect() as conn:
        found = _row(conn, S.c.id == claims.subscriber_id)
    if found is None or not address_matches(claims, found.email):
        return None
    return LinkReader(int(found.id), str(found.email), str(found.status))


def undo_unsubscribe(engine: Engine, settings: Settings, token: str, who: Requester) -> bool:
    """Take back an unsubscribe with the same link that made it; True if this call
    changed a state. Only a reader who had confirmed and then unsubscribed comes back
    (a bounce or a complaint stays suppressed); the consent log records the undo."""
    claims = read_claims(settings, "unsubscribe", token)
    with engine.begin() as conn:
        row = _row(conn, S.c.id == claims.subscriber_id)
        if (
            row is None
            or not address_matches(claims, row.email)
            or row.status != SubscriberStatus.UNSUBSCRIBED
            or row.confirmed_at is None
        ):
            return False
        now = utcnow()
        conn.execute(
            update(S)
            .where(S.c.id == row.id, S.c.status == SubscriberStatus.UNSUBSCRIBED.value)
            .values(status=SubscriberStatus.ACTIVE.value, updated_at=now, unsubscribed_at=None)
        )
        lift_suppression(conn, row.email)
        who.log(conn, row.id, ConsentAction.CONFIRM, "unsubscribe undone with its link", when=now)
    logger.info("subscriber %s undid their unsubscribe", row.id)
    return True
