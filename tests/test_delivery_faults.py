"""The delivery engine against a real SMTP server that injects faults.

Every test runs the real send loop (weekly_job → deliver → SMTP pool) on SQLite
against :mod:`smtp_faults`; outcomes are asserted as final states and counts at the
server, never as durations.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from smtp_faults import FaultHandler, FaultPlan, fault_smtp, seed_issue_store, smtp_settings
from sqlalchemy import select
from sqlalchemy.engine import Engine
from store_support import WEEK

from digest.core.settings import Settings
from digest.exceptions import TransportConfigError
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job
from digest.store.models import Delivery, DeliveryState
from digest.store.subscriber_models import Subscriber

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]


def states(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(S.c.email, D.c.state).join(S, S.c.id == D.c.subscriber_id))
        return dict(rows.all())


def subscriber_status(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(S.c.email, S.c.status)).all())


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_faults_end_in_exactly_the_specified_states(
    tmp_path: Path, settings: Settings, engine: Engine, pipelining: bool
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 300)
    plan = FaultPlan(
        rate_421=0.05,
        rate_451=0.08,
        rate_454=0.005,
        rate_disconnect=0.05,
        rate_slow=0.05,
        permanent=0.04,
        max_transient=2,
    )
    with fault_smtp(FaultHandler(plan, pipelining=pipelining)) as server:
        s = smtp_settings(settings, server, pause_after_failures=1000)
        result = weekly_job(s, engine=engine, week=WEEK)
    handler = server.handler
    assert result.report is not None and result.report.stopped is None
    bounced = {e for e in emails if plan.is_permanent(e)}
    assert bounced and len(bounced) < len(emails)
    # Every fault kind really happened.
    assert all(handler.faults[k] > 0 for k in ("421", "451", "454", "disconnect", "550"))
    final = states(engine)
    assert {e for e, st in final.items() if st == DeliveryState.FAILED} == bounced
    assert {e for e, st in final.items() if st == DeliveryState.SENT} == set(emails) - bounced
    # Counted at the server: each deliverable address exactly once, bounces never.
    copies = handler.copies()
    assert set(copies) == set(emails) - bounced
    assert set(copies.values()) == {1}
    # Permanent refusals suppress the address.
    status = subscriber_status(engine)
    assert {e for e, st in status.items() if st == "bounced"} == bounced
    assert result.report.sent == len(emails) - len(bounced)
    assert result.report.failed == len(bounced)
    assert result.report.throttled > 0
    info = issue_status(engine, WEEK)
    assert info is not None and info["state"] == "sent" and info["remaining"] == 0


def test_answers_to_the_final_dot_reach_the_right_recipient(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    """A session reads the answer to a message only after building the next one: every
    answer must still land on the recipient it was for, across sessions."""
    emails = seed_issue_store(engine, settings, tmp_path, 90)
    content = set(emails[1::6])  # refused for what it says: failed, the reader stays
    mailbox = set(emails[3::6])  # refused as an address: failed and suppressed
    busy = set(emails[5::6])  # 4xx the first time: sent on the retry

    def answer(rcpt: str, attempt: int) -> str | None:
        if rcpt in content:
            return "554 5.7.1 message content rejected"
        if rcpt in mailbox:
            return "550 5.1.1 no such mailbox"
        if rcpt in busy and attempt == 1:
            return "452 4.3.1 insufficient storage, try later"
        return None

    with fault_smtp(FaultHandler(data_answer=answer)) as server:
        s = smtp_settings(settings, server, smtp_connections=3, pause_after_failures=1000)
        result = weekly_job(s, engine=engine, week=WEEK)
    assert result.report is not None and result.report.stopped is None
    final = states(engine)
    assert {e for e, st in final.items() if st == DeliveryState.FAILED} == content | mailbox
    assert {e for e, st in final.items() if st == DeliveryState.SENT} == (
        set(emails) - content - mailbox
    )
    assert set(server.handler.copies()) == set(emails) - content - mailbox
    assert set(server.handler.copies().values()) == {1}
    status = subscriber_status(engine)
    assert {e for e, st in status.items() if st == "bounced"} == mailbox
    assert result.report.retried == len(busy)


def test_pool_shares_work_and_caps_messages_per_connection(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 120)
    with fault_smtp(FaultHandler()) as server:
        s = smtp_settings(settings, server, smtp_connections=3, smtp_max_per_connection=10)
        result = weekly_job(s, engine=engine, week=WEEK)
    assert result.report is not None and result.report.sent == len(emails)
    assert set(server.handler.copies().values()) == {1}
    # 120 messages at most 10 per connection: at least 12 sessions were opened.
    assert server.handler.connections >= 12


def test_timeout_is_retried_and_a_duplicate_keeps_its_message_id(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 30)
    plan = FaultPlan(rate_slow=0.2, slow_seconds=1.5, max_transient=1)
    with fault_smtp(FaultHandler(plan)) as server:
        s = smtp_settings(settings, server, smtp_timeout=0.5, smtp_connections=2)
        result = weekly_job(s, engine=engine, week=WEEK)
    assert result.report is not None and result.report.sent == len(emails)
    copies = server.handler.copies()
    assert set(copies) == set(emails)
    assert result.report.retried > 0
    for email in emails:
        # A timed-out answer may still have been a delivery: same Message-ID on both.
        assert len(server.handler.message_ids(email)) == 1


def test_rejected_login_stops_the_send_with_a_clear_message(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    seed_issue_store(engine, settings, tmp_path, 20)
    with fault_smtp(FaultHandler(), auth_fails=True) as server:
        s = smtp_settings(
            settings, server, smtp_username="digest", smtp_password=SecretStr("wrong")
        )
        with pytest.raises(TransportConfigError, match="rejected the login"):
            weekly_job(s, engine=engine, week=WEEK)
    info = issue_status(engine, WEEK)
    assert info is not None and info["state"] == "paused"
    assert "rejected the login" in info["state_reason"]
    assert info["counts"]["queued"] == 20 and info["counts"]["sent"] == 0


def test_rejected_sender_stops_the_send(tmp_path: Path, settings: Settings, engine: Engine) -> None:
    seed_issue_store(engine, settings, tmp_path, 20)
    handler = FaultHandler(reject_sender="553 5.7.1 sender address rejected")
    with fault_smtp(handler) as server:
        s = smtp_settings(settings, server)
        with pytest.raises(TransportConfigError, match="refused the sender"):
            weekly_job(s, engine=engine, week=WEEK)
    info = issue_status(engine, WEEK)
    assert info is not None and info["state"] == "paused"
    # Nothing was marked failed or suppressed for a problem of ours.
    assert info["counts"]["failed"] == 0 and info["counts"]["sent"] == 0
    assert set(subscriber_status(engine).values()) == {"active"}


def test_consecutive_permanent_failures_pause_the_send(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    seed_issue_store(engine, settings, tmp_path, 200)
    with fault_smtp(FaultHandler(FaultPlan(permanent=1.0))) as server:
        s = smtp_settings(settings, server, pause_after_failures=25, batch_size=10)
        result = weekly_job(s, engine=engine, week=WEEK)
    assert result.report is not None and result.report.stopped is not None
    assert "permanent failures in a row" in result.report.stopped
    info = issue_status(engine, WEEK)
    assert info is not None and info["state"] == "paused"
    assert "550" in info["state_reason"]
    # It stopped within a batch of the threshold instead of burning the whole list.
    assert 25 <= info["counts"]["failed"] < 25 + 10
    assert info["counts"]["queued"] > 100


def test_throttling_slows_the_send_instead_of_failing_it(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 150)
    handler = FaultHandler(FaultPlan(throttle_above=40))
    with fault_smtp(handler) as server:
        s = smtp_settings(settings, server, max_attempts=10, batch_size=50)
        result = weekly_job(s, engine=engine, week=WEEK)
    report = result.report
    assert report is not None and report.stopped is None
    assert report.throttled > 0 and report.failed == 0
    assert set(handler.copies()) == set(emails)
    assert set(states(engine).values()) == {DeliveryState.SENT}


def test_rate_limit_is_honoured_across_connections(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    seed_issue_store(engine, settings, tmp_path, 80)
    handler = FaultHandler()
    limit = 40.0
    with fault_smtp(handler) as server:
        s = smtp_settings(settings, server, rate_limit=limit, smtp_connections=4)
        result = weekly_job(s, engine=engine, week=WEEK)
    assert result.report is not None and result.report.sent == 80
    stamps = sorted(handler.delivered_at)
    measured = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    # A ratio, not a duration: the pace stays at the limit (one second's burst allowed).
    assert measured / limit <= 1.25
    assert measured / limit >= 0.5
