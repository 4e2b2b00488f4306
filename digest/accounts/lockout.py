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

In memory, per process, bounded (the stalest pairs are forgotten first), like the
per-client-IP limit in front of it (digest/http/throttle.py), which caps how many
pairs one client can try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FREE_ATTEMPTS = 5
BASE_SECONDS = 60.0
MAX_SECONDS = 15 * 60.0
#: A pair that has not failed for this long starts afresh.
FORGET_SECONDS = 24 * 3600.0


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
            if pair.failures >= FREE_ATTEMPTS:
                backoff = BASE_SECONDS * 2 ** min(pair.failures - FREE_ATTEMPTS, 16)
                pair.until = now + min(MAX_SECONDS, backoff)
                logger.warning(
                    "console login for %r from %s waits %.0f s after %d failures",
                    account[:80],
                    client,
                    pair.until - now,
                    pair.failures,
                )
            self._pairs[(account, client)] = pair
            while len(self._pairs) > self.max_pairs:
                self._pairs.popitem(last=False)

    def succeeded(self, account: str, client: str) -> None:
        with self._lock:
            self._pairs.pop((account, client), None)

    def clear(self, account: str) -> None:
        """Lift every lock on ``account`` (its password was set anew from a link)."""
        with self._lock:
            for key in [k for k in self._pairs if k[0] == account]:
                del self._pairs[key]
