"""Console login lock-out per (account, client) pair, with back-off.

A lock on the account itself let anyone lock a user out: five wrong passwords for
``editor@…`` from anywhere, renewed every 15 minutes, and nobody could log in to pause
a send (issue 22). So failures are counted per *pair* — the address typed and the
client (its IPv4 address or IPv6 /64) — and only that pair waits:

- after ``FREE_ATTEMPTS`` wrong passwords in a row the pair waits ``BASE_SECONDS``,
  and every further failure doubles the wait, up to ``MAX_SECONDS``;
- the real user, from their own client, is never locked by someone else's failures;
- a correct password ends its own pair's count (once the wait is over: a locked pair
  is refused whatever it sends); a new password set from a one-time link
  (``digest users reset``) lifts every lock on the account;
- unknown addresses are counted exactly like existing ones, so the answers never tell
  which accounts exist.

:class:`SharedLoginLockout` — what ``digest serve`` uses — keeps the pairs in the
store's ``throttle_window`` table beside the shared request throttles, so every server
process (``--workers N``) and every restart sees the same locks; :class:`LoginLockout`
keeps them in one process's memory (tests, tools), bounded (the stalest pairs go
first). The per-client-IP limit in front (digest/http/throttle.py) caps how many pairs
one client can try.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from digest.store.models import ThrottleWindow

logger = logging.getLogger(__name__)

FREE_ATTEMPTS = 5
BASE_SECONDS = 60.0
MAX_SECONDS = 15 * 60.0
#: A pair that has not failed for this long starts afresh.
FORGET_SECONDS = 24 * 3600.0


def backoff(failures: int) -> float:
    """How long a pair waits after ``failures`` wrong passwords in a row (0: not yet)."""
    if failures < FREE_ATTEMPTS:
        return 0.0
    return min(MAX_SECONDS, BASE_SECONDS * 2 ** min(failures - FREE_ATTEMPTS, 16))


def _warn(account: str, client: str, failures: int) -> None:
    if failures >= FREE_ATTEMPTS:
        logger.warning(
            "console login for %r from %s waits %.0f s after %d failures",
            account[:80],
            client,
            backoff(failures),
            failures,
        )


@dataclass
class _Pair:
    failures: int = 0
    until: float = 0.0
    last: float = 0.0


class LoginLockout:
    """Failed logins per (account, client); see the module doc."""

    def __init__(
        self, *, max_pairs: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_pairs = max_pairs
        self.clock = clock
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, account: str, client: str) -> float | None:
        """Seconds this pair must still wait, or None when it may try."""
        now = self.clock()
        with self._lock:
            pair = self._pairs.get((account, client))
            if pair is None or pair.until <= now:
                return None
            return max(1.0, pair.until - now)

    def failed(self, account: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            pair = self._pairs.pop((account, client), None)
            if pair is None or now - pair.last > FORGET_SECONDS:
                pair = _Pair()
            pair.failures += 1
            pair.last = now
            pair.until = now + backoff(pair.failures)
            self._pairs[(account, client)] = pair
            while len(self._pairs) > self.max_pairs:
                self._pairs.popitem(last=False)
        _warn(account, client, pair.failures)

    def succeeded(self, account: str, client: str) -> None:
        with self._lock:
            self._pairs.pop((account, client), None)

    def clear(self, account: str) -> None:
        """Lift every lock on ``account`` (its password was set anew from a link)."""
        with self._lock:
            for key in [k for k in self._pairs if k[0] == account]:
                del self._pairs[key]


T = ThrottleWindow.__table__  # type: ignore[attr-defined]
#: The ``window`` a lock-out row is kept under (request throttles use window numbers).
_LOCK_ROW = -1


class SharedLoginLockout(LoginLockout):
    """:class:`LoginLockout` kept in the store for every process. One row per pair:
    ``hits`` the failures in a row, ``expires`` the last failure plus
    ``FORGET_SECONDS`` (so the request throttles' pruning drops it then)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.engine = engine

    @staticmethod
    def _prefix(account: str) -> str:
        # Hashed: an address may be longer than the key column, and holds % and _.
        return f"login-lock:{hashlib.sha256(account.encode()).hexdigest()[:32]}:"

    def _key(self, account: str, client: str) -> str:
        return f"{self._prefix(account)}{client}"[:200]

    def wait(self, account: str, client: str) -> float | None:
        now = self.clock()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(T.c.hits, T.c.expires).where(
                    T.c.key == self._key(account, client), T.c.window == _LOCK_ROW
                )
            ).first()
        if row is None or row.expires < now:
            return None
        until = row.expires - FORGET_SECONDS + backoff(row.hits)
        return max(1.0, until - now) if until > now else None

    def failed(self, account: str, client: str) -> None:
        now = self.clock()
        key = self._key(account, client)
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(T)
                .values(key=key, window=_LOCK_ROW, hits=1, expires=now + FORGET_SECONDS)
                .on_conflict_do_update(
                    index_elements=["key", "window"],
                    set_={
                        # A pair quiet for FORGET_SECONDS starts afresh.
                        "hits": case((T.c.expires < now, 1), else_=T.c.hits + 1),
                        "expires": now + FORGET_SECONDS,
                    },
                )
            )
            failures = conn.execute(
                select(T.c.hits).where(T.c.key == key, T.c.window == _LOCK_ROW)
            ).scalar_one()
        _warn(account, client, int(failures))

    def succeeded(self, account: str, client: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(T).where(T.c.key == self._key(account, client), T.c.window == _LOCK_ROW)
            )

    def clear(self, account: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(T).where(T.c.key.startswith(self._prefix(account)), T.c.window == _LOCK_ROW)
            )
