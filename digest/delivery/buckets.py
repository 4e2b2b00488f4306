"""Token buckets that every sender shares: in the database, or in Redis.

Two operations, both atomic across processes and machines:

- :meth:`Buckets.reserve` takes ``n`` tokens now, letting the bucket go into debt, and
  says how long the caller must wait before using them. Callers queue up in order, so
  the long-run rate is exact and no second is ever over by more than the burst (the
  global ``DIGEST_RATE_LIMIT``).
- :meth:`Buckets.take` grants at most what is there (maybe fewer than asked) and says
  when the next token is due: the caller sends the granted ones and puts the rest
  back to wait, so one slow domain never holds up the others (``DIGEST_DOMAIN_LIMITS``).
- :meth:`Buckets.quota` counts against a cap that does not refill (a day's warm-up
  allowance) and grants what is left.

Time comes from one clock for every participant: PostgreSQL's ``clock_timestamp()``,
Redis's ``TIME``, or this machine's clock for SQLite (one machine by definition).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from digest.exceptions import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grant:
    """``granted`` tokens now; ``wait`` seconds until the next one is due (0 when all
    asked for were granted)."""

    granted: int
    wait: float = 0.0


def _refill(tokens: float, stamp: float, now: float, rate: float, burst: float) -> float:
    return min(burst, tokens + max(0.0, now - stamp) * rate)


def _take(tokens: float, n: int, rate: float) -> tuple[float, Grant]:
    granted = min(n, int(tokens)) if tokens >= 1 else 0
    tokens -= granted
    wait = 0.0 if granted == n else max(0.0, (1 - tokens) / rate)
    return tokens, Grant(granted, wait)


class Buckets(ABC):
    """Named token buckets; the rate and burst are given with each call (they come from
    the settings of whoever calls, which every worker shares)."""

    @abstractmethod
    def reserve(self, key: str, n: int, rate: float, burst: float) -> float:
        """Take ``n`` tokens (into debt if need be); seconds to wait before using them."""

    @abstractmethod
    def take(self, key: str, n: int, rate: float, burst: float) -> Grant:
        """Take up to ``n`` tokens that are there now."""

    @abstractmethod
    def quota(self, key: str, n: int, cap: int) -> int:
        """Count up to ``n`` more against ``cap``; returns how many were granted."""

    def close(self) -> None:  # noqa: B027  (most backends hold nothing)
        """Release connections."""


class MemoryBuckets(Buckets):
    """One process's buckets (the single-sender default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}
        self._counts: dict[str, int] = {}

    def _get(self, key: str, burst: float, now: float) -> tuple[float, float]:
        return self._state.get(key, (burst, now))

    def reserve(self, key: str, n: int, rate: float, burst: float) -> float:
        with self._lock:
            now = self._clock()
            tokens, stamp = self._get(key, burst, now)
            tokens = _refill(tokens, stamp, now, rate, burst) - n
            self._state[key] = (tokens, now)
        return -tokens / rate if tokens < 0 else 0.0

    def take(self, key: str, n: int, rate: float, burst: float) -> Grant:
        with self._lock:
            now = self._clock()
            tokens, stamp = self._get(key, burst, now)
            tokens, grant = _take(_refill(tokens, stamp, now, rate, burst), n, rate)
            self._state[key] = (tokens, now)
        return grant

    def quota(self, key: str, n: int, cap: int) -> int:
        with self._lock:
            used = self._counts.get(key, 0)
            granted = max(0, min(n, cap - used))
            self._counts[key] = used + granted
        return granted


class SQLBuckets(Buckets):
    """Buckets in the store's ``rate_bucket`` table: one row per bucket, locked for the
    few statements of each call (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite takes
    its write lock with the first UPDATE)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    def _now(self, conn: Connection) -> float:
        if self.postgres:
            return float(
                conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
            )
        return time.time()

    def _row(self, conn: Connection, key: str, tokens: float) -> tuple[float, float, float]:
        """(tokens, stamp, now) of ``key``, locked; created full when new."""
        if self.postgres:
            conn.execute(
                text(
                    "INSERT INTO rate_bucket (key, tokens, stamp) VALUES (:k, :t, "
                    "extract(epoch FROM clock_timestamp())) ON CONFLICT (key) DO NOTHING"
                ),
                {"k": key, "t": tokens},
            )
            row = conn.execute(
                text("SELECT tokens, stamp FROM rate_bucket WHERE key = :k FOR UPDATE"),
                {"k": key},
            ).one()
        else:
            now = time.time()
            conn.execute(
                text(
                    "INSERT INTO rate_bucket (key, tokens, stamp) VALUES (:k, :t, :s) "
                    "ON CONFLICT (key) DO UPDATE SET key = excluded.key"
                ),
                {"k": key, "t": tokens, "s": now},
            )
            row = conn.execute(
                text("SELECT tokens, stamp FROM rate_bucket WHERE key = :k"), {"k": key}
            ).one()
        return float(row.tokens), float(row.stamp), self._now(conn)

    def _save(self, conn: Connection, key: str, tokens: float, stamp: float) -> None:
        conn.execute(
            text("UPDATE rate_bucket SET tokens = :t, stamp = :s WHERE key = :k"),
            {"k": key, "t": tokens, "s": stamp},
        )

    def reserve(self, key: str, n: int, rate: float, burst: float) -> float:
        with self.engine.begin() as conn:
            tokens, stamp, now = self._row(conn, key, burst)
            tokens = _refill(tokens, stamp, now, rate, burst) - n
            self._save(conn, key, tokens, now)
        return -tokens / rate if tokens < 0 else 0.0

    def take(self, key: str, n: int, rate: float, burst: float) -> Grant:
        with self.engine.begin() as conn:
            tokens, stamp, now = self._row(conn, key, burst)
            tokens, grant = _take(_refill(tokens, stamp, now, rate, burst), n, rate)
            self._save(conn, key, tokens, now)
        return grant

    def quota(self, key: str, n: int, cap: int) -> int:
        with self.engine.begin() as conn:
            used, _stamp, now = self._row(conn, key, 0.0)
            granted = max(0, min(n, cap - int(used)))
            self._save(conn, key, used + granted, now)
        return granted


# Each script: KEYS[1] the bucket; ARGV: n, rate, burst. The bucket is a hash of
# tokens and stamp; it expires after it would have refilled anyway.
_REDIS_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
"""
_REDIS_SAVE = """
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 60)
"""
_REDIS_RESERVE = (
    _REDIS_PRELUDE
    + "tokens = tokens - n\n"
    + _REDIS_SAVE
    + "if tokens < 0 then return tostring(-tokens / rate) end\nreturn '0'\n"
)
_REDIS_TAKE = (
    _REDIS_PRELUDE
    + """
local granted = 0
if tokens >= 1 then granted = math.min(n, math.floor(tokens)) end
tokens = tokens - granted
local wait = 0
if granted < n then wait = math.max(0, (1 - tokens) / rate) end
"""
    + _REDIS_SAVE
    + "return {granted, tostring(wait)}\n"
)
_REDIS_QUOTA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local granted = math.max(0, math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used))
redis.call('INCRBY', KEYS[1], granted)
redis.call('EXPIRE', KEYS[1], 3 * 86400)
return granted
"""


class RedisBuckets(Buckets):
    """Buckets in Redis (``DIGEST_REDIS_URL``): one Lua script per call, so each is
    atomic on the server whatever the number of workers."""

    PREFIX = "digest:bucket:"

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError as exc:  # the optional extra
            raise ConfigError(
                "DIGEST_REDIS_URL is set but the redis package is not installed: "
                "pip install 'weekly-verdict-digest[redis]'"
            ) from exc
        self.client: Any = redis.Redis.from_url(url, socket_timeout=5)
        self._reserve = self.client.register_script(_REDIS_RESERVE)
        self._take = self.client.register_script(_REDIS_TAKE)
        self._quota = self.client.register_script(_REDIS_QUOTA)

    def reserve(self, key: str, n: int, rate: float, burst: float) -> float:
        return float(self._reserve(keys=[self.PREFIX + key], args=[n, rate, burst]))

    def take(self, key: str, n: int, rate: float, burst: float) -> Grant:
        granted, wait = self._take(keys=[self.PREFIX + key], args=[n, rate, burst])
        return Grant(int(granted), float(wait))

    def quota(self, key: str, n: int, cap: int) -> int:
        return int(self._quota(keys=[self.PREFIX + key], args=[n, cap]))

    def close(self) -> None:
        self.client.close()
