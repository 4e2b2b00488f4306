"""Readers with preferences, and the sample comparisons published in the last hours
(their tools' categories are the topics), for the per-reader digest's tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from store_support import sample_items, write_json

from digest.store.engine import session_scope
from digest.store.importer import import_comparisons
from subscribers.service import add_subscriber


def published_samples(
    engine: Engine, tmp_path: Path, *, now: datetime, old_topic: str | None = "Robotics"
) -> None:
    """The seven samples, published in the hours before ``now``; and, when ``old_topic``,
    one old comparison that puts that topic in the catalogue but in no new issue.

    ``now`` is the test's own clock (the instant its job runs at), never the real one:
    samples dated from the wall clock and a job run at a fixed date disagree on any
    later day."""
    items = sample_items()
    for index, item in enumerate(items):
        item["published_at"] = (now - timedelta(hours=5 + index)).isoformat()
    if old_topic:
        old = json.loads(json.dumps(items[0]))
        old.update(slug="old-robots", title="Old Robot A vs Old Robot B")
        old["published_at"] = (now - timedelta(days=60)).isoformat()
        for tool in old["tools"]:
            tool["category"] = old_topic
        items.append(old)
    import_comparisons(engine, [write_json(tmp_path / "readers.json", items)])


def add_reader(
    engine: Engine,
    email: str,
    topics: list[str] | None = None,
    frequency: str = "weekly",
    timezone: str | None = None,
) -> None:
    with session_scope(engine) as session:
        sub, _ = add_subscriber(session, email, email.split("@")[0].title())
        sub.topics = json.dumps(sorted(topics)) if topics else None
        sub.frequency = frequency
        sub.timezone = timezone
        session.add(sub)
