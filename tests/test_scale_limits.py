"""Shared token buckets (memory, SQLite, PostgreSQL, Redis) and the send gate built on
them: atomic under concurrency, domain limits that defer instead of failing, warm-up."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import TEST_SECRET, throwaway_postgres

from digest.core.recipient import Recipient
from digest.core.settings import Settings, parse_domain_limits, parse_warmup
from digest.delivery.buckets import Buckets, MemoryBuckets, RedisBuckets, SQLBuckets
from digest.delivery.limits import SendGate
from digest.store.engine import make_engine, migrate

pytestmark = pytest.mark.clock  # the warm-up's days

REDIS_ENV = "DIGEST_TEST_REDIS_URL"
REDIS_DEFAULT = "redis://127.0.0.1:6379/15"


def _redis_url() -> str:
    url = os.environ.get(REDIS_ENV, REDIS_DEFAULT)
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=1).ping()
    except Exception as exc:  # no server, or no package: say which
        pytest.skip(f"no Redis at {url} ({type(exc).__name__}); set {REDIS_ENV}")
    return url


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def buckets(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Buckets]:
    kind = request.param
    if kind == "memory":
        yield MemoryBuckets()
    elif kind == "sqlite":
        engine = make_engine(settings.database_url)
        migrate(engine)
        yield SQLBuckets(engine)
        engine.dispose()
    elif kind == "postgres":
        with throwaway_postgres() as url:
            engine = make_engine(url)
            migrate(engine)
            yield SQLBuckets(engine)
            engine.dispose()
    else:
        url = _redis_url()
        store = RedisBuckets(url)
        prefix = f"{RedisBuckets.PREFIX}test-{os.getpid()}-"
        store.PREFIX = prefix  # type: ignore[misc]
        yield store
        for key in store.client.scan_iter(prefix + "*"):
            store.client.delete(key)
        store.close()


SLOW = 0.01  # tokens per second: nothing refills while a test runs


def test_take_grants_what_is_there_and_says_when_more_comes(buckets: Buckets) -> None:
    first = buckets.take("t", 8, SLOW, burst=5)
    assert first.granted == 5 and first.wait > 0
    again = buckets.take("t", 3, SLOW, burst=5)
    assert again.granted == 0 and 0 < again.wait <= 1 / SLOW
    assert buckets.take("other", 2, SLOW, burst=5).granted == 2  # buckets are separate


def test_reserve_goes_into_debt_and_queues_callers_in_order(buckets: Buckets) -> None:
    assert buckets.reserve("r", 4, SLOW, burst=4) == 0
    one = buckets.reserve("r", 1, SLOW, burst=4)
    two = buckets.reserve("r", 1, SLOW, burst=4)
    assert 0 < one <= 1 / SLOW and one < two <= 2 / SLOW


def test_quota_never_grants_beyond_the_cap(buckets: Buckets) -> None:
    assert buckets.quota("q", 7, 10) == 7
    assert buckets.quota("q", 7, 10) == 3
    assert buckets.quota("q", 1, 10) == 0


def test_concurrent_takers_never_share_out_more_than_the_bucket_holds(
    buckets: Buckets,
) -> None:
    start = threading.Barrier(8)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait(timeout=30)
        for _ in range(10):
            got = buckets.take("shared", 3, SLOW, burst=50).granted
            got += buckets.quota("shared-day", 2, 30)
            with lock:
                granted.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(granted) == 50 + 30


def test_limits_parse_and_refuse_with_the_entry() -> None:
    assert parse_domain_limits("gmail.com=20/s, Yahoo.com=600/m,x.org=36/h") == {
        "gmail.com": 20.0,
        "yahoo.com": 10.0,
        "x.org": 0.01,
    }
    for bad in ("gmail.com=20", "gmail=2/s", "gmail.com=0/s", "gmail.com=fast/s"):
        with pytest.raises(ValueError, match="not DOMAIN=N/s"):
            parse_domain_limits(bad)
    assert parse_warmup("1000,2000,5000,10000,…") == [1000, 2000, 5000, 10000]
    with pytest.raises(ValueError, match="positive number"):
        parse_warmup("1000,lots")
    with pytest.raises(ValueError):
        Settings(domain_limits="gmail.com=20")


def _people(domain: str, n: int) -> list[Recipient]:
    return [Recipient(i, f"r{i}@{domain}", "") for i in range(n)]


def test_a_domain_limit_defers_its_recipients_while_other_domains_flow() -> None:
    settings = Settings(secret_key=TEST_SECRET, domain_limits="gmail.com=2/s")
    gate = SendGate(settings, MemoryBuckets())
    batch = _people("gmail.com", 5) + _people("example.org", 4)
    first = gate.admit(batch)
    gmail_now = [r for r in first.now if r.email.endswith("@gmail.com")]
    assert len(gmail_now) == 2 and len(first.now) == 6  # two gmail, all four others
    waits = [w for _, w in first.later]
    assert len(waits) == 3 and all(w > 0 for w in waits) and waits == sorted(waits)


def test_warm_up_caps_each_day_and_the_rest_waits_until_midnight() -> None:
    tz_settings = Settings(
        secret_key=TEST_SECRET,
        warmup="3,5",
        warmup_start=date(2026, 12, 1),
        timezone="Europe/Berlin",
        from_address="News <news@verdicts.example.net>",
    )
    now = [datetime(2026, 12, 1, 21, 0, tzinfo=UTC)]  # 22:00 in Berlin, day one
    gate = SendGate(tz_settings, MemoryBuckets(), clock=lambda: now[0])
    day_one = gate.admit(_people("example.org", 4))
    assert len(day_one.now) == 3
    [(late, wait)] = day_one.later
    assert late.email == "r3@example.org" and wait == pytest.approx(2 * 3600)
    now[0] += timedelta(hours=3)  # 01:00 in Berlin: day two allows five
    assert len(gate.admit(_people("example.org", 7)).now) == 5
    now[0] += timedelta(days=1)  # day three: past the plan, no cap
    assert len(gate.admit(_people("example.org", 50)).now) == 50


def test_the_global_rate_paces_every_caller_from_one_bucket() -> None:
    slept: list[float] = []
    settings = Settings(secret_key=TEST_SECRET, rate_limit=10)
    shared = MemoryBuckets()
    gates = [SendGate(settings, shared, sleep=slept.append) for _ in range(2)]
    for gate in gates:
        gate.pace(10)  # the first fills the second's worth
    assert slept and slept[0] == pytest.approx(1.0, abs=0.05)
