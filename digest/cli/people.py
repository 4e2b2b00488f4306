"""The ``digest subscribers …`` commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from digest.cli.common import (
    err,
    fail,
    fail_import,
    out,
    progress_bar,
    say,
    settings,
    store_engine,
    subscribers_app,
)
from digest.core.wording import plural
from digest.exceptions import DigestError

logger = logging.getLogger(__name__)


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Add an active subscriber (you vouch for their consent).

    Example: digest subscribers add ada@example.com --name "Ada Lovelace"
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.store.engine import session_scope
    from subscribers.service import add_subscriber

    engine = store_engine(settings())
    try:
        with session_scope(engine) as session:
            sub, created = add_subscriber(session, email, name, source="cli")
    except DigestError as exc:
        fail(str(exc))
    out.print(
        f"{'added' if created else 'already subscribed'}: {sub.email} ({sub.status})",
        highlight=False,
    )


@subscribers_app.command("import")
def subscribers_import(
    csv_path: Annotated[Path, typer.Argument(help="CSV with a header row: email[,name].")],
    consent_source: Annotated[
        str | None,
        typer.Option(
            "--consent-source",
            help="Where and how these people agreed (logged per row in the consent log), "
            "e.g. 'signup sheet, PyCon 2026'. Default: 'CSV import of FILE'.",
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Import the valid rows and leave out the bad ones, each listed by line "
            "(default: any bad row and nothing is written).",
        ),
    ] = False,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="With --skip-invalid: write the skipped lines to this CSV (line, email, problem).",
        ),
    ] = None,
) -> None:
    """Import active subscribers from CSV; any invalid row → nothing is written, unless
    --skip-invalid leaves the bad rows out and lists them.

    Suppressed addresses (unsubscribed, bounced, complained, forgotten) are skipped:
    only a new double opt-in brings them back.

    Example: digest subscribers import readers.csv --consent-source "signup sheet, PyCon 2026"
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.core.problems import more_line
    from subscribers.service import import_csv, skipped_csv

    source = consent_source.strip() if consent_source else f"CSV import of {csv_path.name}"
    if not source:
        fail("--consent-source must not be empty", 2)
    if report_path is not None and not skip_invalid:
        fail("--report lists the lines --skip-invalid leaves out; add --skip-invalid", 2)
    engine = store_engine(settings())
    try:
        with progress_bar("importing") as bar:
            report = import_csv(
                engine, csv_path, source=source, progress=bar.advance, skip_invalid=skip_invalid
            )
    except DigestError as exc:
        fail_import(exc)
    for row in report.skipped:
        err.print(
            f"{csv_path}:{row.line}: skipped: {row.problem}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if report.skipped_total > len(report.skipped):
        err.print(more_line(report.skipped_total - len(report.skipped), len(report.skipped)))
    if report_path is not None:
        try:
            report_path.write_text(
                skipped_csv(report.skipped, report.skipped_total), encoding="utf-8", newline=""
            )
        except OSError as exc:
            fail(f"imported, but cannot write {report_path}: {exc.strerror}")
    skipped = f"; skipped {plural(report.skipped_total, 'bad line')}" if skip_invalid else ""
    written = f" (listed in {report_path})" if report_path is not None and skipped else ""
    out.print(
        f"imported {plural(report.added, 'new subscriber')}; {report.existing} already known; "
        f"{len(report.suppressed)} suppressed left as they are{skipped}{written}",
        highlight=False,
    )


@subscribers_app.command("show")
def subscribers_show(
    email: Annotated[str, typer.Argument(help="The address.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one subscriber with the consent log: who consented, when, how, from where.

    Example: digest subscribers show ada@example.com --json
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from subscribers.privacy import show

    engine = store_engine(settings())
    try:
        info = show(engine, email)
    except DigestError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        return
    if not info["known"]:
        say(f"{info['email']}: forgotten; on the suppression list ({info['suppressed']})")
        return
    say(f"{info['email']}  {info['status']}  {info['name']}")
    say(f"consent: {info['confirmed_at'] or 'none yet'}  source: {info['source']}")
    for ev in info["events"]:
        say(
            f"  {ev['at']}  {ev['action']:<11} {ev['source']}  ip={ev['ip'] or '-'}  "
            f"{ev['detail']}  ua={ev['user_agent'] or '-'}"
        )


@subscribers_app.command("preferences")
def subscribers_preferences(
    email: Annotated[str, typer.Argument(help="The address.")],
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", help="A topic to receive (repeat it); --all-topics for every one."),
    ] = None,
    all_topics: Annotated[
        bool, typer.Option("--all-topics", help="Every topic, including new ones.")
    ] = False,
    frequency: Annotated[
        str | None, typer.Option(help="weekly, or monthly (the month's round-up).")
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="IANA zone for DIGEST_SEND_LOCAL_TIME, e.g. Europe/Berlin; '' resets."),
    ] = None,
) -> None:
    """Show a reader's topics, frequency and time zone, or set what they asked for.

    Options left out keep their value.

    Example: digest subscribers preferences ada@example.com --topic "Developer Tools"
    --timezone Europe/Berlin
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from sqlalchemy import select

    from digest.store.subscriber_models import Subscriber
    from subscribers.preferences import catalog, preferences_of, set_preferences
    from subscribers.service import normalize_email

    engine = store_engine(settings())
    S = Subscriber.__table__  # type: ignore[attr-defined]
    try:
        address = normalize_email(email)
        with engine.connect() as conn:
            found = conn.execute(select(S.c.id).where(S.c.email == address)).scalar()
            if found is None:
                fail(f"no subscriber {address}")
            now = preferences_of(conn, found)
            known = catalog(conn)
        assert now is not None
        if topic or all_topics or frequency is not None or timezone is not None:
            now = set_preferences(
                engine,
                found,
                topics=[] if all_topics else (topic or now.topics or []),
                frequency=frequency or now.frequency,
                timezone=now.timezone if timezone is None else timezone,
            )
    except DigestError as exc:
        fail(str(exc))
    say(
        f"{address}: topics {', '.join(now.topics) if now.topics else 'every topic'}; "
        f"{now.frequency}; time zone {now.timezone or 'the default (DIGEST_TIMEZONE)'}"
    )
    if known:
        say(f"topics to choose from: {', '.join(known)}")


@subscribers_app.command("export")
def subscribers_export(
    csv_path: Annotated[Path, typer.Argument(help="File to write (replaced atomically).")],
) -> None:
    """Write every subscriber with state and consent time (and its source) to CSV.

    Example: digest subscribers export subscribers-2026-11.csv
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from subscribers.privacy import export_csv

    engine = store_engine(settings())
    try:
        count = export_csv(engine, csv_path)
    except OSError as exc:
        fail(f"cannot write {csv_path}: {exc.strerror}")
    say(f"wrote {plural(count, 'subscriber')} to {csv_path}")


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(
    email: Annotated[str, typer.Argument(help="The address.")],
    source: Annotated[
        str, typer.Option(help="How the request reached you (logged in the consent log).")
    ] = "mailto request",
) -> None:
    """Unsubscribe an address at once, e.g. after a request to the List-Unsubscribe mailto.

    Example: digest subscribers unsubscribe ada@example.com --source "mail to unsubscribe@"
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from subscribers.privacy import unsubscribe_address

    engine = store_engine(settings())
    try:
        changed = unsubscribe_address(engine, email, source=source)
    except DigestError as exc:
        fail(str(exc))
    say(("unsubscribed " if changed else "already not subscribed: ") + email.strip())


@subscribers_app.command("forget")
def subscribers_forget(
    email: Annotated[str, typer.Argument(help="The address to erase.")],
) -> None:
    """Erase a person (right to erasure): their record, consent log and deliveries.

    Only a hash of the address stays, on the suppression list, so no import or CLI add
    can bring them back; a new double opt-in still can.

    Example: digest subscribers forget ada@example.com
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from subscribers.privacy import forget

    engine = store_engine(settings())
    try:
        result = forget(engine, email)
    except DigestError as exc:
        fail(str(exc))
    if result.erased:
        say(
            f"forgot {result.email}; its hash stays on the suppression list "
            f"({result.suppressed_as})"
        )
    elif result.suppressed_as:
        say(f"nothing stored for {result.email} beyond its hash on the suppression list")
    else:
        say(f"nothing stored for {result.email}")


@subscribers_app.command("list")
def subscribers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON objects.")] = False,
) -> None:
    """List subscribers with their state.

    Example: digest subscribers list --json | jq '.[] | select(.status=="active")'
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from subscribers.service import list_subscribers, subscriber_to_dict

    engine = store_engine(settings())
    with Session(engine) as session:
        if as_json:
            rows = [subscriber_to_dict(s) for s in list_subscribers(session)]
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        n = 0
        for sub in list_subscribers(session):
            n += 1
            out.print(f"{sub.status:<13} {sub.email}  {sub.name}", highlight=False)
        out.print(plural(n, "subscriber"), highlight=False)
