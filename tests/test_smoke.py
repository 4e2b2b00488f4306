"""The pipeline end to end on the memory transport: import → freeze → send → status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope
from digest.store.importer import import_comparisons
from digest.transports.memory import MemoryTransport
from subscribers.service import add_subscriber

pytestmark = pytest.mark.clock  # the weekly job

SAMPLE = Path(__file__).resolve().parent.parent / "digest" / "sample" / "comparisons.json"


def test_weekly_job_sends_once_per_subscriber(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    items = json.loads(SAMPLE.read_text())
    for item in items:
        item["published_at"] = "2026-11-12T10:00:00+00:00"
    src = tmp_path / "c.json"
    src.write_text(json.dumps(items))
    import_comparisons(engine, [src])
    with session_scope(engine) as session:
        for i in range(5):
            add_subscriber(session, f"reader{i}@example.com", f"Reader {i}")
    transport = MemoryTransport()
    first = weekly_job(settings, engine=engine, transport=transport, week="2026-W47")
    assert first.report is not None and first.report.sent == 5
    assert sorted(m.recipient.email for m in transport.outbox) == [
        f"reader{i}@example.com" for i in range(5)
    ]
    second = weekly_job(settings, engine=engine, transport=transport, week="2026-W47")
    assert second.outcome == "already-sent"
    assert len(transport.outbox) == 5
    info = issue_status(engine, "2026-W47")
    assert info is not None and info["state"] == "sent" and info["counts"]["sent"] == 5
    assert datetime.now(UTC) >= datetime.fromisoformat(info["finished_at"])
