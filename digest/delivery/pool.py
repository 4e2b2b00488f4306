"""``digest send --workers N``: N local sender processes for one issue, one progress.

One Python process with a connection pool is bound by one core; N processes (each
with its own ``DIGEST_SMTP_CONNECTIONS`` sessions) share the issue's queue through the
delivery leases. The parent only watches: it reads the issue's counts from the
database twice a second for the progress bar, forwards SIGTERM/SIGINT to the children
(each finishes its batch), and collects their reports.

The workers come from a fork server that has already imported the package
(digest/delivery/launch.py).
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest.core.settings import Settings
from digest.delivery.launch import worker_context
from digest.delivery.queue import SendReport, counts, issue_state
from digest.delivery.worker import Worker
from digest.exceptions import ConfigError, DigestError
from digest.store.engine import make_engine
from digest.store.outage import describe, is_unreachable, ride_out

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """A process's own peak resident memory in MB (VmHWM), or None without /proc or
    once the process has exited.

    VmHWM, not ``ru_maxrss``: Linux carries a parent's resident size at fork into the
    child's ``ru_maxrss`` across exec, so a worker spawned by a parent that had just
    enqueued a million rows would report the parent's peak, not its own."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def own_peak_rss_mb() -> float:
    peak = peak_rss_mb()
    # ru_maxrss is in KiB on Linux (elsewhere, without /proc, the best there is).
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(settings: Settings, number: int, results: Any, index: int) -> None:
    """One worker process: it connects afresh (forked from the fork server, which
    holds no connection, or spawned). The parent has brought the schema up to date
    before starting it, so it opens the store without migrating (and without loading
    Alembic and the migration scripts)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    error = None
    report = None
    try:
        engine = make_engine(settings.database_url, settings.db_busy_timeout)
        report = Worker(settings, engine, number=number, stop=stop).run(until_done=True)
    except DigestError as exc:
        error = str(exc)
    except SQLAlchemyError as exc:  # not an outage (those are ridden out): one line
        error = f"database error: {describe(exc)}"
    rss_mb = own_peak_rss_mb()
    counted = (report.sent, report.failed, report.skipped, report.retried) if report else (0,) * 4
    results.put((index, *counted, rss_mb, error))


@dataclass
class PoolReport(SendReport):
    workers: int = 1
    #: each worker's peak resident memory, MB
    peak_rss_mb: list[float] = field(default_factory=list)

    def summary(self) -> str:
        line = super().summary() + f" by {self.workers} worker processes"
        if self.peak_rss_mb:
            line += f" (peak RSS {', '.join(f'{m:.0f}' for m in sorted(self.peak_rss_mb))} MB)"
        return line


def check_store(settings: Settings, engine: Engine) -> None:
    """Several processes on SQLite work on one machine (WAL lets them share the file);
    an in-memory database cannot be shared at all."""
    if engine.dialect.name == "sqlite" and (
        engine.url.database in (None, "", ":memory:") or "mode=memory" in str(engine.url)
    ):
        raise ConfigError("--workers needs a database file or PostgreSQL, not an in-memory SQLite")


def run_local_workers(
    settings: Settings,
    engine: Engine,
    issue_id: int,
    number: int,
    label: str,
    workers: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> PoolReport:
    """Send issue ``number`` with ``workers`` processes; returns their combined report."""
    check_store(settings, engine)
    ctx = worker_context()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(settings, number, results, i), name=f"digest-worker-{i}")
        for i in range(workers)
    ]
    started = time.monotonic()
    with engine.connect() as conn:
        done_before = _finished(counts(conn, issue_id))
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    seen = done_before
    try:
        while alive := [p.sentinel for p in procs if p.is_alive()]:
            # Woken at once when a worker exits: the last one's exit ends the send.
            multiprocessing.connection.wait(alive, POLL_SECONDS)
            try:
                with engine.connect() as conn:
                    now = _finished(counts(conn, issue_id))
            except SQLAlchemyError as exc:
                # The workers ride a database outage out themselves; the bar waits.
                if not is_unreachable(exc):
                    raise
                continue
            if progress and now > seen:
                progress(now - seen)
            seen = max(seen, now)
        for proc in procs:
            proc.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report = PoolReport(week=label, workers=workers)
    errors = []
    while not results.empty():
        _index, sent, failed, skipped, retried, rss_mb, error = results.get()
        report.peak_rss_mb.append(rss_mb)
        report.sent += sent
        report.failed += failed
        report.skipped += skipped
        report.retried += retried
        if error:
            errors.append(error)
    report.elapsed = time.monotonic() - started
    crashed = [p.name for p in procs if p.exitcode not in (0, None)]
    if errors or crashed:
        # One line per distinct reason: both workers give up on the same outage.
        reasons = list(dict.fromkeys(errors)) + [f"{n} exited abnormally" for n in crashed]
        report.stopped = "; ".join(reasons)
        report.errors.extend(errors)
        return report

    def final() -> tuple[int, str]:

        with engine.connect() as conn:
            return _finished(counts(conn, issue_id)), issue_state(engine, issue_id)

    done, state = ride_out(final, settings.db_outage_grace_seconds, f"issue {label}")
    if progress and done > seen:
        progress(done - seen)
    if state != "sent":
        report.stopped = f"issue is {state}"
    return report


def _finished(by_state: dict[str, int]) -> int:
    return sum(n for state, n in by_state.items() if state in ("sent", "failed", "skipped"))
