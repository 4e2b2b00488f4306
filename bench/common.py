"""Shared set-up for the delivery benchmarks: a store with the demo digest's issue."""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from digest.core.clock import utcnow, window  # noqa: E402
from digest.core.settings import Settings  # noqa: E402
from digest.delivery.pool import peak_rss_mb  # noqa: E402
from digest.issue.freeze import freeze_issue, issue_message  # noqa: E402
from digest.mail.message import IssueMessage  # noqa: E402
from digest.store.engine import make_engine, migrate, session_scope  # noqa: E402
from digest.store.importer import import_comparisons  # noqa: E402
from digest.store.subscriber_models import Subscriber  # noqa: E402

WEEK = "2026-W47"
SECRET = "bench-secret-key-0123456789abcdef"
SAMPLE = ROOT / "digest" / "sample" / "comparisons.json"


class PeakRSS:
    """A child's own peak resident memory (VmHWM), read from /proc while it runs.

    Not ``wait4``'s ``ru_maxrss``: Linux carries this process's resident size at fork
    (it holds the freshly seeded store) into the child's figure."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            peak = peak_rss_mb(self.pid)
            if peak is None:
                return  # the child has exited
            self.peak_mb = max(self.peak_mb, peak)

    def stop(self) -> float:
        """Stop watching; the peak in MB."""
        self._done.set()
        self._thread.join()
        return self.peak_mb


def bench_settings(workdir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{workdir / 'bench.db'}",
        "secret_key": SECRET,
        "base_url": "https://verdicts.example.com",
        "from_address": "Weekly AI Tool Verdicts <digest@verdicts.example.com>",
        "timezone": "UTC",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def seed(settings: Settings, workdir: Path, subscribers: int) -> Engine:
    """The sample comparisons dated into WEEK and ``subscribers`` active readers."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    items = json.loads(SAMPLE.read_text(encoding="utf-8"))
    start, _ = window(WEEK, settings.tz)
    for index, item in enumerate(items):
        item["published_at"] = (start + timedelta(hours=10 + index)).isoformat()
    source = workdir / "comparisons.json"
    source.write_text(json.dumps(items), encoding="utf-8")
    import_comparisons(engine, [source])
    now = utcnow()
    table = Subscriber.__table__  # type: ignore[attr-defined]
    chunk = 10_000
    for first in range(0, subscribers, chunk):
        rows = [
            {
                "email": f"reader{i:07d}@example.com",
                "name": f"Reader {i}",
                "status": "active",
                "source": "bench",
                "created_at": now,
                "updated_at": now,
                "confirmed_at": now,
            }
            for i in range(first, min(first + chunk, subscribers))
        ]
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
    return engine


def demo_message(settings: Settings, engine: Engine) -> IssueMessage:
    with session_scope(engine) as session:
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None
        return issue_message(issue, settings)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send_env(database_url: str, port: int, connections: int, **extra: str) -> dict[str, str]:
    """The environment of a ``digest`` child process sending to a loopback SMTP server
    on ``port`` with ``connections`` sessions (this environment's DIGEST_* left out)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=database_url,
        DIGEST_SECRET_KEY=SECRET,
        DIGEST_BASE_URL="https://verdicts.example.com",
        DIGEST_FROM="Weekly AI Tool Verdicts <digest@verdicts.example.com>",
        DIGEST_TRANSPORT="smtp",
        DIGEST_SMTP_HOST="127.0.0.1",
        DIGEST_SMTP_PORT=str(port),
        DIGEST_SMTP_CONNECTIONS=str(connections),
        # A loopback rig: an example.com sender and no web app to probe.
        DIGEST_ALLOW_UNSAFE_SEND="true",
        DIGEST_PREFLIGHT_HEALTH_TIMEOUT="0",
        **extra,
    )
    return env
