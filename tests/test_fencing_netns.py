"""Self-fencing workers (issue 24, item 2), tested with two worker "hosts" in network
namespaces sharing one PostgreSQL (tests/netns_rig.py, tests/pg_cluster.py).

Mid-send, host A's link to the database is cut while its link to the mail server stays
up: the one case where a worker that did not fence itself would keep sending rows that
host B takes over once A's lease runs out. Later the link comes back. What must hold:

- A hands nothing to its SMTP sessions once its lease could have run out (the gate
  stops it half a lease after its last renewal), so B never sends alongside it;
- every reader gets the issue; duplicates stay within the documented window (what A had
  sent but not yet recorded when it was cut off: at most one batch), same Message-ID;
- A records nothing stale: a trigger logs every delivery row change with the client
  address it came from, and every row A settles was still under A's own lease;
- both workers end with exit 0 and no traceback.

Runs in CI as root; skips with the reason where ``ip netns`` is not permitted.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from netns_rig import Host, worker_hosts
from outage_support import figure, has_traceback, store_settings
from pg_cluster import private_postgres
from servers import free_port
from smtp_faults import FaultHandler, FaultPlan, seed_issue_store, start_issue
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from digest.store.engine import make_engine, migrate
from digest.store.models import Delivery

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

DIGEST = Path(sys.executable).parent / "digest"
D = Delivery.__table__  # type: ignore[attr-defined]
READERS = 2400
BATCH = 50
LEASE = 6
#: 50 ms per message and 2 sessions per worker: about 80 messages a second in all, so
#: the send lasts well past the cut and the reconnection.
SLOW = FaultPlan(rate_slow=1.0, slow_seconds=0.05)
CUT_SECONDS = 15.0

AUDIT = """
CREATE TABLE delivery_audit (
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivery_id integer NOT NULL,
    client inet,
    old_state text, new_state text, old_owner text, new_owner text
);
CREATE FUNCTION audit_delivery() RETURNS trigger AS $$
BEGIN
    INSERT INTO delivery_audit (delivery_id, client, old_state, new_state, old_owner, new_owner)
    VALUES (OLD.id, inet_client_addr(), OLD.state, NEW.state, OLD.lease_owner, NEW.lease_owner);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER delivery_audit AFTER UPDATE ON delivery FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.lease_owner IS DISTINCT FROM NEW.lease_owner)
    EXECUTE FUNCTION audit_delivery();
"""


@dataclass
class PeerHandler(FaultHandler):
    """Also remembers which host each delivered message came from, and when."""

    peers: list[tuple[str, str, float]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if answer.startswith("250"):
            with self.lock:
                for rcpt in envelope.rcpt_tos:
                    self.peers.append((session.peer[0], rcpt, time.monotonic()))
        return answer


@contextmanager
def smtp_on(handler: FaultHandler, hosts: list[str]) -> Iterator[int]:
    """One server (one handler) listening on each of ``hosts``, on one port."""
    port = free_port()
    controllers = [Controller(handler, hostname=h, port=port, ready_timeout=10) for h in hosts]
    for controller in controllers:
        controller.start()
    try:
        yield port
    finally:
        for controller in controllers:
            controller.stop()


def _owners(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(D.c.lease_owner).where(D.c.lease_owner.is_not(None)))
        return {owner.split(":")[0] for owner in rows.scalars()}


def _wait(condition: Any, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_worker_cut_off_from_the_database_fences_itself(tmp_path: Path) -> None:
    with (
        worker_hosts(2) as hosts,
        private_postgres([h.db_host for h in hosts]) as pg,
    ):
        a, b = hosts
        settings = store_settings(pg.url(), tmp_path)
        engine = make_engine(settings.database_url)
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text(AUDIT))
        emails = seed_issue_store(engine, settings, tmp_path, READERS)
        number = start_issue(engine, settings)
        handler = PeerHandler(SLOW)
        with smtp_on(handler, [a.mail_host, b.mail_host]) as port:
            procs = {
                host.name: _worker(host, name, pg.port, port, number, tmp_path)
                for host, name in ((a, "host-a"), (b, "host-b"))
            }
            _wait(lambda: {"host-a", "host-b"} <= _owners(engine), "both hosts to hold leases")
            _wait(lambda: handler.total >= READERS // 6, "the send to get going")
            a.cut_db()
            cut_at = time.monotonic()
            time.sleep(CUT_SECONDS)
            a.restore_db()
            restored_at = time.monotonic()
            outputs = {}
            for host in (a, b):
                code = procs[host.name].wait(timeout=300)
                outputs[host.name] = (tmp_path / f"{host.name}.log").read_text(errors="replace")
                assert code == 0, outputs[host.name]
        with engine.connect() as conn:
            audit = conn.execute(text("SELECT * FROM delivery_audit ORDER BY at")).all()
        engine.dispose()

    for output in outputs.values():
        assert not has_traceback(output), output
    a_ip = f"{a.db_host.rpartition('.')[0]}.2"
    a_mail = f"{a.mail_host.rpartition('.')[0]}.2"
    copies = handler.copies()
    assert set(copies) == set(emails), "somebody was missed"
    duplicates = sum(n - 1 for n in copies.values())
    assert duplicates <= BATCH, duplicates
    for email, n in copies.items():
        if n > 1:
            assert len(handler.message_ids(email)) == 1, email

    # Fenced: nothing reached A's SMTP sessions once its lease could have run out.
    from_a = [at for peer, _, at in handler.peers if peer == a_mail]
    during_cut = [at for at in from_a if cut_at + LEASE <= at < restored_at]
    assert during_cut == [], f"{len(during_cut)} messages from the cut-off host"
    # Never alongside: a reader with two copies got A's before B's.
    first_by: dict[str, str] = {}
    for peer, rcpt, _ in handler.peers:
        first_by.setdefault(rcpt, peer)
    assert all(first_by[e] == a_mail for e, n in copies.items() if n > 1)

    # Nothing stale: every row A settled was still under one of A's leases.
    settled_by_a = [row for row in audit if str(row.client) == a_ip and row.old_state == "sending"]
    stale = [row for row in settled_by_a if not (row.old_owner or "").startswith("host-a:")]
    assert settled_by_a and stale == []
    last_before_fence = max((at for at in from_a if at < restored_at), default=cut_at)
    figure(
        "netns partition of one worker from postgres",
        readers=READERS,
        sent=handler.total,
        duplicates=duplicates,
        sent_by_cut_off_host_after_the_cut=len([t for t in from_a if cut_at <= t < restored_at]),
        its_last_message_after_the_cut_seconds=last_before_fence - cut_at,
        cut_seconds=restored_at - cut_at,
        lease_seconds=LEASE,
        copies=dict(Counter(copies.values())),
    )


def _worker(host: Host, name: str, db_port: int, smtp_port: int, number: int, tmp: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATABASE_URL": f"postgresql://postgres@{host.db_host}:{db_port}/postgres",
            "DIGEST_SECRET_KEY": "test-secret-key-0123456789abcdef",
            "DIGEST_BASE_URL": "http://digest.test",
            "DIGEST_FROM": "Weekly AI Tool Verdicts <digest@verdicts.test>",
            "DIGEST_TRANSPORT": "smtp",
            "DIGEST_SMTP_HOST": host.mail_host,
            "DIGEST_SMTP_PORT": str(smtp_port),
            "DIGEST_SMTP_CONNECTIONS": "2",
            "DIGEST_BATCH_SIZE": str(BATCH),
            "DIGEST_LEASE_SECONDS": str(LEASE),
            "DIGEST_WORKER_NAME": name,
            "DIGEST_DB_OUTAGE_GRACE_SECONDS": "120",
            "DIGEST_ALLOW_UNSAFE_SEND": "true",
        }
    )
    argv = [str(DIGEST), "worker", "--issue", str(number), "--until-done"]
    # The worker writes through its own copy of the descriptor.
    with (tmp / f"{host.name}.log").open("wb") as log:
        return host.popen(argv, env, log, tmp)
