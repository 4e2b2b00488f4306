"""Counting clicks through ``/r/<token>`` without a write per click.

A send brings readers back by the thousand within minutes; one database write per
click made ``/r/`` as slow as the store (issue 28). :class:`ClickBuffer` answers from
memory and counts in bulk:

- **Where a token leads** is read once and kept (a link row never changes its URL);
  later clicks on it touch neither the cipher nor the store.
- **Once per client per link per hour** (issue 22 item 11): a click is noted as a
  keyed digest of (the hour, the client's key, the link) — a value that names neither
  the client nor, without the site's key, anything at all. A repeat within the same
  clock hour is dropped in memory; across processes the store's ``click_seen`` table
  decides (its primary key takes each digest once), and its rows are deleted an
  hour after their hour is over. Nothing else about the client is kept.
- **Counts are written at most once a second** per process, by one background
  thread, in one transaction: the hour's new digests, then ``click_count += n`` per
  link. The redirect never waits for it.

What a crash can lose: the clicks of the last second (at most ``interval`` seconds)
that were counted in memory but not yet written. A clean stop (``digest serve``
shutting down) writes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.core.tokens import read_claims, stable_digester
from digest.exceptions import TokenError
from digest.issue.clicks import K, L, Target
from digest.store.models import ClickSeen

logger = logging.getLogger(__name__)

SEEN = ClickSeen.__table__  # type: ignore[attr-defined]
HOUR = 3600
#: Where a token leads, kept this long (a deleted draft's links stop working after it).
TARGET_TTL = 300.0
MAX_TARGETS = 20_000
#: Repeats dropped in memory before they reach the store; past this, the store decides.
MAX_SEEN = 200_000


class ClickBuffer:
    """Resolves click tokens and counts clicks for one web process."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.interval = interval
        self.clock = clock
        self._digest = stable_digester(settings, "click-seen")
        self._targets: OrderedDict[str, tuple[Target, float]] = OrderedDict()
        self._seen: set[str] = set()
        self._seen_hour = -1
        self._pending: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- the hot path

    def cached(self, token: str) -> Target | None:
        """Where ``token`` leads, if this process looked it up lately (no I/O)."""
        found = self._targets.get(token)
        if found is None or found[1] < self.clock():
            return None
        return found[0]

    def lookup(self, token: str) -> Target:
        """Where ``token`` leads (the store on a miss); TokenError if forged or gone."""
        found = self.cached(token)
        if found is not None:
            return found
        claims = read_claims(self.settings, "click", token)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(L.c.url, L.c.issue_id, L.c.comparison_id).where(
                    L.c.id == claims.subscriber_id
                )
            ).first()
        if row is None:
            raise TokenError("this link is not valid")
        target = Target(str(row.url), int(row.issue_id), row.comparison_id, claims.subscriber_id)
        with self._lock:
            self._targets[token] = (target, self.clock() + TARGET_TTL)
            while len(self._targets) > MAX_TARGETS:
                self._targets.popitem(last=False)
        return target

    def record(self, target: Target, client: str) -> None:
        """Note one click of ``client`` (a :func:`~digest.http.client.client_key`)."""
        hour = int(self.clock() // HOUR)
        seen = self._digest(f"{hour}\x1f{client}\x1f{target.link_id}")[:32]
        with self._lock:
            if hour != self._seen_hour or len(self._seen) >= MAX_SEEN:
                self._seen = set()
                self._seen_hour = hour
            if seen in self._seen:
                return
            self._seen.add(seen)
            self._pending.append((seen, hour, target.link_id))
        self._ensure_thread()

    # -------------------------------------------------------------- writing

    def flush(self) -> int:
        """Write what was noted; the clicks newly counted (repeats within the hour,
        from any process, count nothing)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return 0
            try:
                return self._write(pending)
            except SQLAlchemyError:
                # The store is away: keep the clicks for the next try.
                logger.warning("click counts not written yet (the database did not answer)")
                with self._lock:
                    self._pending[:0] = pending
                return 0

    def _write(self, pending: list[tuple[str, int, int]]) -> int:
        now = utcnow()
        current = max(hour for _, hour, _ in pending)
        with self.engine.begin() as conn:
            dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
            fresh: set[str] = set()
            for start in range(0, len(pending), 500):
                chunk = pending[start : start + 500]
                inserted = conn.execute(
                    dialect.insert(SEEN)
                    .values([{"digest": d, "hour": h} for d, h, _ in chunk])
                    .on_conflict_do_nothing(index_elements=["digest"])
                    .returning(SEEN.c.digest)
                )
                fresh.update(inserted.scalars())
            counts = Counter(link for digest, _, link in pending if digest in fresh)
            for link_id, n in sorted(counts.items()):
                conn.execute(
                    dialect.insert(K)
                    .values(link_id=link_id, clicks=n, last_at=now)
                    .on_conflict_do_update(
                        index_elements=["link_id"],
                        set_={"clicks": K.c.clicks + n, "last_at": now},
                    )
                )
            # Kept one hour more than needed (another process may still be writing the
            # last hour's clicks), then gone: nothing may stay that says who clicked.
            conn.execute(delete(SEEN).where(SEEN.c.hour < current - 1))
        return sum(counts.values())

    def _ensure_thread(self) -> None:
        if self._thread is not None or self._stopped.is_set():
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="click-flush", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the thread must outlive any one bad write
                logger.exception("click counts could not be written")

    def stop(self) -> None:
        """Write what is left and stop the background thread (the server's shutdown)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
