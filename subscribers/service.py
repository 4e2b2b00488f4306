"""Adding, importing and listing subscribers.

Addresses are validated and normalised with email-validator (no DNS look-ups: a
newsletter must not hang on a resolver). Suppressed addresses (unsubscribed, bounced,
complained) are never reactivated here: only a new double opt-in brings them back.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.core.clock import utcnow
from digest.core.mailsafe import check_address, header_text, one_line
from digest.core.problems import MAX_PROBLEMS, Problems, more_line
from digest.exceptions import AddressError, SubscriberError
from digest.store.subscriber_models import (
    SUPPRESSED_STATES,
    ConsentAction,
    Subscriber,
    SubscriberStatus,
)
from subscribers.consent import log_event, log_event_rows, suppressed_among, suppression_of

logger = logging.getLogger(__name__)

MAX_NAME = 200
MAX_CSV_BYTES = 200 * 1024 * 1024


def mask_address(email: str) -> str:
    """An address shown on a page anyone holding the link may see: enough for its owner
    to know it ("a•••e@example.com"), not enough to harvest it."""
    local, _, domain = email.rpartition("@")
    if not local:
        return "•••"
    shown = local[0] + "•••" + (local[-1] if len(local) > 2 else "")
    return f"{shown}@{domain}"


def normalize_email(raw: str) -> str:
    """The canonical form of an address, or SubscriberError saying what is wrong."""
    if any(ch in raw for ch in "\r\n\x00"):
        raise SubscriberError("address contains line breaks or NUL")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid address {raw.strip()[:80]!r}: {exc}") from exc
    # The domain is case-insensitive and stored in its ASCII (punycode) form, however it
    # was typed: one row per mailbox, and the form every transport needs. The local part
    # is kept as given except for case folding, which every real mailbox provider treats
    # as equal; a non-ASCII local part is allowed (sent with SMTPUTF8, docs/hardening.md).
    address = f"{result.local_part}@{result.ascii_domain}".lower()
    try:
        return check_address(address)
    except AddressError as exc:
        raise AddressError(f"invalid address {raw.strip()[:80]!r}: {exc}") from exc


def clean_name(raw: str | None) -> str:
    # A name goes into the To header: one line and no RFC 2047 encoded word (mailsafe).
    name = header_text(raw or "", MAX_NAME + 1)
    if len(name) > MAX_NAME:
        raise SubscriberError(f"name is longer than {MAX_NAME} characters")
    return name


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def quote_cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run: a name like "=HYPERLINK(...)" (or a valid
    address starting with "=") gets a leading "'" (CSV injection)."""
    return "'" + value if value[:1] in FORMULA_STARTS else value


def unquote_cell(value: str) -> str:
    """The inverse of :func:`quote_cell`, so an export imports unchanged."""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def add_subscriber(
    session: Session,
    email: str,
    name: str | None = None,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    source: str = "cli",
) -> tuple[Subscriber, bool]:
    """Add (or find) a subscriber; returns (subscriber, created).

    Refuses an address that is suppressed, including one only the suppression list
    still knows (a forgotten person): only a new double opt-in brings it back.
    """
    address = normalize_email(email)
    existing = find_subscriber(session, address)
    if existing is not None:
        if existing.status in SUPPRESSED_STATES:
            raise SubscriberError(
                f"{address} is {existing.status}; only a new double opt-in can bring it back"
            )
        return existing, False
    reason = suppression_of(session.connection(), address)
    if reason is not None:
        raise SubscriberError(
            f"{address} is on the suppression list ({reason}); "
            "only a new double opt-in can bring it back"
        )
    now = utcnow()
    subscriber = Subscriber(
        email=address,
        name=clean_name(name),
        status=status,
        source=source[:200],
        created_at=now,
        updated_at=now,
        confirmed_at=now if status == SubscriberStatus.ACTIVE else None,
    )
    session.add(subscriber)
    session.flush()
    assert subscriber.id is not None
    log_event(
        session.connection(),
        subscriber.id,
        ConsentAction.ADD,
        source=source,
        detail=f"added as {status}",
        when=now,
    )
    return subscriber, True


@dataclass(frozen=True)
class SkippedRow:
    """A line an import left out (with ``skip_invalid``): its number, the email cell as
    it was given, and what is wrong with it."""

    line: int
    email: str
    problem: str


@dataclass
class CsvImportReport:
    added: int = 0
    existing: int = 0
    suppressed: list[str] = field(default_factory=list)
    #: The first MAX_PROBLEMS lines left out; ``skipped_total`` counts them all.
    skipped: list[SkippedRow] = field(default_factory=list)
    skipped_total: int = 0


SKIPPED_COLUMNS = ("line", "email", "problem")


def skipped_csv(skipped: list[SkippedRow], total: int | None = None) -> str:
    """The lines an import skipped as a CSV report (line, email as given, problem);
    every cell is made safe for spreadsheets (a bad row may well hold a formula). With
    ``total`` above the rows given, a last row counts the lines not listed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SKIPPED_COLUMNS)
    for row in skipped:
        writer.writerow([row.line, quote_cell(one_line(row.email, 320)), quote_cell(row.problem)])
    if total is not None and total > len(skipped):
        writer.writerow(["", "", more_line(total - len(skipped), len(skipped))])
    return buffer.getvalue()


def read_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a subscriber CSV with their line numbers; SubscriberError on bad shape."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SubscriberError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_CSV_BYTES:
        raise SubscriberError(f"{path}: larger than 200 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SubscriberError(f"{path}:{line}: invalid UTF-8") from exc
    # strict: a quote opened and never closed is an error, not the rest of the file
    # swallowed into one field.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise SubscriberError(f"{path}:1: {exc}") from exc
    header = [h.strip().lower() for h in (fieldnames or [])]
    if "email" not in header:
        raise SubscriberError(f"{path}:1: header row must name an 'email' column")
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        # DictReader would keep only the last of them: one column silently lost.
        raise SubscriberError(f"{path}:1: header names {', '.join(repeated)} more than once")
    reader.fieldnames = header
    started = 2  # the line the next record starts on
    try:
        for row in reader:
            yield started, {k: (v or "") for k, v in row.items() if k}
            started = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise SubscriberError(
                f"{path}:{started}: a quoted field opened on this line is never closed"
            ) from exc
        raise SubscriberError(f"{path}:{started}: {exc}") from exc


def import_csv(
    engine: Engine,
    path: Path,
    *,
    source: str = "csv import",
    progress: Callable[[int], None] | None = None,
    skip_invalid: bool = False,
) -> CsvImportReport:
    """All-or-nothing: every row is checked first; one bad row → nothing is written.
    With ``skip_invalid`` the bad rows are left out instead, each reported by line in
    ``report.skipped``, and the rest is imported; a file that cannot be read as CSV at
    all (no ``email`` header, invalid UTF-8, a quote never closed) still fails whole.

    ``source`` is the consent source (where and how these people agreed); it is
    logged per added row with the file's line number. Addresses that are suppressed
    — by state, or only by hash after ``forget`` — are never added.
    """
    # Bounded: two million bad lines keep a thousand problems and a count (issue 22).
    problems = Problems()
    skipped: list[SkippedRow] = []
    rows: dict[str, tuple[int, str]] = {}
    for line, row in read_csv(path):
        try:
            # unquote_cell: a file written by `subscribers export` imports unchanged.
            address = normalize_email(unquote_cell(row.get("email", "")))
            name = clean_name(unquote_cell(row.get("name") or ""))
        except SubscriberError as exc:
            problems.add(f"{path}:{line}: {exc}")
            if len(skipped) < MAX_PROBLEMS:
                skipped.append(SkippedRow(line, row.get("email", "")[:320], str(exc)))
            continue
        rows.setdefault(address, (line, name))
    if problems and not skip_invalid:
        raise SubscriberError("\n".join(problems.lines()))
    report = CsvImportReport(skipped=skipped, skipped_total=problems.total)
    consent_source = one_line(source, 200) or "csv import"
    S = Subscriber.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        addresses = list(rows)
        for start in range(0, len(addresses), 500):
            chunk = addresses[start : start + 500]
            known = {
                r.email: r.status
                for r in conn.execute(sa_select(S.c.email, S.c.status).where(S.c.email.in_(chunk)))
            }
            unknown = [a for a in chunk if a not in known]
            listed = suppressed_among(conn, unknown)
            now = utcnow()
            fresh = []
            for address in chunk:
                if address in listed or known.get(address) in SUPPRESSED_STATES:
                    report.suppressed.append(address)
                elif address in known:
                    report.existing += 1
                else:
                    fresh.append(address)
            if fresh:
                conn.execute(
                    insert(S),
                    [
                        {
                            "email": a,
                            "name": rows[a][1],
                            "status": SubscriberStatus.ACTIVE.value,
                            "source": consent_source,
                            "created_at": now,
                            "updated_at": now,
                            "confirmed_at": now,
                        }
                        for a in fresh
                    ],
                )
                ids: dict[str, int] = dict(
                    conn.execute(sa_select(S.c.email, S.c.id).where(S.c.email.in_(fresh))).all()
                )
                log_event_rows(
                    conn,
                    [(ids[a], f"{path.name} line {rows[a][0]}") for a in fresh],
                    ConsentAction.IMPORT,
                    source=consent_source,
                    when=now,
                )
                report.added += len(fresh)
            if progress:
                progress(len(chunk))
    return report


def list_subscribers(session: Session) -> Iterator[Subscriber]:
    yield from session.exec(select(Subscriber).order_by(col(Subscriber.id)))


def subscriber_to_dict(sub: Subscriber) -> dict[str, object]:
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "source": sub.source,
        "created_at": sub.created_at.isoformat(),
        "confirmed_at": sub.confirmed_at.isoformat() if sub.confirmed_at else None,
    }
