"""Request throttling: a per-client-IP sliding-window limit (the public subscribe
form, a fresh unsubscribe link, console logins). Not send pacing, which is
:mod:`digest.delivery.pacing`.

In-process and in memory: each ``digest serve`` process counts on its own, and a
restart forgets. That is enough to stop a script hammering one form; several
workers behind a load balancer each allow the limit (docs/subscribers.md).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: An IPv6 client usually holds a whole /64 (SLAAC, privacy addresses): counting per
#: address would give one person 2**64 budgets.
IPV6_PREFIX = 64


def rate_key(ip: str) -> str:
    """The key a client is counted under: its IPv4 address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


class Throttle:
    """At most ``limit`` hits per key per ``window`` seconds."""

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
