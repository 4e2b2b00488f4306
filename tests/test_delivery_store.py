"""Claims, leases and records on the real store — SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from smtp_faults import FaultHandler, FaultPlan, fault_smtp, seed_issue_store, smtp_settings
from sqlalchemy import event, select, update
from store_support import WEEK
from subscriber_support import Store

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.delivery.controls import cancel_issue
from digest.delivery.leases import ClaimAhead
from digest.delivery.outcomes import record_results, release
from digest.delivery.queue import Claim, claim_leased, enqueue, renew_lease, set_issue_state
from digest.delivery.send_loop import POLL_SECONDS, deliver
from digest.issue.freeze import freeze_issue, issue_message
from digest.mail.message import IssueMessage
from digest.store.engine import session_scope
from digest.store.models import Delivery, DeliveryState, IssueState
from digest.store.subscriber_models import Subscriber
from digest.transports.base import SendResult, SendStatus
from digest.transports.memory import MemoryTransport
from digest.transports.smtp import SMTPTransport

pytestmark = pytest.mark.clock  # leases

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]


def _issue(store: Store, tmp_path: Path, n: int) -> tuple[int, list[str]]:
    emails = seed_issue_store(store.engine, store.settings, tmp_path, n)
    with session_scope(store.engine) as session:
        issue = freeze_issue(session, WEEK, store.settings)
        assert issue is not None and issue.id is not None
        issue.state = IssueState.SENDING
        session.add(issue)
        issue_id = issue.id
    with store.engine.begin() as conn:
        assert enqueue(conn, issue_id) == n
        assert enqueue(conn, issue_id) == 0  # idempotent
    return issue_id, emails


def test_leases_renewal_and_takeover(store: Store, tmp_path: Path) -> None:
    issue_id, _ = _issue(store, tmp_path, 30)
    engine = store.engine
    a = claim_leased(engine, issue_id, "worker-a", 10, 60)
    b = claim_leased(engine, issue_id, "worker-b", 10, 60)
    assert len(a.recipients) == len(b.recipients) == 10
    assert not {r.delivery_id for r in a.recipients} & {r.delivery_id for r in b.recipients}
    assert renew_lease(engine, a.lease, 60) == 10
    # Worker A dies: its lease runs out and its rows go to the next claimant.
    with engine.begin() as conn:
        conn.execute(
            update(D)
            .where(D.c.lease_owner == a.lease)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    c = claim_leased(engine, issue_id, "worker-c", 30, 60)
    ids = {r.delivery_id for r in c.recipients}
    assert {r.delivery_id for r in a.recipients} <= ids
    assert not ids & {r.delivery_id for r in b.recipients}
    with engine.connect() as conn:
        attempts = conn.execute(
            select(D.c.attempts).where(D.c.id == a.recipients[0].delivery_id)
        ).scalar_one()
    assert attempts == 2


def test_unsubscribed_before_claim_is_skipped_and_retries_give_up(
    store: Store, tmp_path: Path
) -> None:
    issue_id, emails = _issue(store, tmp_path, 5)
    engine = store.engine
    with engine.begin() as conn:
        conn.execute(update(S).where(S.c.email == emails[0]).values(status="unsubscribed"))
    settings = store.settings.model_copy(update={"max_attempts": 2, "retry_base_seconds": 0.01})
    claim = claim_leased(engine, issue_id, "w", 10, 60)
    assert claim.skipped == 1 and len(claim.recipients) == 4
    retry = [SendResult.retry(r, "451 later") for r in claim.recipients]
    assert record_results(engine, retry, settings) == (0, 4, 0)
    with engine.begin() as conn:
        conn.execute(update(D).values(next_attempt_at=None))
    again = claim_leased(engine, issue_id, "w", 10, 60)
    assert len(again.recipients) == 4
    retry = [SendResult.retry(r, "451 later") for r in again.recipients]
    assert record_results(engine, retry, settings) == (0, 0, 4)
    with engine.connect() as conn:
        rows = conn.execute(select(D.c.state, D.c.last_error)).all()
    assert sorted(r.state for r in rows) == ["failed"] * 4 + ["skipped"]
    assert all("gave up after 2 attempts" in r.last_error for r in rows if r.state == "failed")
    # Giving up on a transient answer is not a bounce: nobody is suppressed for it.
    with engine.connect() as conn:
        assert conn.execute(select(S.c.status).where(S.c.email == emails[1])).scalar_one() == (
            "active"
        )


class RendezvousSMTP(SMTPTransport):
    """The SMTP pool, whose first batch waits at a barrier shared with other workers."""

    def __init__(self, settings: Settings, barrier: threading.Barrier) -> None:
        super().__init__(settings)
        self.barrier = barrier
        self.met = False

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        if not self.met:
            self.met = True
            self.barrier.wait()
        return super().send_batch(message, recipients)


def test_two_workers_at_once_send_each_address_once(store: Store, tmp_path: Path) -> None:
    issue_id, emails = _issue(store, tmp_path, 240)
    with fault_smtp(FaultHandler(FaultPlan(rate_451=0.05, permanent=0.02))) as server:
        s = smtp_settings(store.settings, server, batch_size=15, smtp_connections=2)
        with session_scope(store.engine) as session:
            from digest.store.models import Issue

            issue = session.get(Issue, issue_id)
            assert issue is not None
            message = issue_message(issue, s)
        reports = []
        # Each worker's first batch waits for the other's: both must hold a batch at
        # once, so sharing is shown without depending on thread timing.
        meet = threading.Barrier(2, timeout=30)

        def work() -> None:
            transport = RendezvousSMTP(s, meet)
            reports.append(deliver(store.engine, issue_id, message, transport, s))

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    plan = server.handler.plan
    bounced = {e for e in emails if plan.is_permanent(e)}
    copies = server.handler.copies()
    assert set(copies) == set(emails) - bounced and set(copies.values()) == {1}
    assert sum(r.sent for r in reports) == len(emails) - len(bounced)
    assert len(reports) == 2 and all(r.batches > 0 for r in reports), [r.summary() for r in reports]
    with store.engine.connect() as conn:
        states = dict(
            conn.execute(select(S.c.email, D.c.state).join(S, S.c.id == D.c.subscriber_id)).all()
        )
    assert {e for e, st in states.items() if st == DeliveryState.FAILED} == bounced


def test_a_sent_result_with_a_note_keeps_it(store: Store, tmp_path: Path) -> None:
    """A provider timeout is recorded as sent (never re-sent) with the note visible."""
    issue_id, _ = _issue(store, tmp_path, 3)
    claim = claim_leased(store.engine, issue_id, "w", 10, 60)
    note = "outcome unknown: postmark: no answer (ReadTimeout); not re-sent to avoid a duplicate"
    results = [SendResult.sent(claim.recipients[0], provider_id="abc")] + [
        SendResult(r, SendStatus.SENT, error=note) for r in claim.recipients[1:]
    ]
    assert record_results(store.engine, results, store.settings) == (3, 0, 0)
    with store.engine.connect() as conn:
        rows = conn.execute(select(D.c.state, D.c.provider_id, D.c.last_error)).all()
    assert sorted(r.state for r in rows) == ["sent"] * 3
    assert sorted((r.last_error or "") for r in rows) == ["", note, note]


def _wait_for_lease(store: Store, lease: str, rows: int) -> None:
    """The claim ahead runs in a thread: wait until its rows are leased."""
    for _ in range(200):
        if renew_lease(store.engine, [lease], 60) == rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"lease {lease} never held {rows} rows")


def test_a_batch_claimed_ahead_is_renewed_checked_again_and_given_back(
    store: Store, tmp_path: Path
) -> None:
    issue_id, _ = _issue(store, tmp_path, 30)
    engine = store.engine
    with ClaimAhead(engine, issue_id, "worker-a", 10, 60, utcnow) as ahead:
        first = ahead.take()
        assert len(first.recipients) == 10 and ahead.lease is None
        ahead.ahead(first)  # claims the next 10 while the first would be sent
        lease = ahead.lease
        assert lease is not None
        _wait_for_lease(store, lease, 10)
        with engine.begin() as conn:
            leaving = conn.execute(
                select(D.c.subscriber_id).where(D.c.lease_owner == lease).limit(1)
            ).scalar_one()
            # A reader of the batch claimed ahead leaves before it goes out.
            conn.execute(update(S).where(S.c.id == leaving).values(status="unsubscribed"))
        second = ahead.take()
        assert second.lease == lease and second.skipped == 1
        assert len(second.recipients) == 9
        assert leaving not in {r.subscriber_id for r in second.recipients}
        ahead.ahead(second)
        third = ahead.lease
        assert third is not None
        _wait_for_lease(store, third, 10)
    # Leaving (a stop, a pause) gives the batch claimed ahead back untouched.
    with engine.connect() as conn:
        rows = conn.execute(
            select(D.c.state, D.c.attempts, D.c.lease_owner, D.c.subscriber_id).where(
                D.c.issue_id == issue_id
            )
        ).all()
    by_state: dict[str, int] = {}
    for row in rows:
        by_state[row.state] = by_state.get(row.state, 0) + 1
        if row.subscriber_id == leaving:
            assert row.state == DeliveryState.SKIPPED.value
    assert by_state == {"sending": 19, "skipped": 1, "queued": 10}
    assert all(r.attempts == 0 and r.lease_owner is None for r in rows if r.state == "queued")
    assert ahead.skipped_on_close == 0


def test_rows_given_back_after_a_cancel_are_skipped(store: Store, tmp_path: Path) -> None:
    issue_id, _ = _issue(store, tmp_path, 20)
    engine = store.engine
    claim = claim_leased(engine, issue_id, "worker-a", 10, 60)
    cancel_issue(engine, WEEK)  # skips the queued rows, leaves the live lease alone
    release(engine, claim.recipients)
    with engine.connect() as conn:
        states = conn.execute(select(D.c.state).where(D.c.issue_id == issue_id)).scalars().all()
    assert states == ["skipped"] * 20


def test_a_claim_that_loses_its_rows_to_another_worker_picks_again(
    store: Store, tmp_path: Path
) -> None:
    """Two workers starting together pick the same rows (on SQLite a pick runs before
    the write lock is taken). The one whose update then finds them gone picks again
    rather than coming back empty-handed, which would look like a drained queue and
    send it to sleep while 20 rows wait."""
    issue_id, _ = _issue(store, tmp_path, 30)
    engine = store.engine
    others: list[Claim] = []

    def the_other_worker_first(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE DELIVERY") and not others:
            others.append(Claim([], 0, ""))  # once: the other worker's own update runs here
            others[0] = claim_leased(engine, issue_id, "worker-b", 10, 60)

    event.listen(engine, "before_cursor_execute", the_other_worker_first)
    try:
        mine = claim_leased(engine, issue_id, "worker-a", 10, 60)
    finally:
        event.remove(engine, "before_cursor_execute", the_other_worker_first)
    theirs = {r.delivery_id for r in others[0].recipients}
    ours = {r.delivery_id for r in mine.recipients}
    assert len(theirs) == 10 and len(ours) == 10 and not ours & theirs
    with engine.connect() as conn:
        attempts = conn.execute(
            select(D.c.attempts).where(D.c.issue_id == issue_id, D.c.attempts > 0)
        ).scalars()
        assert sorted(attempts) == [1] * 20  # nobody's attempt counted twice


def test_a_worker_waiting_for_another_workers_batch_ends_when_the_issue_is_sent(
    store: Store, tmp_path: Path
) -> None:
    """All rows are leased by another worker: this one waits for them (the lease might
    run out), and stops as soon as the other records them and marks the issue sent,
    not at its next claim a second later."""
    issue_id, _ = _issue(store, tmp_path, 4)
    engine = store.engine
    theirs = claim_leased(engine, issue_id, "worker-b", 10, 60)
    with session_scope(engine) as session:
        from digest.store.models import Issue

        issue = session.get(Issue, issue_id)
        assert issue is not None
        message = issue_message(issue, store.settings)

    marked_sent: list[float] = []

    def the_other_worker_finishes() -> None:
        time.sleep(0.2)
        record_results(engine, [SendResult.sent(r) for r in theirs.recipients], store.settings)
        set_issue_state(engine, issue_id, IssueState.SENT)
        marked_sent.append(time.monotonic())

    other = threading.Thread(target=the_other_worker_finishes)
    other.start()
    report = deliver(engine, issue_id, message, MemoryTransport(), store.settings)
    ended = time.monotonic()
    other.join()
    assert report.sent == 0 and report.stopped is None, report.summary()
    # Its next claim would have come POLL_SECONDS after the last; the state is read far
    # sooner. Counted from the moment the issue was marked sent, so a slow start of the
    # loop on a loaded machine does not count against it.
    assert ended - marked_sent[0] < POLL_SECONDS, ended - marked_sent[0]
