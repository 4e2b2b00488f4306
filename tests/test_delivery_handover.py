"""Pause, cancel and an unsubscribe are read between messages, not between batches
(issue 24, item 1): with a throttled rate and a batch far larger than the list, they
take effect after at most the messages already in the transport's hands; the rows not
handed over go back untouched (no attempt spent) and resume continues exactly there.

The bound asserted is "the SMTP connections' messages in hand, plus the one the rate
let through in the tenth of a second before the control watch read the pause": a count
the loop must never exceed, not a timing. The latencies are printed as figures.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from outage_support import figure
from smtp_faults import FaultHandler, fault_smtp, seed_issue_store, smtp_settings
from sqlalchemy import select
from sqlalchemy.engine import Engine
from store_support import WEEK

from digest.core.settings import Settings
from digest.delivery.controls import cancel_issue, pause_issue, resume_issue
from digest.jobs.weekly import JobResult, weekly_job
from digest.store.models import Delivery
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from subscribers.lifecycle import suppress

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
READERS = 30


def _rows(engine: Engine) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(S.c.email, D.c.state, D.c.attempts).join(S, S.c.id == D.c.subscriber_id)
        )
        return {r.email: (r.state, r.attempts) for r in rows}


class Sending:
    """``weekly_job`` in a thread, as the console runs it."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.result: list[JobResult] = []
        self.ended = 0.0
        self._thread = threading.Thread(target=self._run, args=(settings, engine))
        self._thread.start()

    def _run(self, settings: Settings, engine: Engine) -> None:
        self.result.append(weekly_job(settings, engine=engine, week=WEEK))
        self.ended = time.monotonic()

    def join(self) -> JobResult:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the send did not stop"
        return self.result[0]


def _wait_for(handler: FaultHandler, count: int) -> None:
    deadline = time.monotonic() + 60
    while handler.total < count:
        assert time.monotonic() < deadline, "the send never got going"
        time.sleep(0.01)


def _throttled(settings: Settings, server: Any, connections: int) -> Settings:
    # A batch far larger than the list: the whole list is one claimed batch.
    return smtp_settings(
        settings, server, rate_limit=1.0, batch_size=10_000, smtp_connections=connections
    )


@pytest.mark.parametrize("connections", [1, 4])
def test_pause_takes_effect_mid_batch_and_resume_continues_there(
    tmp_path: Path, settings: Settings, engine: Engine, connections: int
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, READERS)
    handler = FaultHandler()
    with fault_smtp(handler) as server:
        s = _throttled(settings, server, connections)
        sending = Sending(s, engine)
        _wait_for(handler, 3)
        pause_issue(engine, WEEK)
        paused_at, at_pause = time.monotonic(), handler.total
        first = sending.join()
        after_pause = handler.total - at_pause
        assert first.report is not None and first.report.stopped == "issue is paused"
        assert after_pause <= connections + 1
        rows = _rows(engine)
        sent = {e for e, (state, _) in rows.items() if state == "sent"}
        assert sent == set(handler.copies())  # what the server took is what is recorded
        # Everything not handed over went back untouched: queued, no attempt spent.
        assert {rows[e] for e in set(emails) - sent} == {("queued", 0)}
        resume_issue(engine, WEEK)
        second = weekly_job(s.model_copy(update={"rate_limit": None}), engine=engine, week=WEEK)
    assert second.report is not None and second.report.stopped is None
    assert set(handler.copies()) == set(emails) and set(handler.copies().values()) == {1}
    figure(
        f"pause at rate 1/s, batch 10000, {connections} connection(s)",
        sent_after_pause_returned=after_pause,
        loop_stopped_after_seconds=sending.ended - paused_at,
    )


@pytest.mark.parametrize("connections", [1, 4])
def test_cancel_takes_effect_mid_batch(
    tmp_path: Path, settings: Settings, engine: Engine, connections: int
) -> None:
    seed_issue_store(engine, settings, tmp_path, READERS)
    handler = FaultHandler()
    with fault_smtp(handler) as server:
        sending = Sending(_throttled(settings, server, connections), engine)
        _wait_for(handler, 3)
        cancel_issue(engine, WEEK)
        at_cancel = handler.total
        result = sending.join()
    assert result.report is not None and result.report.stopped == "issue is cancelled"
    assert handler.total - at_cancel <= connections + 1
    states = [state for state, _ in _rows(engine).values()]
    assert states.count("sent") == handler.total
    assert states.count("skipped") == READERS - handler.total  # nobody left in flight


def test_an_unsubscribe_mid_batch_is_never_sent(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 12)
    leaving = emails[-1]
    handler = FaultHandler()
    with fault_smtp(handler) as server:
        s = smtp_settings(settings, server, rate_limit=4.0, batch_size=10_000)
        sending = Sending(s, engine)
        _wait_for(handler, 2)  # the whole list is claimed and going out
        with engine.begin() as conn:
            sid = conn.execute(select(S.c.id).where(S.c.email == leaving)).scalar_one()
            suppress(conn, [sid], SubscriberStatus.UNSUBSCRIBED, source="test")
        result = sending.join()
    assert result.report is not None and result.report.stopped is None
    assert leaving not in handler.copies()
    assert set(handler.copies()) == set(emails) - {leaving}
    assert _rows(engine)[leaving][0] == "skipped"
