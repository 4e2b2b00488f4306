"""Send limits every worker shares: the global rate, per recipient-domain rates and a
warm-up plan for a new sending domain.

- ``DIGEST_RATE_LIMIT`` (messages/s, all workers together): each chunk reserves its
  tokens and waits its turn (:meth:`SendGate.pace`).
- ``DIGEST_DOMAIN_LIMITS="gmail.com=20/s,yahoo.com=600/m"``: recipients at a domain
  whose bucket is empty are not sent now; they go back to the queue due when the
  domain's next token is (:meth:`SendGate.admit`), so other domains keep flowing.
- ``DIGEST_WARMUP="1000,2000,5000,10000"``: messages per day on the first, second, …
  day the sending domain sends (from ``DIGEST_WARMUP_START``, else the day of the first
  message ever sent); past the last number, no cap. What is over the day's allowance
  waits for the next local midnight.

Throttled recipients wait; they never fail. The buckets live in the database or, with
``DIGEST_REDIS_URL``, in Redis (:mod:`digest.delivery.buckets`).
"""

from __future__ import annotations

import logging
import time as _time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings, parse_domain_limits, parse_warmup
from digest.delivery.buckets import Buckets, MemoryBuckets, RedisBuckets, SQLBuckets
from digest.store.models import Delivery, DeliveryState

logger = logging.getLogger(__name__)

D = Delivery.__table__  # type: ignore[attr-defined]


def make_buckets(settings: Settings, engine: Engine | None) -> Buckets:
    """Redis when ``DIGEST_REDIS_URL`` is set, else the database (every worker on it
    shares the buckets), else memory."""
    if settings.redis_url:
        return RedisBuckets(settings.redis_url)
    if engine is not None:
        return SQLBuckets(engine)
    return MemoryBuckets()


def first_send_day(engine: Engine, settings: Settings) -> date | None:
    """The local day of the first message this store ever sent."""
    with engine.connect() as conn:
        first = conn.execute(
            select(func.min(D.c.sent_at)).where(D.c.state == DeliveryState.SENT.value)
        ).scalar()
    if first is None:
        return None
    if first.tzinfo is None:  # SQLite through a bare select
        first = first.replace(tzinfo=UTC)
    return first.astimezone(settings.tz).date()


@dataclass
class Admission:
    """Who may be sent now, and who waits how long (seconds)."""

    now: list[Recipient] = field(default_factory=list)
    later: list[tuple[Recipient, float]] = field(default_factory=list)


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower()


class SendGate:
    """The shared limits as one worker sees them."""

    def __init__(
        self,
        settings: Settings,
        buckets: Buckets,
        *,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.settings = settings
        self.buckets = buckets
        self.engine = engine
        self.clock = clock
        self.sleep = sleep or _time.sleep
        self.domains = parse_domain_limits(settings.domain_limits)
        self.warmup = parse_warmup(settings.warmup)
        self._start: date | None = settings.warmup_start

    @property
    def active(self) -> bool:
        """Whether anything beyond the in-process pacer applies."""
        return bool(self.domains or self.warmup)

    # ------------------------------------------------------------ the global rate

    def pace(self, n: int) -> bool:
        """Wait until ``n`` more messages may go under the global rate. False when the
        sleep was cut short (the send loop's gate shut): they must not go now."""
        rate = self.settings.rate_limit
        if rate is None or n <= 0:
            return True
        # A burst of one chunk: whatever the number of workers, no one-second window
        # carries more than the rate plus one chunk (a chunk is at most a batch).
        wait = self.buckets.reserve("global", n, rate, burst=float(n))
        if wait > 0:
            return self.sleep(wait) is not False
        return True

    # ------------------------------------------------------------ domains and warm-up

    def _day_cap(self, today: date) -> int | None:
        if not self.warmup:
            return None
        if self._start is None and self.engine is not None:
            self._start = first_send_day(self.engine, self.settings)
        start = self._start or today
        index = (today - start).days
        if index < 0:
            return 0
        return self.warmup[index] if index < len(self.warmup) else None

    def _until_tomorrow(self, now: datetime) -> float:
        local = now.astimezone(self.settings.tz)
        midnight = datetime.combine(local.date() + timedelta(days=1), time(0), self.settings.tz)
        return max(1.0, (midnight - local).total_seconds())

    def admit(self, recipients: Sequence[Recipient]) -> Admission:
        """Split a batch into who goes now and who waits (and how long)."""
        result = Admission()
        if not self.active:
            result.now = list(recipients)
            return result
        now = self.clock()
        by_domain: dict[str, list[Recipient]] = defaultdict(list)
        for recipient in recipients:
            by_domain[domain_of(recipient.email)].append(recipient)
        for domain, group in by_domain.items():
            rate = self.domains.get(domain)
            if rate is None:
                result.now.extend(group)
                continue
            grant = self.buckets.take(f"domain:{domain}", len(group), rate, burst=max(1.0, rate))
            result.now.extend(group[: grant.granted])
            # Spread the rest over the coming seconds so they do not all wake at once.
            for index, recipient in enumerate(group[grant.granted :]):
                result.later.append((recipient, grant.wait + index / rate))
        cap = self._day_cap(now.astimezone(self.settings.tz).date())
        if cap is not None and result.now:
            day = now.astimezone(self.settings.tz).date().isoformat()
            key = f"warmup:{self.settings.from_domain}:{day}"
            granted = self.buckets.quota(key, len(result.now), cap)
            if granted < len(result.now):
                wait = self._until_tomorrow(now)
                result.later.extend((r, wait) for r in result.now[granted:])
                result.now = result.now[:granted]
                logger.info("warm-up: today's %d messages are used up; the rest wait", cap)
        return result
