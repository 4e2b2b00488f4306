"""When the database goes away: what counts as an outage, and how a process rides it out.

A maintenance restart or a failover takes PostgreSQL away for a few seconds; a SQLite
file stays locked past ``DIGEST_DB_BUSY_TIMEOUT`` while another process writes. Neither
is a reason for a process to die with a traceback. Every process that talks to the
database (``digest send``, its worker processes, ``digest worker``, the scheduler,
``digest serve``'s sends) waits for it with backoff for up to
``DIGEST_DB_OUTAGE_GRACE_SECONDS`` (default 60) and carries on where it was; the
engine pings a pooled connection before lending it out and replaces a dead one
(:func:`digest.store.engine.make_engine`), so waiting is all a caller has to do. Past the grace
:class:`~digest.exceptions.DatabaseUnavailable` says so in one line.

The send loop does more than wait (it stops handing out mail while it cannot record
it, and keeps the results in hand): see :mod:`digest.delivery.send_loop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from digest.exceptions import DatabaseUnavailable, StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: First wait after a failed database call; half as long again per failure, up to
#: LONGEST_WAIT: one cheap try a second at most, so a process carries on within a
#: second of the database being back.
FIRST_WAIT = 0.2
LONGEST_WAIT = 1.0
#: SQLite errors that mean "not now" rather than "this is wrong".
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open database", "disk i/o error")


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is away or locked (worth waiting for), not
    that a statement is wrong. A SQLite "no such table" is an OperationalError too, and
    never worth waiting for."""
    if isinstance(exc, PoolTimeout):
        return True  # every pooled connection is stuck in a call that does not return
    if isinstance(exc, StoreError) and exc.__cause__ is not None:
        return is_unreachable(exc.__cause__)  # "cannot migrate": the database is away
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):
        return any(mark in str(exc.orig).lower() for mark in _SQLITE_TRANSIENT)
    return True


def describe(exc: BaseException) -> str:
    """The driver's own message in one line: no SQL, no parameters, never the URL."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())[:300] or type(orig).__name__


def unavailable(seconds: float, exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database has been unreachable for {seconds:.0f}s "
        f"(DIGEST_DB_OUTAGE_GRACE_SECONDS; last: {describe(exc)})"
    )


class OutageTimer:
    """One outage as a caller lives through it: how long to wait before the next try
    (:meth:`failed`, which raises once the grace is over), and its end (:meth:`ok`).
    It logs the start and the end once each, never a traceback."""

    def __init__(
        self, grace: float, what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.grace = grace
        self.what = what
        self.clock = clock
        self.since: float | None = None
        self._wait = FIRST_WAIT

    @property
    def down_for(self) -> float:
        return 0.0 if self.since is None else self.clock() - self.since

    def failed(self, exc: BaseException) -> float:
        """Seconds to wait before trying again; DatabaseUnavailable past the grace."""
        now = self.clock()
        if self.since is None:
            self.since = now
            logger.warning(
                "%s: the database is unreachable (%s); waiting for it for up to %.0fs",
                self.what,
                describe(exc),
                self.grace,
            )
        elapsed = now - self.since
        if elapsed >= self.grace:
            raise unavailable(elapsed, exc) from None
        wait = min(self._wait, self.grace - elapsed)
        self._wait = min(self._wait * 1.5, LONGEST_WAIT)
        logger.debug("%s: database still unreachable; next try in %.2fs", self.what, wait)
        return max(wait, 0.01)

    def ok(self) -> float | None:
        """The database answered: the outage's length, if there was one."""
        if self.since is None:
            return None
        length = self.clock() - self.since
        logger.warning("%s: the database is back after %.1fs; carrying on", self.what, length)
        self.since, self._wait = None, FIRST_WAIT
        return length


def ride_out(
    call: Callable[[], T],
    grace: float,
    what: str,
    *,
    stop: threading.Event | None = None,
    sleep: Callable[[float], object] | None = None,
) -> T:
    """``call()``, tried again with backoff while the database is unreachable, for up
    to ``grace`` seconds (then DatabaseUnavailable). Any other error goes through.
    ``stop`` (a worker's SIGTERM) ends the wait: DatabaseUnavailable at once."""
    timer = OutageTimer(grace, what)
    wait = sleep or (stop.wait if stop is not None else time.sleep)
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            pause = timer.failed(exc)
            if stop is not None and stop.is_set():
                raise unavailable(timer.down_for, exc) from None
            wait(pause)
            continue
        timer.ok()
        return result
