"""What the operator needs to answer "who consented, when and how" and to erase a
person: ``digest subscribers show / export / forget``."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from digest.exceptions import SubscriberError
from digest.store.models import Delivery
from digest.store.subscriber_models import (
    SUPPRESSED_STATES,
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
)
from subscribers.consent import add_suppressions, events_for, suppression_of
from subscribers.lifecycle import suppress
from subscribers.preferences import topics_list
from subscribers.service import normalize_email, quote_cell

logger = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]

EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "consent_at",
    "consent_source",
    "created_at",
    "unsubscribed_at",
    # the reader's own choices (subscribers/preferences.py): topics joined by ";"
    # (empty: every topic), weekly or monthly, an IANA zone (empty: the list's)
    "topics",
    "frequency",
    "timezone",
)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def show(engine: Engine, email: str) -> dict[str, Any]:
    """Everything stored about one address, consent log included.

    A forgotten address shows only whether its hash is on the suppression list.
    """
    address = normalize_email(email)
    with engine.connect() as conn:
        row = conn.execute(select(S).where(S.c.email == address)).first()
        suppressed = suppression_of(conn, address)
        if row is None:
            if suppressed is None:
                raise SubscriberError(f"no subscriber {address}")
            return {
                "email": address,
                "status": None,
                "known": False,
                "suppressed": suppressed,
                "events": [],
            }
        return {
            "email": row.email,
            "name": row.name,
            "status": row.status,
            "known": True,
            "suppressed": suppressed,
            "source": row.source,
            "created_at": _iso(row.created_at),
            "confirmed_at": _iso(row.confirmed_at),
            "unsubscribed_at": _iso(row.unsubscribed_at),
            "confirmation_pending": row.confirm_nonce is not None,
            "topics": json.loads(row.topics) if row.topics else None,
            "frequency": row.frequency,
            "timezone": row.timezone,
            "events": events_for(conn, row.id),
        }


def _export_row(row: Any) -> list[str]:
    topics = topics_list(row.topics)
    return [
        # A valid address may start with "=" too (issue 13).
        quote_cell(row.email),
        quote_cell(row.name),
        row.status,
        _iso(row.confirmed_at) or "",
        quote_cell(row.source),
        _iso(row.created_at) or "",
        _iso(row.unsubscribed_at) or "",
        ";".join(topics) if topics else "",
        row.frequency or "",
        row.timezone or "",
    ]


def _export_pieces(engine: Engine, batch: int) -> Iterator[tuple[int, str]]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=batch).execute(
            select(S).order_by(S.c.id)
        )
        for row in rows:
            writer.writerow(_export_row(row))
            count += 1
            if count % batch == 0:
                yield count, buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield count, buffer.getvalue()


def export_lines(engine: Engine, batch: int = 1000) -> Iterator[str]:
    """The export as CSV text, the header first, then ``batch`` subscribers a piece:
    streamed from the database, never the whole list in memory (the console's
    download and :func:`export_csv` both write it)."""
    for _count, piece in _export_pieces(engine, batch):
        yield piece


def export_csv(engine: Engine, target: Path) -> int:
    """Write every subscriber with state, consent time and source, and their topics,
    frequency and time zone; returns the row count.

    Written to a temporary file beside ``target`` and renamed, so a failed export
    never leaves half a file under the real name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".csv", dir=target.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            for written, piece in _export_pieces(engine, 1000):
                handle.write(piece)
                count = written
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


@dataclass(frozen=True)
class ForgetResult:
    email: str
    erased: bool
    suppressed_as: str | None


def forget(engine: Engine, email: str) -> ForgetResult:
    """Erase a person: their row, consent log and deliveries go; a hash of the address
    stays on the suppression list so no import or CLI add can bring them back (a new
    double opt-in still can)."""
    address = normalize_email(email)
    with engine.begin() as conn:
        row = conn.execute(select(S.c.id, S.c.status).where(S.c.email == address)).first()
        if row is None:
            return ForgetResult(address, False, suppression_of(conn, address))
        reason = (
            row.status if row.status in SUPPRESSED_STATES else SubscriberStatus.UNSUBSCRIBED.value
        )
        add_suppressions(conn, [address], reason, source="forget")
        # Consent events and deliveries go by ON DELETE CASCADE; delete them explicitly
        # too, for databases where foreign keys are not enforced.
        for table in (ConsentEvent.__table__, Delivery.__table__):  # type: ignore[attr-defined]
            conn.execute(delete(table).where(table.c.subscriber_id == row.id))
        conn.execute(delete(S).where(S.c.id == row.id))
        reason = suppression_of(conn, address)
    logger.info("forgot subscriber %s", row.id)
    return ForgetResult(address, True, reason)


def unsubscribe_address(engine: Engine, email: str, *, source: str, detail: str = "") -> bool:
    """Unsubscribe by address (the operator acting on a mailto request); True if the
    state changed. SubscriberError for an unknown address."""
    address = normalize_email(email)
    with engine.begin() as conn:
        sid = conn.execute(select(S.c.id).where(S.c.email == address)).scalar()
        if sid is None:
            raise SubscriberError(f"no subscriber {address}")
        changed = suppress(
            conn,
            [sid],
            SubscriberStatus.UNSUBSCRIBED,
            source=source,
            detail=detail or "unsubscribed by the operator",
        )
    return changed > 0
