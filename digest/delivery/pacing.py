"""Send pacing: a rate (messages per second) shared by every connection of one sender,
that backs off when the provider throttles.

``DIGEST_RATE_LIMIT`` (messages per second) is a ceiling, e.g. 14 for Amazon SES's
default quota. Throttling answers (``454 Throttling failure``, ``421 … try later``,
HTTP 429) halve the current rate — also when no limit is set, starting from the rate
actually reached — and a run of accepted messages raises it again by a tenth, never
above the ceiling. Repeated throttling therefore slows a send down instead of failing
it; the throttled recipients themselves go back to the queue with a backoff.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Below this the send would crawl; providers that throttle this hard need a human.
MIN_RATE = 0.5
RECOVER_EVERY = 200
#: 454 (SES "Throttling failure") and HTTP 429 always mean "too fast"; other transient
#: answers (a 421 included) only when they say so.
_THROTTLE = re.compile(r"^(?:429|454)\b|throttl|too many|rate limit|slow down", re.I)
#: Several throttled answers to messages already in flight are one signal, not many.
COOLDOWN_SECONDS = 1.0


def is_throttle(error: str | None) -> bool:
    """Whether a transient error text says "you are sending too fast"."""
    return bool(error) and _THROTTLE.search(error or "") is not None


class AdaptivePacer:
    """A token bucket (burst of at most one second's worth) that adapts to throttling.

    Thread-safe: every connection of the SMTP pool calls :meth:`acquire` before each
    message (it is the :class:`~digest.transports.base.Pacer` the send loop hands a
    transport that paces each message). ``clock`` and ``sleep`` are injectable for
    tests.
    """

    def __init__(
        self,
        limit: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.rate: float | None = limit
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = 1.0
        self._last = clock()
        self._started = self._last
        self._acquired = 0
        self._since_throttle = 0
        self._last_throttle = float("-inf")
        self.throttled = 0

    def acquire(self, n: int = 1, sleep: Callable[[float], object] | None = None) -> bool:
        """Block until ``n`` messages may go. ``sleep`` replaces the limiter's own (the
        send loop's hand-over gate ends a wait early on a pause): False when it did, and
        the messages must not go now (their tokens are spent all the same)."""
        with self._lock:
            self._acquired += n
            rate = self.rate
            if rate is None:
                return True
            now = self._clock()
            self._tokens = min(max(rate, 1.0), self._tokens + (now - self._last) * rate)
            self._last = now
            # Reserve now, wait outside the lock: callers queue up in order.
            self._tokens -= n
            wait = -self._tokens / rate if self._tokens < 0 else 0.0
        if wait > 0:
            return (sleep or self._sleep)(wait) is not False
        return True

    def observed(self) -> float:
        elapsed = self._clock() - self._started
        return self._acquired / elapsed if elapsed > 0 else 0.0

    def throttle(self) -> None:
        """The provider said "too fast": halve the rate."""
        with self._lock:
            self.throttled += 1
            now = self._clock()
            if now - self._last_throttle < COOLDOWN_SECONDS:
                return
            self._last_throttle = now
            current = self.rate if self.rate is not None else max(self.observed(), 2 * MIN_RATE)
            self.rate = max(MIN_RATE, current / 2)
            self._since_throttle = 0
        logger.warning("provider is throttling; sending at %.1f messages/s", self.rate)

    def success(self, n: int = 1) -> None:
        """Messages were accepted: after a quiet stretch, speed up by a tenth."""
        with self._lock:
            if self.rate is None or self.rate == self.limit:
                return
            self._since_throttle += n
            if self._since_throttle < RECOVER_EVERY:
                return
            self._since_throttle = 0
            faster = self.rate * 1.1
            if self.limit is not None:
                self.rate = min(self.limit, faster)
            elif self.throttled and faster > 1000:
                self.rate = None  # far beyond where it was throttled: no limit again
            else:
                self.rate = faster
