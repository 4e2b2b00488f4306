"""The editorial loop: review window, notices, approval, holds, edits with history,
preflight before a real send, console accounts, and the numbering migration."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from alembic import command
from cli_support import DigestCLI
from servers import RecordingSMTPServer, free_port
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from store_support import sample_items, write_json

from digest.accounts.lockout import LoginLockout
from digest.accounts.service import add_user, authenticate
from digest.core.settings import SAMPLE_POSTAL_ADDRESS, Settings
from digest.editorial.preflight import preflight
from digest.editorial.review import approve, hold, release
from digest.exceptions import IssueStateError, PreflightError
from digest.issue.editing import Edit, edit_issue
from digest.issue.freeze import find_issue, issue_message, issue_rows
from digest.issue.history import history
from digest.jobs.preview import SAMPLE_RECIPIENT, write_preview
from digest.jobs.schedule import prepare_draft, scheduler_tick
from digest.jobs.weekly import weekly_job
from digest.mail.message import IssueMessage
from digest.store.engine import alembic_config, make_engine, migrate, session_scope
from digest.store.importer import import_comparisons
from digest.store.models import Issue
from digest.transports.memory import MemoryTransport
from digest.transports.smtp import SMTPTransport
from digest.web.app import create_app
from subscribers.service import add_subscriber

pytestmark = pytest.mark.clock  # review windows and slots

BERLIN = ZoneInfo("Europe/Berlin")
#: Monday 7 December 2026, 09:00 in Berlin: the slot of the default cron line.
SLOT = datetime(2026, 12, 7, 9, 0, tzinfo=BERLIN)
READERS = ["ada@example.com", "bo@example.com", "cy@example.com"]


def _comparisons(engine: Engine, tmp_path: Path, times: dict[str, datetime]) -> None:
    items = []
    for slug, when in times.items():
        item = dict(sample_items()[len(items) % len(sample_items())])
        item.update(slug=slug, title=f"{slug.title()} vs Other", url=None)
        item["published_at"] = when.isoformat()
        items.append(item)
    import_comparisons(engine, [write_json(tmp_path / f"c-{min(times)}.json", items)])


def _readers(engine: Engine) -> None:
    with session_scope(engine) as session:
        for email in READERS:
            add_subscriber(session, email, email.split("@")[0].title())


def _reviewers(engine: Engine) -> None:
    with session_scope(engine) as session:
        add_user(session, "ed@example.com", "editor", "correct horse battery")
        add_user(session, "op@example.com", "operator", "correct horse battery")


@pytest.fixture
def review(settings: Settings, engine: Engine, smtp_server: RecordingSMTPServer) -> Settings:
    """SMTP to the recording server, Berlin time, a 24-hour review window."""
    _readers(engine)
    _reviewers(engine)
    return settings.model_copy(
        update={
            "transport": "smtp",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "timezone": "Europe/Berlin",
            "review_hours": 24,
        }
    )


def _smtp(settings: Settings) -> SMTPTransport:
    return SMTPTransport(settings)


def _to(server: RecordingSMTPServer, address: str) -> list[Any]:
    return [m.parsed() for m in server.messages if address in m.rcpt_tos]


def test_the_review_window_freezes_a_draft_and_mails_every_reviewer(
    review: Settings, engine: Engine, smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    _comparisons(engine, tmp_path, {"weekend": SLOT - timedelta(days=2)})
    # Before the window opens, nothing happens.
    assert scheduler_tick(review, engine=engine, now=SLOT - timedelta(hours=25)) is None
    said = scheduler_tick(review, engine=engine, now=SLOT - timedelta(hours=23))
    assert said is not None and "notified 2 reviewers" in said
    with Session(engine) as session:
        draft = find_issue(session, number=1)
        assert draft is not None and draft.state == "draft"
        assert draft.scheduled_for == SLOT.astimezone(UTC)
        assert draft.week == "2026-W50"  # the slot's week, not the Sunday it froze on
    for reviewer in ("ed@example.com", "op@example.com"):
        notice, copy = _to(smtp_server, reviewer)
        assert notice["Subject"].startswith("Review issue #1: ")
        body = notice.get_body(("plain",)).get_content()
        assert f"{review.base_url}/console/issues/1" in body
        assert "2026-12-07 09:00 Europe/Berlin" in body and "unless an editor holds it" in body
        assert copy["Subject"].startswith("[TEST] ")
    assert not any(_to(smtp_server, r) for r in READERS)
    # Ticking again changes nothing; the slot sends it (scheduler's cron job).
    assert scheduler_tick(review, engine=engine, now=SLOT - timedelta(hours=1)) is None
    _comparisons(engine, tmp_path, {"after-the-freeze": SLOT - timedelta(hours=2)})
    early = weekly_job(review, engine=engine, now=SLOT - timedelta(minutes=5), scheduled=True)
    assert early.outcome == "not-due"
    sent = weekly_job(review, engine=engine, now=SLOT, scheduled=True, actor="scheduler")
    assert sent.outcome == "sent" and sent.report is not None and sent.report.sent == 3
    # The comparison published after the freeze waits for the next issue.
    with Session(engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        assert [c.slug for c, _ in issue_rows(session, issue)] == ["weekend"]
        actions = [e["action"] for e in history(session, issue.id or 0)]
    assert actions == ["frozen", "review-notice", "send"]
    nxt = weekly_job(review, engine=engine, now=SLOT + timedelta(days=7), scheduled=True)
    assert nxt.number == 2 and nxt.report is not None and nxt.report.sent == 3


def test_with_required_approval_a_draft_waits_then_goes_when_approved(
    review: Settings, engine: Engine, smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    strict = review.model_copy(update={"require_approval": True})
    _comparisons(engine, tmp_path, {"one": SLOT - timedelta(days=1)})
    scheduler_tick(strict, engine=engine, now=SLOT - timedelta(hours=12))
    waiting = weekly_job(strict, engine=engine, now=SLOT, scheduled=True)
    assert waiting.outcome == "awaiting-approval"
    assert not any(_to(smtp_server, r) for r in READERS)
    with session_scope(engine) as session:
        draft = find_issue(session, number=1)
        assert draft is not None
        assert "waiting for an editor's approval" in (draft.state_reason or "")
        approve(session, draft, "ed@example.com", "links checked")
    # The scheduler's next minute sends the late-approved draft.
    said = scheduler_tick(strict, engine=engine, now=SLOT + timedelta(hours=3))
    assert said is not None and "3 sent" in said
    assert all(len(_to(smtp_server, r)) == 1 for r in READERS)
    with Session(engine) as session:
        entries = history(session, 1)
    approved = next(e for e in entries if e["action"] == "approved")
    assert approved["actor"] == "ed@example.com" and approved["note"] == "links checked"


def test_a_held_draft_goes_nowhere_until_released(
    review: Settings,
    engine: Engine,
    smtp_server: RecordingSMTPServer,
    tmp_path: Path,
    digest_cli: DigestCLI,
) -> None:
    _comparisons(engine, tmp_path, {"one": datetime.now(UTC) - timedelta(days=1)})
    with session_scope(engine) as session:
        draft = prepare_draft(session, review).issue
        assert draft is not None
        hold(session, draft, "ed@example.com", "pricing is wrong")
    held = weekly_job(review, engine=engine, transport=_smtp(review))
    assert held.outcome == "held" and "pricing is wrong" in held.summary()
    cli = digest_cli(
        "send",
        "--yes",
        DIGEST_TRANSPORT="smtp",
        DIGEST_SMTP_HOST=review.smtp_host,
        DIGEST_SMTP_PORT=str(review.smtp_port),
    )
    assert cli.exit_code == 3 and "held by ed@example.com" in cli.stdout
    assert not any(_to(smtp_server, r) for r in READERS)
    with session_scope(engine) as session:
        draft = find_issue(session, number=1)
        assert draft is not None
        release(session, draft, "ed@example.com")
        with pytest.raises(IssueStateError, match="not held"):
            release(session, draft, "ed@example.com")
    assert weekly_job(review, engine=engine).outcome == "sent"


def test_edits_recompile_are_recorded_and_withdraw_an_approval(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    _comparisons(
        engine,
        tmp_path,
        {f"c{i}": now - timedelta(days=1, hours=i) for i in range(1, 4)},
    )
    two = settings.model_copy(update={"full_cards": 2})
    with session_scope(engine) as session:
        draft = prepare_draft(session, two).issue
        assert draft is not None
        assert [(c.slug, f) for c, f in issue_rows(session, draft)] == [
            ("c1", True),
            ("c2", True),
            ("c3", False),
        ]
        approve(session, draft, "ed@example.com")
    _comparisons(engine, tmp_path, {"fresh": now - timedelta(minutes=5)})
    with session_scope(engine) as session:
        draft = find_issue(session, number=1)
        assert draft is not None
        changes = edit_issue(
            session,
            draft,
            two,
            Edit(
                subject="Three verdicts & a newcomer",
                drop=["c2"],
                add=["fresh"],
                order=["fresh", "c3"],
                full=["fresh"],
            ),
            actor="ed@example.com",
        )
        # The automatic preheader follows the comparisons (it named the dropped c2).
        assert set(changes) == {"subject", "preheader", "comparisons", "review"}
        assert [(c.slug, f) for c, f in issue_rows(session, draft)] == [
            ("fresh", True),
            ("c3", False),
            ("c1", False),
        ]
        assert draft.review == "pending"  # approve again: it changed since
        assert "Three verdicts &amp; a newcomer" in draft.html
        assert "Fresh vs Other" in draft.text
        with pytest.raises(IssueStateError, match="does not feature"):
            edit_issue(session, draft, two, Edit(drop=["nope"]))
        with pytest.raises(IssueStateError, match="not a new comparison"):
            edit_issue(session, draft, two, Edit(add=["unknown-slug"]))
        with pytest.raises(IssueStateError, match="already features"):
            edit_issue(session, draft, two, Edit(add=["c1"]))
        entry = [e for e in history(session, draft.id or 0) if e["action"] == "edited"][-1]
    assert entry["actor"] == "ed@example.com"
    assert entry["subject"][1] == "Three verdicts & a newcomer"
    assert entry["comparisons"]["after"] == ["fresh", "c3 (link)", "c1 (link)"]
    # The dropped comparison goes to the next issue, and what was previewed is sent.
    out = write_preview(engine, two, None, tmp_path / "preview", number=1)
    assert out is not None
    outbox = MemoryTransport()
    with session_scope(engine) as session:
        add_subscriber(session, SAMPLE_RECIPIENT.email, SAMPLE_RECIPIENT.name)
    weekly_job(two, engine=engine, transport=outbox)
    from subscriber_support import parse

    sent = parse(outbox.outbox[0].raw)
    previewed = (tmp_path / "preview" / "digest.html").read_bytes().decode("utf-8")
    # Byte for byte, but for the reader's own unsubscribe token (the preview's reader is
    # a sample that belongs to nobody).
    token = re.compile(r"/(unsubscribe|preferences)/[A-Za-z0-9_-]+")
    html = sent.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert token.sub(r"/\1/T", html) == token.sub(r"/\1/T", previewed)
    with session_scope(engine) as session:
        nxt = prepare_draft(session, two).issue
        assert nxt is not None and [c.slug for c, _ in issue_rows(session, nxt)] == ["c2"]
        issue_one = find_issue(session, number=1)
        assert issue_one is not None
        with pytest.raises(IssueStateError, match="only drafts"):
            edit_issue(session, issue_one, two, Edit(subject="too late"))


def test_cli_draft_edit_approve_hold_history(
    digest_cli: DigestCLI, engine: Engine, tmp_path: Path
) -> None:
    _comparisons(engine, tmp_path, {"alpha": datetime.now(UTC) - timedelta(hours=2)})
    assert "froze issue #1" in digest_cli.ok("draft").stdout
    again = digest_cli.json("draft", "--json")
    assert again["number"] == 1 and again["created"] is False
    assert again["comparisons"] == [{"slug": "alpha", "full": True}]
    digest_cli.ok("edit", "--subject", "New words")
    assert "review held" in digest_cli.ok("hold", "--reason", "check").stdout
    assert "review pending" in digest_cli.ok("hold", "--release").stdout
    assert "review approved" in digest_cli.ok("approve", "--issue", "1").stdout
    lines = digest_cli.ok("history").stdout
    for action in ("frozen", "edited", "held", "pending", "approved"):
        assert action in lines
    assert digest_cli("approve", "--issue", "9").exit_code == 1
    assert digest_cli("edit").exit_code == 2


def test_a_second_issue_in_a_week_needs_confirming(
    digest_cli: DigestCLI, engine: Engine, tmp_path: Path
) -> None:
    _readers(engine)
    _comparisons(engine, tmp_path, {"first": datetime.now(UTC) - timedelta(hours=2)})
    digest_cli.ok("send", "--yes")
    _comparisons(engine, tmp_path, {"second": datetime.now(UTC) - timedelta(minutes=1)})
    refused = digest_cli("send", "--yes")
    assert refused.exit_code == 2 and "--again" in refused.stderr
    assert "3 sent" in digest_cli.ok("send", "--yes", "--again").stdout
    assert digest_cli.json("status", "--json")["number"] == 2


# ---------------------------------------------------------------- preflight


@contextmanager
def _serve(settings: Settings, engine: Engine) -> Iterator[str]:
    """The real web app on a loopback port (its /healthz is what preflight asks)."""
    port = free_port()
    app = create_app(
        settings.model_copy(update={"base_url": f"http://127.0.0.1:{port}"}), engine=engine
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def _not_the_app() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _real(settings: Settings, smtp_server: RecordingSMTPServer, **changes: Any) -> Settings:
    """The test settings as a careless real deployment: no unsafe-send allowance."""
    return settings.model_copy(
        update={
            "transport": "smtp",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "allow_unsafe_send": False,
            "preflight_health_timeout": 3.0,
            "postal_address": SAMPLE_POSTAL_ADDRESS,
            **changes,
        }
    )


def test_preflight_refuses_a_careless_real_send_and_names_the_settings(
    settings: Settings, engine: Engine, smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    _readers(engine)
    _comparisons(engine, tmp_path, {"one": datetime.now(UTC) - timedelta(hours=1)})
    careless = _real(settings, smtp_server, from_address="Digest <digest@localhost>")
    with pytest.raises(PreflightError) as refused:
        weekly_job(careless, engine=engine)
    message = str(refused.value)
    # Every setting still at its sample default is named (issue 26: the site URL too).
    for setting in ("DIGEST_FROM", "DIGEST_POSTAL_ADDRESS", "DIGEST_BASE_URL", "DIGEST_SITE_URL"):
        assert setting in message
    assert smtp_server.messages == []
    with Session(engine) as session:
        assert find_issue(session, number=1) is None  # refused before anything changed
    # The Maildir demo is exempt; a local rig is let through with warnings.
    maildir = careless.model_copy(update={"transport": "maildir"})
    assert weekly_job(maildir, engine=engine, dry_run=True).outcome == "dry-run"
    rig = careless.model_copy(update={"allow_unsafe_send": True, "preflight_health_timeout": 0})
    result = weekly_job(rig, engine=engine)
    assert result.outcome == "sent" and len(smtp_server.messages) == 3
    assert any("from domain" in w for w in result.warnings)


def test_preflight_asks_the_unsubscribe_host(
    settings: Settings, engine: Engine, smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    _comparisons(engine, tmp_path, {"one": datetime.now(UTC) - timedelta(hours=1)})
    with session_scope(engine) as session:
        draft = prepare_draft(session, settings).issue
        assert draft is not None
        message = issue_message(draft, settings)
    ok = settings.model_copy(update={"preflight_health_timeout": 3.0})
    with _serve(ok, engine) as base:
        report = preflight(message, ok.model_copy(update={"base_url": base}), preheader="p")
        [check] = [c for c in report.checks if c.name == "unsubscribe host"]
        assert check.status == "ok", check
    with _not_the_app() as other:
        report = preflight(message, ok.model_copy(update={"base_url": other}), preheader="p")
        [check] = [c for c in report.checks if c.name == "unsubscribe host"]
        assert check.status == "error" and "404" in check.detail
    nobody = f"http://127.0.0.1:{free_port()}"
    report = preflight(message, ok.model_copy(update={"base_url": nobody}), preheader="p")
    [check] = [c for c in report.checks if c.name == "unsubscribe host"]
    assert check.status == "warning" and "did not answer" in check.detail


def test_preflight_finds_broken_content(settings: Settings) -> None:
    html = (
        '<html><body><img src="https://cdn.example.net/logo.png">'
        '<a href="https://ok.example.net/">ok</a><a href="//no-scheme">bad</a>'
        "<p>Hello {{ name }}</p></body></html>"
    )
    message = IssueMessage(
        issue_id=1, week="2026-W49", subject="", html=html, text="Hi", settings=settings
    )
    report = preflight(message, settings, preheader="", real=True, health=None)
    errors = {c.name for c in report.errors}
    assert {"images", "links", "template fields", "subject", "preheader"} <= errors
    big = IssueMessage(
        issue_id=1, week="2026-W49", subject="S", html="x" * 110_000, text="t", settings=settings
    )
    [size] = [
        c
        for c in preflight(big, settings, preheader="p", health=None).checks
        if c.name == "html size"
    ]
    assert size.status == "error"


def test_cli_preflight_reports_and_exits_non_zero_on_errors(
    digest_cli: DigestCLI, engine: Engine, tmp_path: Path
) -> None:
    _comparisons(engine, tmp_path, {"one": datetime.now(UTC) - timedelta(hours=1)})
    digest_cli.ok("draft")
    report = digest_cli.json("preflight", "--json", "--no-probe")
    assert report["passed"] is True and report["transport"] == "maildir"
    strict = digest_cli(
        "preflight",
        "--json",
        "--no-probe",
        DIGEST_TRANSPORT="smtp",
        DIGEST_ALLOW_UNSAFE_SEND="false",
    )
    assert strict.exit_code == 1
    failed = json.loads(strict.stdout)
    assert {c["name"] for c in failed["checks"] if c["status"] == "error"} >= {
        "from domain",
        "base url",
        "postal address",
        "site url",
    }
    # An https base URL on a reserved name is still a sample, not a real address.
    https_sample = digest_cli(
        "preflight",
        "--json",
        "--no-probe",
        DIGEST_TRANSPORT="smtp",
        DIGEST_ALLOW_UNSAFE_SEND="false",
        DIGEST_BASE_URL="https://digest.example.com",
    )
    [base] = [c for c in json.loads(https_sample.stdout)["checks"] if c["name"] == "base url"]
    assert base["status"] == "error" and "sample or local" in base["detail"]


# ---------------------------------------------------------------- accounts


def test_users_cli_and_login_throttling(digest_cli: DigestCLI, engine: Engine) -> None:
    added = digest_cli.ok("users", "add", "Ed@Example.com", "--role", "editor")
    assert "added editor ed@example.com" in added.stdout and "/console/setup/" in added.stdout
    result = digest_cli(
        "users",
        "add",
        "op@example.com",
        "--role",
        "operator",
        "--password-stdin",
        stdin="a long operator password\n",
    )
    assert result.exit_code == 0, result.output
    assert "/console/setup/" not in result.stdout
    assert digest_cli("users", "add", "ed@example.com").exit_code == 1
    assert (
        "editor or operator" in digest_cli("users", "add", "x@example.com", "--role", "boss").stderr
    )
    rows = digest_cli.json("users", "list", "--json")
    assert [(r["email"], r["role"], r["password_set"]) for r in rows] == [
        ("ed@example.com", "editor", False),
        ("op@example.com", "operator", True),
    ]
    lockout, here = LoginLockout(), "192.0.2.1"
    with session_scope(engine) as session:
        assert authenticate(
            session, "op@example.com", "a long operator password", lockout=lockout, client=here
        ).user
    for _ in range(5):
        with session_scope(engine) as session:
            wrong = authenticate(
                session, "op@example.com", "wrong guess", lockout=lockout, client=here
            )
            assert wrong.user is None
    with session_scope(engine) as session:
        locked = authenticate(
            session, "op@example.com", "a long operator password", lockout=lockout, client=here
        )
    assert locked.user is None and "too many wrong attempts" in (locked.refused or "")
    assert "removed" in digest_cli.ok("users", "remove", "ed@example.com").stdout
    assert [r["email"] for r in digest_cli.json("users", "list", "--json")] == ["op@example.com"]


# ---------------------------------------------------------------- migration


def test_existing_databases_keep_their_issues_and_get_numbers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    command.upgrade(alembic_config(engine), "0005")
    now = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for week, created in (("2026-W46", now - timedelta(days=7)), ("2026-W47", now)):
            conn.execute(
                text(
                    "INSERT INTO issue (week, cutoff, state, subject, preheader, intro, html, "
                    "text, created_at, updated_at) VALUES (:w, :c, 'sent', :s, '', '', "
                    "'<p>old</p>', 'old', :c, :c)"
                ),
                {"w": week, "c": created.replace(tzinfo=None), "s": f"Issue of {week}"},
            )
    migrate(engine)
    with Session(engine) as session:
        issues = session.exec(select(Issue).order_by(Issue.number)).scalars().all()  # type: ignore[call-overload]
        assert [(i.number, i.week, i.subject, i.html) for i in issues] == [
            (1, "2026-W46", "Issue of 2026-W46", "<p>old</p>"),
            (2, "2026-W47", "Issue of 2026-W47", "<p>old</p>"),
        ]
    settings = Settings(database_url=url, secret_key="x" * 32, transport="memory")
    _comparisons(engine, tmp_path, {"new": datetime.now(UTC) - timedelta(hours=1)})
    with session_scope(engine) as session:
        frozen = prepare_draft(session, settings).issue
        assert frozen is not None and frozen.number == 3
    with engine.begin() as conn:
        # Two issues may now share a week label.
        conn.execute(
            insert(Issue.__table__).values(  # type: ignore[attr-defined]
                number=4,
                week="2026-W47",
                cutoff=now,
                state="cancelled",
                subject="s",
                preheader="",
                intro="",
                html="",
                text="",
                created_at=now,
                updated_at=now,
                review="pending",
            )
        )
    engine.dispose()
