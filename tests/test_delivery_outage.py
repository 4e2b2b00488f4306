"""Outages pause instead of failing everyone; refusals of a message never suppress; a
second sender joins (issue 13, items 3, 4 and 7, and the send exit codes of item 13).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cli_support import DigestCLI, settings_env
from conftest import throwaway_postgres
from servers import RecordingHandler, free_port
from smtp_faults import seed_issue_store
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from store_support import WEEK

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.delivery.controls import resume_issue, retry_failed
from digest.delivery.queue import counts, enqueue
from digest.exceptions import IssueStateError
from digest.issue.freeze import freeze_issue
from digest.jobs.weekly import weekly_job
from digest.mail.message import IssueMessage
from digest.store.engine import make_engine, migrate, session_scope
from digest.store.models import Delivery, Issue, IssueState
from digest.store.subscriber_models import Subscriber
from digest.transports.base import SendResult, Transport
from digest.transports.maildir import MaildirTransport
from digest.transports.memory import MemoryTransport
from digest.transports.smtp import SMTPTransport

D = Delivery.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
S = Subscriber.__table__  # type: ignore[attr-defined]


class Answering(RecordingHandler):
    """Records like RecordingHandler, but answers RCPT or DATA with ``refusal`` while it
    is set (a real aiosmtpd server misbehaving the way a real one does)."""

    def __init__(self) -> None:
        super().__init__()
        self.rcpt_refusal: str | None = None
        self.data_refusal: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_refusal:
            return self.rcpt_refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_refusal:
            return self.data_refusal
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def answering_smtp(port: int | None = None) -> Iterator[tuple[Answering, int]]:
    handler = Answering()
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _smtp(settings: Settings, port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "transport": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_timeout": 5.0,
        "outage_grace_seconds": 0,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.02,
        **extra,
    }
    return settings.model_copy(update=values)


def _rows(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [(r.state, r.attempts) for r in conn.execute(select(D.c.state, D.c.attempts))]


def _issue_state(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(I.c.state)).scalar_one())


def _statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        found: dict[str, int] = {}
        for status in conn.execute(select(S.c.status)).scalars():
            found[status] = found.get(status, 0) + 1
        return found


# ---------------------------------------------------------------- item 3: outages


def test_closed_smtp_port_pauses_and_resume_sends_everyone(
    digest_cli: DigestCLI, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_issue_store(engine, settings, tmp_path, 300)
    port = free_port()  # nobody listens: connection refused on every connect
    s = _smtp(settings, port, smtp_connections=4, batch_size=100)
    cli = DigestCLI(
        env={
            **settings_env(s),
            "DIGEST_TRANSPORT": "smtp",
            "DIGEST_OUTAGE_GRACE_SECONDS": "0",
            "DIGEST_SMTP_CONNECTIONS": "4",
        }
    )
    stopped = cli("send", "--week", WEEK, "--yes")
    assert stopped.exit_code == 3, stopped.output
    assert "unreachable" in stopped.output
    assert _issue_state(engine) == "paused"
    assert _rows(engine) == [("queued", 0)] * 300  # nothing failed, no attempt spent
    status = cli.json("status", "--week", WEEK, "--json")
    assert "unreachable" in status["state_reason"]
    with answering_smtp(port) as (handler, _):
        cli.ok("resume", "--week", WEEK)
        got = handler.messages
    assert len(got) == 300 and len({m.rcpt_tos for m in got}) == 300
    assert _issue_state(engine) == "sent"
    assert {state for state, _ in _rows(engine)} == {"sent"}


def test_outage_within_the_grace_is_ridden_out(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """A server that comes back before the grace runs out: no pause, nobody failed."""
    seed_issue_store(engine, settings, tmp_path, 20)
    port = free_port()
    s = _smtp(settings, port, outage_grace_seconds=600, batch_size=10)
    ready = threading.Event()

    class ComesBack(Transport):
        """The real SMTP transport; the server starts after the first refused chunk."""

        def __init__(self) -> None:
            self.inner = SMTPTransport(s)
            self.calls = 0

        def send_batch(
            self, message: IssueMessage, recipients: Sequence[Recipient]
        ) -> list[SendResult]:
            self.calls += 1
            results = self.inner.send_batch(message, recipients)
            if self.calls == 1:
                ready.set()
            return results

        def close(self) -> None:
            self.inner.close()

    transport = ComesBack()
    with answering_smtp(port) as (handler, _):
        pass  # bind and release: the port is known and closed again
    server: list[Any] = []

    def start_server() -> None:
        ready.wait(10)
        controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
        controller.start()
        server.append(controller)

    starter = threading.Thread(target=start_server)
    starter.start()
    try:
        result = weekly_job(s, engine=engine, week=WEEK, transport=transport)
    finally:
        starter.join()
        for controller in server:
            controller.stop()
    assert result.report is not None and result.report.stopped is None
    assert transport.calls >= 2 and len(handler.messages) == 20
    assert {state for state, _ in _rows(engine)} == {"sent"}


def test_unwritable_maildir_pauses_without_failing_anyone(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_issue_store(engine, settings, tmp_path, 12)
    outbox = tmp_path / "box"
    MaildirTransport(outbox).open()
    (outbox / "tmp").rmdir()
    (outbox / "tmp").write_text("not a folder")  # every write now fails, even as root
    s = settings.model_copy(update={"transport": "maildir", "outbox": outbox})
    s = s.model_copy(update={"outage_grace_seconds": 0})
    result = weekly_job(s, engine=engine, week=WEEK, transport=MaildirTransport(outbox))
    assert result.report is not None and "unreachable" in (result.report.stopped or "")
    assert _issue_state(engine) == "paused"
    assert _rows(engine) == [("queued", 0)] * 12
    (outbox / "tmp").unlink()
    (outbox / "tmp").mkdir()
    resume_issue(engine, WEEK)
    weekly_job(s, engine=engine, week=WEEK, transport=MaildirTransport(outbox))
    assert {state for state, _ in _rows(engine)} == {"sent"}


def test_retry_failed_requeues_only_the_unsuppressed(
    digest_cli: DigestCLI, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 6)
    with answering_smtp() as (handler, port):
        s = _smtp(settings, port, max_attempts=1)
        handler.data_refusal = "451 4.3.0 try later"  # transient, but only one attempt
        weekly_job(s, engine=engine, week=WEEK, transport=SMTPTransport(s))
        assert _issue_state(engine) == "sent"
        assert {state for state, _ in _rows(engine)} == {"failed"}
        with engine.begin() as conn:  # one of them unsubscribed since
            conn.execute(S.update().where(S.c.email == emails[0]).values(status="unsubscribed"))
        handler.data_refusal = None
        cli = DigestCLI(env={**settings_env(s), "DIGEST_TRANSPORT": "smtp"})
        assert cli("retry-failed", "--week", WEEK).exit_code == 2  # needs --yes
        out = cli.ok("retry-failed", "--week", WEEK, "--yes").stdout
        assert "5 failed deliveries re-queued" in out
        got = [r for m in handler.messages for r in m.rcpt_tos]
    assert sorted(got) == sorted(emails[1:])
    assert sorted(state for state, _ in _rows(engine)) == ["failed"] + ["sent"] * 5
    assert _issue_state(engine) == "sent"
    with pytest.raises(IssueStateError, match="draft"):
        with engine.begin() as conn:
            conn.execute(I.update().values(state="draft"))
        retry_failed(engine, WEEK)


# ---------------------------------------------------------------- item 4: refusals


@pytest.mark.parametrize("refusal", ["554 5.7.1 content rejected", "552 5.3.4 message too big"])
def test_message_refusals_fail_but_never_suppress(
    refusal: str, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_issue_store(engine, settings, tmp_path, 30)
    with answering_smtp() as (handler, port):
        handler.data_refusal = refusal
        s = _smtp(settings, port, pause_after_failures=10, batch_size=200)
        result = weekly_job(s, engine=engine, week=WEEK, transport=SMTPTransport(s))
    assert result.report is not None and "permanent failures" in (result.report.stopped or "")
    states = sorted(state for state, _ in _rows(engine))
    # The pause holds within the (one) batch: exactly the threshold failed, the rest
    # are back in the queue untouched.
    assert states == ["failed"] * 10 + ["queued"] * 20
    assert _statuses(engine) == {"active": 30}


def test_address_refusals_suppress_no_more_than_the_threshold(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_issue_store(engine, settings, tmp_path, 30)
    with answering_smtp() as (handler, port):
        handler.rcpt_refusal = "550 5.1.1 no such user"
        s = _smtp(settings, port, pause_after_failures=10, batch_size=200)
        weekly_job(s, engine=engine, week=WEEK, transport=SMTPTransport(s))
    assert _statuses(engine) == {"bounced": 10, "active": 20}
    assert _issue_state(engine) == "paused"


# ---------------------------------------------------------------- item 7: two senders


class SecondSenderFinishes(MemoryTransport):
    """Memory delivery; while this sender starts, another one (a second
    `digest send --yes` in another process, made deterministic) sends the whole issue
    and marks it sent, so this one's loop finds the issue finished."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        super().__init__()
        self.settings, self.engine = settings, engine
        self.other: Any = None

    def open(self) -> None:
        if self.other is None:
            self.other = weekly_job(
                self.settings, engine=self.engine, week=WEEK, transport=MemoryTransport()
            )


def test_a_second_sender_joins_and_both_end_cleanly(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_issue_store(engine, settings, tmp_path, 25)
    transport = SecondSenderFinishes(settings, engine)
    first = weekly_job(settings, engine=engine, week=WEEK, transport=transport)
    assert first.report is not None and first.report.stopped is None  # exit 0, not 3
    assert transport.other.report.sent == 25 and transport.other.report.stopped is None
    assert transport.outbox == []  # nobody twice
    assert _issue_state(engine) == "sent"


@pytest.mark.postgres
def test_concurrent_enqueue_on_postgresql_does_not_crash(
    settings: Settings, tmp_path: Path
) -> None:
    with throwaway_postgres() as url:
        engine = make_engine(url)
        migrate(engine)
        s = settings.model_copy(update={"database_url": url})
        seed_issue_store(engine, s, tmp_path, 50)
        with session_scope(engine) as session:
            issue = freeze_issue(session, WEEK, s)
            assert issue is not None and issue.id is not None
            issue_id = issue.id
        outcome: list[object] = []
        first = engine.connect()
        first_tx = first.begin()
        assert enqueue(first, issue_id) == 50  # uncommitted: the second cannot see it

        def second() -> None:
            try:
                with engine.begin() as conn:
                    outcome.append(enqueue(conn, issue_id))
            except Exception as exc:  # the old code: IntegrityError
                outcome.append(exc)

        worker = threading.Thread(target=second)
        worker.start()
        # Wait (by state, not by time) until the second INSERT waits on our rows' lock.
        with engine.connect() as watcher:
            for _ in range(10_000):
                waiting = watcher.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO delivery%'"
                    )
                ).scalar_one()
                if waiting or not worker.is_alive():
                    break
                watcher.rollback()
        first_tx.commit()
        first.close()
        worker.join(30)
        assert outcome == [0], outcome
        with engine.connect() as conn:
            assert counts(conn, issue_id)["queued"] == 50
        engine.dispose()


# ---------------------------------------------------------------- item 13: exit codes


def test_send_exit_codes_follow_the_docs(
    digest_cli: DigestCLI, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_issue_store(engine, settings, tmp_path, 3)
    with answering_smtp() as (handler, port):

        async def refuse_sender(*_args: Any) -> str:
            return "550 5.7.1 sender not allowed"

        handler.handle_MAIL = refuse_sender  # type: ignore[attr-defined]
        cli = DigestCLI(env={**settings_env(_smtp(settings, port)), "DIGEST_TRANSPORT": "smtp"})
        refused = cli("send", "--week", WEEK, "--yes")
        assert refused.exit_code == 3, refused.output
        assert "refused the sender" in refused.output
    assert _issue_state(engine) == IssueState.PAUSED
    again = cli("send", "--week", WEEK, "--yes")  # a paused issue stays paused: exit 3
    assert again.exit_code == 3 and "paused" in again.output
