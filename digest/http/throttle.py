"""Request throttling: at most N requests per client per window on the routes a
script could abuse (the public subscribe form, a fresh unsubscribe link, console
logins). Not send pacing, which is :mod:`digest.delivery.pacing`.

Who "a client" is, is decided in one place, :func:`digest.http.client.client_key`
(an IPv4 address or an IPv6 /64); every throttled route calls :meth:`Throttle.check`
or :meth:`SharedThrottle.check` with the request, never a key of its own making.

Two kinds, one interface (``hit(key)`` / ``check(request)``: None when allowed, else
the seconds to wait):

- :class:`SharedThrottle` — what ``digest serve`` uses: the counts live in the
  store's ``throttle_window`` table, so every server process (``--workers N``) and
  every restart sees the same budget. A sliding window estimated from two fixed
  windows (this one, and the last one weighted by how much of it still overlaps).
- :class:`Throttle` — one process's exact sliding window in memory (tests, tools).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from fastapi import Request
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from digest.http.client import IPV6_PREFIX, client_key, rate_key
from digest.store.models import ThrottleWindow

logger = logging.getLogger(__name__)

__all__ = ["IPV6_PREFIX", "SharedThrottle", "Throttle", "rate_key"]

T = ThrottleWindow.__table__  # type: ignore[attr-defined]
#: How often one process clears windows that ended (seconds).
PRUNE_EVERY = 60.0


class Throttle:
    """At most ``limit`` hits per key per ``window`` seconds, in this process."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, request: Request) -> float | None:
        """Count one request of this client (:func:`client_key`)."""
        return self.hit(client_key(request))

    def hit(self, key: str) -> float | None:
        """Count one hit; None if allowed, else the seconds until the next is allowed."""
        now = self.clock()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                self._hits[key] = hits
                return max(1.0, hits[0] + self.window - now)
            hits.append(now)
            self._hits[key] = hits
            # Bounded memory under a flood of distinct addresses: forget the stalest.
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
        return None


class SharedThrottle(Throttle):
    """At most about ``limit`` hits per key per ``window`` seconds, counted in the
    store for every process. ``name`` keeps one route's budget apart from another's.
    (A :class:`Throttle` by interface: the routes do not know which one they hold.)"""

    def __init__(
        self,
        engine: Engine,
        name: str,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(limit, float(window), clock=clock)
        self.engine = engine
        self.name = name
        self._pruned = 0.0

    def hit(self, key: str) -> float | None:
        now = self.clock()
        number = math.floor(now / self.window)
        into = (now - number * self.window) / self.window
        full_key = f"{self.name}:{key}"[:200]
        with self.engine.begin() as conn:
            # Count first, then judge: two processes at once can refuse one too many,
            # never let one too many through.
            values = {
                "key": full_key,
                "window": number,
                "hits": 1,
                "expires": (number + 2) * self.window,
            }
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(T)
                .values(**values)
                .on_conflict_do_update(
                    index_elements=["key", "window"], set_={"hits": T.c.hits + 1}
                )
            )
            rows: dict[int, int] = dict(
                conn.execute(
                    select(T.c.window, T.c.hits).where(
                        T.c.key == full_key, T.c.window.in_((number - 1, number))
                    )
                ).all()
            )
            estimate = rows.get(number, 1) + rows.get(number - 1, 0) * (1.0 - into)
            allowed = estimate <= self.limit
            if not allowed:
                # Refused requests do not use up budget (as in Throttle).
                conn.execute(
                    update(T)
                    .where(T.c.key == full_key, T.c.window == number)
                    .values(hits=T.c.hits - 1)
                )
        if allowed:
            self._maybe_prune(now)
            return None
        return max(1.0, (1.0 - into) * self.window)

    def _maybe_prune(self, now: float) -> None:
        with self._lock:
            if now - self._pruned < PRUNE_EVERY:
                return
            self._pruned = now
        with self.engine.begin() as conn:
            conn.execute(delete(T).where(T.c.expires < now))
