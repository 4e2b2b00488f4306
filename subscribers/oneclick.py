"""One-click unsubscribes (RFC 8058) at the rate a send brings them, each recorded
exactly once before it is answered.

Gmail and Yahoo post the one-click unsubscribe for their users within minutes of a
send, thousands at a time. One transaction per request made the route as slow as the
store's commits (issue 28). :class:`UnsubscribeWriter` commits in groups: a request
checks its token, hands the subscriber to one writer thread and waits; the thread
takes everything waiting (up to :data:`BATCH` requests) and records it in one
transaction through :func:`subscribers.lifecycle.suppress` — whose conditional
``UPDATE … RETURNING`` moves each subscriber once, however many requests (or
processes) name them — then wakes every waiting request. A request is answered only
after its unsubscribe is committed; when the store fails, every request of that
group gets the error (the web answers 503, the sender retries).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from digest.core.settings import Settings
from digest.core.tokens import TokenClaims, address_matches, read_claims
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from subscribers.lifecycle import move, record_moved, suppress
from subscribers.optin import Requester

logger = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]
#: Requests recorded in one transaction at most.
BATCH = 500


class _Recheck(Exception):
    """A link in the group does not match its subscriber's address: roll back, and
    record the group the careful way."""


@dataclass
class _Request:
    claims: TokenClaims
    who: Requester
    done: Future[None]


class UnsubscribeWriter:
    """Records one-click unsubscribes in groups, one writer thread per process."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, token: str, who: Requester) -> Future[None]:
        """Queue the unsubscribe ``token`` names; the future is done once it is
        committed (or carries the store's error). TokenError at once for a forged link."""
        claims = read_claims(self.settings, "unsubscribe", token)
        done: Future[None] = Future()
        self._start()
        self._queue.put(_Request(claims, who, done))
        return done

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="one-click-unsubscribe", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(item)
            self._record(group)

    def _record(self, group: list[_Request]) -> None:
        for attempt in range(3):
            try:
                self._write(group)
            except OperationalError as exc:
                # Two processes' groups can deadlock on PostgreSQL; one is refused and
                # simply runs again.
                if attempt < 2 and "deadlock" in str(exc).lower():
                    continue
                self._fail(group, exc)
                return
            except Exception as exc:  # every waiting request must hear of it
                self._fail(group, exc)
                return
            for item in group:
                if not item.done.done():
                    item.done.set_result(None)
            return

    @staticmethod
    def _fail(group: list[_Request], exc: BaseException) -> None:
        logger.warning("one-click unsubscribes not recorded: %s", exc)
        for item in group:
            if not item.done.done():
                item.done.set_exception(exc)

    def _write(self, group: list[_Request]) -> int:
        """One transaction for the group; how many subscribers it moved."""
        try:
            return self._write_fast(group)
        except _Recheck:
            return self._write_checked(group)

    def _write_fast(self, group: list[_Request]) -> int:
        """Move first, then check each link's address binding against what moved: one
        statement fewer than reading first. A link that does not match its row (made
        for an address since forgotten, whose id a new subscriber took) rolls the
        group back for :meth:`_write_checked`."""
        ids = sorted({item.claims.subscriber_id for item in group})
        with self.engine.begin() as conn:
            emails = dict(move(conn, ids, SubscriberStatus.UNSUBSCRIBED))
            by_who: dict[tuple[str, str | None, str | None], list[tuple[int, str]]] = defaultdict(
                list
            )
            for item in group:
                sid = item.claims.subscriber_id
                if sid not in emails:
                    continue  # already suppressed, or gone
                if not address_matches(item.claims, emails[sid]):
                    raise _Recheck
                who = item.who
                by_who[(who.source, who.ip, who.user_agent)].append((sid, emails.pop(sid)))
            for (source, ip, agent), rows in by_who.items():
                record_moved(
                    conn,
                    rows,
                    SubscriberStatus.UNSUBSCRIBED,
                    source=source,
                    detail="unsubscribe link",
                    ip=ip,
                    user_agent=agent,
                )
        return sum(len(rows) for rows in by_who.values())

    def _write_checked(self, group: list[_Request]) -> int:
        """Read first, move only the subscribers whose links match (the rare case)."""
        ids = sorted({item.claims.subscriber_id for item in group})
        movable = [SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value]
        with self.engine.begin() as conn:
            emails: dict[int, str] = dict(
                conn.execute(
                    select(S.c.id, S.c.email).where(S.c.id.in_(ids), S.c.status.in_(movable))
                ).all()
            )
            by_who: dict[tuple[str, str | None, str | None], set[int]] = defaultdict(set)
            for item in group:
                sid = item.claims.subscriber_id
                email = emails.get(sid)
                if email is None or not address_matches(item.claims, email):
                    continue
                who = item.who
                by_who[(who.source, who.ip, who.user_agent)].add(sid)
            moved, handled = 0, set[int]()
            for (source, ip, agent), sids in by_who.items():
                moved += suppress(
                    conn,
                    sorted(sids - handled),
                    SubscriberStatus.UNSUBSCRIBED,
                    source=source,
                    detail="unsubscribe link",
                    ip=ip,
                    user_agent=agent,
                )
                handled |= sids
        return moved

    def stop(self) -> None:
        """Finish what is queued and stop the thread (the server's shutdown)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
