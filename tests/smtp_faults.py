"""A real SMTP server (aiosmtpd on loopback) that misbehaves on purpose, and counts.

:class:`FaultPlan` decides, reproducibly from a seed, what happens to each recipient on
each attempt: ``421`` (and the connection closes), ``451``, ``454`` throttling, a
disconnect in the middle of DATA (the message is lost, not delivered), a slow answer,
or a permanent ``550`` (same address, every attempt). Transient faults hit one address
at most ``max_transient`` times, so with enough attempts every non-550 address ends up
delivered — exact final states a test can assert. The handler keeps what was
delivered per recipient (with each copy's Message-ID) and how many connections came.

Also here: seeding a store with an issue and N subscribers quickly (one INSERT).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from servers import free_port
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from store_support import WEEK, dated, sample_items, write_json

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.store.importer import import_comparisons
from digest.store.subscriber_models import Subscriber

TRANSIENT_KINDS = ("421", "451", "454", "disconnect")
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)


@dataclass(frozen=True)
class FaultPlan:
    """Fault rates in [0, 1] per attempt (``permanent`` per address)."""

    rate_421: float = 0.0
    rate_451: float = 0.0
    rate_454: float = 0.0
    rate_disconnect: float = 0.0
    rate_slow: float = 0.0
    permanent: float = 0.0
    slow_seconds: float = 0.05
    max_transient: int = 2
    #: like a provider's quota: more RCPTs than this per second get "454 Throttling"
    throttle_above: float | None = None
    seed: int = 7

    def _roll(self, *parts: object) -> float:
        digest = hashlib.sha256(repr((self.seed, *parts)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def is_permanent(self, address: str) -> bool:
        return self._roll(address, "550") < self.permanent

    def decide(self, address: str, attempt: int) -> str | None:
        """The fault for ``address`` on its ``attempt``-th RCPT, or None."""
        if self.is_permanent(address):
            return "550"
        if attempt > self.max_transient:
            return None
        rates = {
            "421": self.rate_421,
            "451": self.rate_451,
            "454": self.rate_454,
            "disconnect": self.rate_disconnect,
        }
        for kind in TRANSIENT_KINDS:
            if self._roll(address, attempt, kind) < rates[kind]:
                return kind
        return None

    def is_slow(self, address: str, attempt: int) -> bool:
        return self._roll(address, attempt, "slow") < self.rate_slow


@dataclass
class FaultHandler:
    plan: FaultPlan = field(default_factory=FaultPlan)
    #: "550 …" to refuse every MAIL FROM (a rejected sender)
    reject_sender: str | None = None
    #: advertise PIPELINING (RFC 2920) so the client's pipelined path is what runs
    pipelining: bool = True
    #: the answer to the final dot for (recipient, attempt), or None for "250"; the
    #: message is not delivered when it is not 2xx
    data_answer: Callable[[str, int], str | None] | None = None
    #: called (in the server's thread) with the number of messages delivered so far
    on_delivered: Callable[[int], None] | None = None
    delivered: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    attempts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: dict[int, str] = field(default_factory=dict)
    _recent: deque[float] = field(default_factory=deque)
    #: when each message was delivered (monotonic), for rate measurements
    delivered_at: list[float] = field(default_factory=list)
    #: (recipient, monotonic time) of every delivery, for per-domain rates
    arrivals: list[tuple[str, float]] = field(default_factory=list)

    def _over_quota(self) -> bool:
        limit = self.plan.throttle_above
        if limit is None:
            return False
        now = time.monotonic()
        with self.lock:
            while self._recent and self._recent[0] < now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= limit:
                return True
            self._recent.append(now)
            return False

    # ------------------------------------------------------------ what tests read

    @property
    def total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.delivered.values())

    def copies(self) -> Counter[str]:
        with self.lock:
            return Counter({k: len(v) for k, v in self.delivered.items()})

    def message_ids(self, address: str) -> set[bytes]:
        with self.lock:
            return set(self.delivered.get(address, []))

    # ------------------------------------------------------------ aiosmtpd hooks

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.reject_sender:
            return self.reject_sender
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.attempts[address] += 1
            attempt = self.attempts[address]
        kind = self.plan.decide(address, attempt)
        if kind is None and self._over_quota():
            kind = "454"
        if kind is not None:
            with self.lock:
                self.faults[kind] += 1
        if kind == "550":
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if kind == "451":
            return "451 4.3.0 temporary local problem, try later"
        if kind == "454":
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded"
        if kind == "421":
            asyncio.get_running_loop().call_later(0.02, server.transport.close)
            return "421 4.7.0 try again later, closing connection"
        if kind == "disconnect":
            self._pending[id(session)] = "disconnect"
        elif self.plan.is_slow(address, attempt):
            self._pending[id(session)] = "slow"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self._pending.pop(id(session), None)
        if fault == "disconnect":
            # The connection dies before the end of DATA is answered: nothing delivered.
            server.transport.abort()
            return "451 aborted"
        if fault == "slow":
            await asyncio.sleep(self.plan.slow_seconds)
        if self.data_answer is not None:
            rcpt = envelope.rcpt_tos[0]
            with self.lock:
                answer = self.data_answer(rcpt, self.attempts[rcpt])
            if answer is not None:
                return answer
        content = envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        match = _MESSAGE_ID.search(data.split(b"\r\n\r\n", 1)[0])
        message_id = match.group(1) if match else b""
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                now = time.monotonic()
                self.delivered[rcpt].append(message_id)
                self.delivered_at.append(now)
                self.arrivals.append((rcpt, now))
            count = sum(len(v) for v in self.delivered.values())
        if self.on_delivered is not None:
            self.on_delivered(count)
        return "250 2.0.0 queued"


@dataclass
class FaultServer:
    handler: FaultHandler
    host: str
    port: int


def _reject_login(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
    return AuthResult(success=False, handled=False)


@contextmanager
def fault_smtp(handler: FaultHandler, *, auth_fails: bool = False) -> Iterator[FaultServer]:
    """Run ``handler`` on a free loopback port; with ``auth_fails`` every login is refused."""
    port = free_port()
    kwargs: dict[str, Any] = {}
    if auth_fails:
        kwargs = {"authenticator": _reject_login, "auth_require_tls": False}
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield FaultServer(handler, "127.0.0.1", port)
    finally:
        controller.stop()


# ---------------------------------------------------------------- store seeding


def address(index: int) -> str:
    return f"reader{index:06d}@example.com"


def seed_issue_store(
    engine: Engine, settings: Settings, tmp_path: Path, subscribers: int, week: str = WEEK
) -> list[str]:
    """The sample comparisons dated into ``week`` and ``subscribers`` active readers."""
    source = write_json(tmp_path / f"samples-{week}.json", dated(sample_items(), settings, week))
    import_comparisons(engine, [source])
    now = utcnow()
    emails = [address(i) for i in range(subscribers)]
    rows = [
        {
            "email": e,
            "name": f"Reader {i}",
            "status": "active",
            "source": "test",
            "created_at": now,
            "updated_at": now,
            "confirmed_at": now,
        }
        for i, e in enumerate(emails)
    ]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(Subscriber.__table__), rows)  # type: ignore[attr-defined]
    return emails


def start_issue(engine: Engine, settings: Settings, week: str = WEEK) -> int:
    """Freeze ``week``'s issue and start it sending (its deliveries queued), without
    delivering anything: for workers to pick up. Returns its number."""
    from digest.delivery.queue import enqueue
    from digest.issue.freeze import freeze_issue
    from digest.store.engine import session_scope

    with session_scope(engine) as session:
        issue = freeze_issue(session, week, settings)
        assert issue is not None and issue.id is not None
        issue.state = "sending"
        session.add(issue)
        issue_id, number = issue.id, issue.number
    with engine.begin() as conn:
        enqueue(conn, issue_id)
    return int(number)


def smtp_settings(base: Settings, server: FaultServer, **overrides: Any) -> Settings:
    """Settings for a fast test send through ``server``."""
    values: dict[str, Any] = {
        "transport": "smtp",
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_connections": 4,
        "smtp_timeout": 10.0,
        "batch_size": 100,
        "lease_seconds": 10,
        "max_attempts": 6,
        "retry_base_seconds": 0.02,
        "retry_max_seconds": 0.1,
    }
    values.update(overrides)
    return base.model_copy(update=values)
