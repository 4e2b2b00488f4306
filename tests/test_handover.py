"""The hand-over gate's rules (digest/handover.py), on an injected clock: what shuts it,
for whom, and for how long."""

from __future__ import annotations

from digest.delivery.handover import FENCE_FRACTION, STALE_SECONDS, Handover, Why
from digest.mail.message import Recipient

LEASE = 60.0
FENCE = LEASE * FENCE_FRACTION


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate() -> tuple[Handover, Clock]:
    clock = Clock()
    handover = Handover(LEASE, clock=clock)
    handover.answered(clock.now)
    return handover, clock


def reader(delivery_id: int) -> Recipient:
    return Recipient(delivery_id, f"r{delivery_id}@example.com", "", delivery_id=delivery_id)


def test_open_until_a_control_stops_it() -> None:
    handover, _ = gate()
    assert handover.allows(reader(1))
    handover.stop("issue is paused")
    shut = handover.shut()
    assert shut is not None and shut.why is Why.STOP and not handover.allows(reader(1))


def test_a_reader_who_left_is_refused_alone() -> None:
    handover, _ = gate()
    handover.left([2])
    assert handover.allows(reader(1)) and not handover.allows(reader(2))
    assert handover.is_open()


def test_database_trouble_shuts_it_until_whoever_saw_it_says_it_is_back() -> None:
    handover, clock = gate()
    handover.db_failed("loop", "connection refused")
    assert handover.shut() is not None and handover.shut().why is Why.DATABASE  # type: ignore[union-attr]
    handover.answered(clock.now)  # the watch's read worked: the loop's failure stands
    assert not handover.is_open()
    handover.db_ok("loop")
    assert handover.is_open()


def test_a_database_that_does_not_answer_shuts_it() -> None:
    handover, clock = gate()
    clock.now += STALE_SECONDS + 0.1  # the watch's read hangs
    shut = handover.shut()
    assert shut is not None and shut.why is Why.DATABASE and "not answered" in shut.reason
    handover.answered(clock.now)
    assert handover.is_open()


def test_a_lease_not_renewed_for_half_its_length_is_fenced() -> None:
    handover, clock = gate()
    handover.claimed("w/1", clock.now)
    handover.lease = "w/1"
    clock.now += FENCE - 1
    handover.answered(clock.now)
    assert handover.is_open()
    clock.now += 2
    handover.answered(clock.now)
    shut = handover.shut()
    assert shut is not None and shut.why is Why.LEASE
    assert "w/1" not in handover.held()  # the heartbeat stops renewing it


def test_renewals_in_time_keep_the_lease() -> None:
    handover, clock = gate()
    handover.claimed("w/1", clock.now)
    handover.lease = "w/1"
    for _ in range(10):
        clock.now += FENCE / 2
        handover.renewed(["w/1"], clock.now)
        handover.answered(clock.now)
        assert handover.is_open()


def test_a_renewal_after_the_fence_vouches_for_nothing() -> None:
    """A batch claimed ahead sat through a partition; when the database is back, the
    heartbeat's renewal reaches only the rows nobody took over, so the batch as held
    in memory is not the worker's any more: it stays lost and goes back."""
    handover, clock = gate()
    handover.claimed("w/ahead", clock.now)
    clock.now += LEASE * 2
    handover.renewed(["w/ahead"], clock.now)
    handover.answered(clock.now)
    handover.lease = "w/ahead"
    shut = handover.shut()
    assert shut is not None and shut.why is Why.LEASE


def test_a_sleep_ends_at_once_when_the_gate_is_shut() -> None:
    handover, _ = gate()
    handover.stop("issue is cancelled")
    assert handover.sleep(30) is False  # returns at once: nothing may go anyway
