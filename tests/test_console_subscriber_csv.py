"""Subscriber CSV in the console and the CLI (issue 24 item 7): an export with topics,
frequency, time zone and consent source; an import that is all-or-nothing by default
and, when asked (`--skip-invalid`, the console's checkbox), leaves the bad rows out
and reports them by line in a file to download."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cli_support import DigestCLI, settings_env
from console_support import EDITOR, OPERATOR, Console
from sqlalchemy import select
from store_support import dump_store, sample_emails

from digest.store.subscriber_models import Subscriber
from subscribers.preferences import catalog, set_preferences

BAD = (
    "email,name\n"
    "ok@example.com,Ok\n"
    "not-an-address,Bad\n"
    "also@example.com,Fine\n"
    '"=HYPERLINK(""http://evil.test"")",Formula\n'
)


def _people(console: Console) -> dict[str, object]:
    """The subscriber tables (a login writes its session and its throttle count: those
    are not the import's)."""
    return {
        k: v
        for k, v in dump_store(console.engine).items()
        if "console" not in k and k != "throttle_window"
    }


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _emails(console: Console) -> set[str]:
    with console.engine.connect() as conn:
        return set(conn.execute(select(Subscriber.__table__.c.email)).scalars())  # type: ignore[attr-defined]


def _upload(console: Console, body: str, *, skip: bool) -> tuple[str, str]:
    operator, csrf = console.login(OPERATOR)
    data = {"csrf": csrf, "consent": "signup sheet"} | ({"skip_invalid": "yes"} if skip else {})
    answer = operator.post(
        "/console/subscribers/import/new",
        data=data,
        files={"file": ("readers.csv", body.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    job = console.app.state.import_runner.get(job_id)
    job.thread.join(timeout=60)
    return job_id, operator.get(answer.headers["location"]).text


def test_the_console_import_is_all_or_nothing_unless_told_to_skip(console: Console) -> None:
    before = _people(console)
    _job, page = _upload(console, BAD, skip=False)
    assert "Nothing was imported: 2 problems" in page
    assert _people(console) == before

    job_id, page = _upload(console, BAD, skip=True)
    assert "Imported: 2 added" in page and "2 bad lines left out" in page
    assert {"ok@example.com", "also@example.com"} <= _emails(console)
    assert "not-an-address" not in _emails(console)
    operator, _csrf = console.login(OPERATOR)
    report = operator.get(f"/console/subscribers/import/{job_id}/skipped.csv")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert "attachment" in report.headers["content-disposition"]
    rows = _rows(report.text)
    assert [r["line"] for r in rows] == ["3", "5"]
    assert rows[0]["email"] == "not-an-address" and "invalid address" in rows[0]["problem"]
    assert rows[1]["email"].startswith("'=HYPERLINK")  # never a live formula
    editor, _ = console.login(EDITOR)
    assert editor.get(f"/console/subscribers/import/{job_id}/skipped.csv").status_code == 403
    assert operator.get("/console/subscribers/import/nope/skipped.csv").status_code == 404


def test_the_console_export_carries_preferences_and_consent(console: Console) -> None:
    email = sample_emails()[0]
    with console.engine.connect() as conn:
        topics = catalog(conn)[:2]
        sid = conn.execute(
            select(Subscriber.__table__.c.id).where(Subscriber.__table__.c.email == email)  # type: ignore[attr-defined]
        ).scalar_one()
    set_preferences(
        console.engine, sid, topics=topics, frequency="monthly", timezone="America/Chicago"
    )
    operator, _csrf = console.login(OPERATOR)
    assert "/console/subscribers/export.csv" in operator.get("/console/subscribers").text
    answer = operator.get("/console/subscribers/export.csv")
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
    rows = {r["email"]: r for r in _rows(answer.text)}
    assert set(rows) == _emails(console)
    chosen = rows[email]
    assert chosen["topics"].split(";") == sorted(topics)
    assert chosen["frequency"] == "monthly" and chosen["timezone"] == "America/Chicago"
    assert chosen["consent_source"] and chosen["status"] == "active"
    other = next(r for e, r in rows.items() if e != email)
    assert other["topics"] == "" and other["frequency"] == "weekly"
    editor, _ = console.login(EDITOR)
    assert editor.get("/console/subscribers/export.csv").status_code == 403


def test_the_cli_import_skips_on_request_and_writes_the_report(
    console: Console, tmp_path: Path
) -> None:
    cli = DigestCLI(env=settings_env(console.settings))
    source = tmp_path / "bad.csv"
    source.write_text(BAD, encoding="utf-8")
    before = _people(console)
    refused = cli("subscribers", "import", str(source))
    assert refused.exit_code == 1 and "nothing was written" in refused.stderr
    assert _people(console) == before
    assert cli("subscribers", "import", str(source), "--report", "r.csv").exit_code == 2

    report = tmp_path / "skipped.csv"
    done = cli.ok("subscribers", "import", str(source), "--skip-invalid", "--report", str(report))
    assert "imported 2 new subscribers" in done.stdout and "skipped 2 bad lines" in done.stdout
    assert f"{source}:3: skipped: invalid address" in done.stderr
    assert f"{source}:5: skipped:" in done.stderr
    rows = _rows(report.read_text(encoding="utf-8"))
    assert [r["line"] for r in rows] == ["3", "5"]
    assert {"ok@example.com", "also@example.com"} <= _emails(console)

    # What the export writes imports unchanged: everyone is known already.
    exported = tmp_path / "all.csv"
    cli.ok("subscribers", "export", str(exported))
    again = cli.ok("subscribers", "import", str(exported))
    assert "imported 0 new subscribers" in again.stdout
