"""Sample data for tests: the bundled comparisons and subscribers, dated into a week."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from digest.core.clock import window
from digest.core.settings import Settings
from digest.store.importer import import_comparisons
from subscribers.service import import_csv

REPO = Path(__file__).resolve().parent.parent
SAMPLE_JSON = REPO / "digest" / "sample" / "comparisons.json"
SAMPLE_CSV = REPO / "digest" / "sample" / "subscribers.csv"
PAGES_DIR = Path(__file__).resolve().parent / "data" / "pages"
#: A week whose issue features comparisons published 2026-11-09 .. 2026-11-15.
WEEK = "2026-W47"


def sample_items() -> list[dict[str, Any]]:
    items = json.loads(SAMPLE_JSON.read_text(encoding="utf-8"))
    assert isinstance(items, list)
    return items


def sample_emails() -> list[str]:
    with SAMPLE_CSV.open(encoding="utf-8", newline="") as fh:
        return [row["email"].lower() for row in csv.DictReader(fh)]


def dated(
    items: list[dict[str, Any]], settings: Settings, week: str = WEEK
) -> list[dict[str, Any]]:
    """``items`` with publication times one hour apart inside ``week``'s window, newest
    last in the list (so "newest first" is the reverse of file order)."""
    start, _cutoff = window(week, settings.tz)
    for index, item in enumerate(items):
        item["published_at"] = (start + timedelta(hours=10 + index)).isoformat()
    return items


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def seed_store(
    engine: Engine, settings: Settings, tmp_path: Path, week: str = WEEK
) -> tuple[int, list[str]]:
    """Import the sample comparisons (dated into ``week``) and subscribers."""
    items = dated(sample_items(), settings, week)
    source = write_json(tmp_path / f"samples-{week}.json", items)
    import_comparisons(engine, [source])
    import_csv(engine, SAMPLE_CSV)
    return len(items), sample_emails()


def dump_store(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: compare two dumps to prove nothing changed."""
    meta = MetaData()
    meta.reflect(bind=engine)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            out[name] = sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
    return out


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)
