"""Which comparisons an issue features: local weeks, time zones, DST, newest first, once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cli_support import DigestCLI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from store_support import WEEK, dated, sample_items, seed_store, write_json

from digest.config import Settings
from digest.db import session_scope
from digest.importer import import_comparisons
from digest.issues import find_issue, freeze_issue, issue_comparisons
from digest.jobs import weekly_job
from digest.models import Issue
from digest.selection import select_comparisons
from digest.timeutil import parse_week, week_of, window
from digest.transports.memory import MemoryTransport

ZONES = ["UTC", "Pacific/Auckland", "America/Los_Angeles", "Asia/Kolkata", "Europe/London"]
AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def _import_at(engine: Engine, tmp_path: Path, times: dict[str, datetime]) -> None:
    """One sample comparison per slug, published at the given instant."""
    base = sample_items()[0]
    items = []
    for slug, when in times.items():
        item = dict(base)
        item["slug"], item["title"] = slug, f"{slug} vs other"
        item["url"] = None
        item["published_at"] = when.isoformat()
        items.append(item)
    import_comparisons(engine, [write_json(tmp_path / "timed.json", items)])


def _selected(engine: Engine, settings: Settings, week: str) -> list[str]:
    with Session(engine) as session:
        return [c.slug for c in select_comparisons(session, week, settings).all]


@pytest.mark.parametrize("zone", ZONES)
def test_window_is_the_seven_local_days_before_monday(zone: str) -> None:
    tz = ZoneInfo(zone)
    start, end = window(WEEK, tz)
    assert start.astimezone(tz).replace(tzinfo=None) == datetime(2026, 11, 9)
    assert end.astimezone(tz).replace(tzinfo=None) == datetime(2026, 11, 16)
    assert start.tzinfo is not None and end.tzinfo is not None


@pytest.mark.parametrize("zone", ZONES)
def test_windows_tile_the_year_without_gaps_or_overlaps(zone: str) -> None:
    tz = ZoneInfo(zone)
    weeks = [f"{y}-W{w:02d}" for y, w in [(2026, n) for n in range(1, 54)] + [(2027, 1)]]
    for this, nxt in pairwise(weeks):
        assert window(this, tz)[1] == window(nxt, tz)[0], (this, nxt)


def test_sunday_night_lands_in_the_local_week(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    sunday_late_la = datetime(2026, 11, 15, 23, 30, tzinfo=LOS_ANGELES)  # Mon 07:30 UTC
    sunday_late_nz = datetime(2026, 11, 15, 23, 30, tzinfo=AUCKLAND)  # Sun 10:30 UTC
    monday_early_nz = datetime(2026, 11, 16, 0, 30, tzinfo=AUCKLAND)  # Sun 11:30 UTC
    _import_at(
        engine,
        tmp_path,
        {"sunday-la": sunday_late_la, "sunday-nz": sunday_late_nz, "monday-nz": monday_early_nz},
    )
    la = settings.model_copy(update={"timezone": "America/Los_Angeles"})
    nz = settings.model_copy(update={"timezone": "Pacific/Auckland"})
    utc = settings.model_copy(update={"timezone": "UTC"})

    # In Los Angeles all three are still Sunday 15 November (or earlier): issue W47.
    assert sorted(_selected(engine, la, "2026-W47")) == ["monday-nz", "sunday-la", "sunday-nz"]
    assert _selected(engine, la, "2026-W48") == []
    # In Auckland only the NZ Sunday post is last week; the others are Monday there.
    assert _selected(engine, nz, "2026-W47") == ["sunday-nz"]
    assert sorted(_selected(engine, nz, "2026-W48")) == ["monday-nz", "sunday-la"]
    # In UTC the LA post is already Monday morning.
    assert sorted(_selected(engine, utc, "2026-W47")) == ["monday-nz", "sunday-nz"]
    assert _selected(engine, utc, "2026-W48") == ["sunday-la"]
    assert week_of(sunday_late_la, LOS_ANGELES) == "2026-W46"
    assert week_of(sunday_late_la, AUCKLAND) == "2026-W47"


def test_dst_weeks_are_167_and_169_hours(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    # US clocks spring forward on Sunday 8 March 2026 and fall back on Sunday 1 November.
    start, end = window("2026-W11", LOS_ANGELES)
    assert end - start == timedelta(hours=167)
    start, end = window("2026-W45", LOS_ANGELES)
    assert end - start == timedelta(hours=169)
    # New Zealand: back on Sunday 5 April, forward on Sunday 27 September 2026.
    assert (lambda w: w[1] - w[0])(window("2026-W15", AUCKLAND)) == timedelta(hours=169)
    assert (lambda w: w[1] - w[0])(window("2026-W40", AUCKLAND)) == timedelta(hours=167)

    late_sunday = datetime(2026, 3, 8, 23, 30, tzinfo=LOS_ANGELES)  # PDT, just after the jump
    early_monday = datetime(2026, 3, 9, 0, 30, tzinfo=LOS_ANGELES)
    early_sunday = datetime(2026, 3, 8, 1, 30, tzinfo=LOS_ANGELES)  # PST, before the jump
    _import_at(
        engine,
        tmp_path,
        {"late-sunday": late_sunday, "early-monday": early_monday, "early-sunday": early_sunday},
    )
    la = settings.model_copy(update={"timezone": "America/Los_Angeles"})
    assert _selected(engine, la, "2026-W11") == ["late-sunday", "early-sunday"]
    assert _selected(engine, la, "2026-W12") == ["early-monday"]


def test_iso_weeks_at_the_year_boundary() -> None:
    utc = ZoneInfo("UTC")
    assert week_of(datetime(2026, 12, 31, 12, tzinfo=UTC), utc) == "2026-W53"
    assert week_of(datetime(2027, 1, 3, 12, tzinfo=UTC), utc) == "2026-W53"
    assert week_of(datetime(2027, 1, 4, 0, 1, tzinfo=UTC), utc) == "2027-W01"
    start, end = window("2027-W01", utc)
    assert start.date() == date(2026, 12, 28) and end.date() == date(2027, 1, 4)
    assert parse_week("2026-W53") == (2026, 53)
    for bad in ("2027-W53", "2026-W00", "2026-47", "W47", "2026-W7", ""):
        with pytest.raises(ValueError):
            parse_week(bad)


def test_newest_first_full_cards_then_links(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    three = settings.model_copy(update={"full_cards": 3})
    count, _emails = seed_store(engine, three, tmp_path)
    with Session(engine) as session:
        selection = select_comparisons(session, WEEK, three)
        times = [c.published_at for c in selection.all]
        assert len(selection.full) == 3 and len(selection.links) == count - 3
    assert times == sorted(times, reverse=True)
    newest_title = sample_items()[-1]["title"]  # dated() makes the last item the newest
    assert selection.full[0].title == newest_title


def test_a_comparison_is_featured_only_once(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    seed_store(engine, settings, tmp_path)
    with session_scope(engine) as session:
        assert freeze_issue(session, WEEK, settings) is not None
    # Re-dating an already featured comparison into next week must not feature it again.
    moved = dated(sample_items()[:1], settings, "2026-W48")
    fresh = dated(sample_items()[1:2], settings, "2026-W48")
    fresh[0]["slug"], fresh[0]["title"] = "fresh-one", "Fresh One vs Other"
    import_comparisons(engine, [write_json(tmp_path / "next.json", moved + fresh)])
    assert _selected(engine, settings, "2026-W48") == ["fresh-one"]
    # The frozen issue that featured it still does (what was sent stays what was sent).
    with Session(engine) as session:
        issue = find_issue(session, WEEK)
        assert issue is not None
        full, links = issue_comparisons(session, issue)
        assert sample_items()[0]["slug"] in [c.slug for c in full + links]


def test_no_new_comparisons_means_no_issue(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    seed_store(engine, settings, tmp_path)
    transport = MemoryTransport()
    result = weekly_job(settings, engine=engine, transport=transport, week="2026-W30")
    assert result.outcome == "nothing-new"
    assert "no new comparisons" in result.summary()
    assert transport.outbox == []
    with Session(engine) as session:
        assert session.exec(select(Issue)).all() == []


def test_cli_send_with_nothing_new_exits_zero(digest_cli: DigestCLI) -> None:
    result = digest_cli("send", "--yes", "--week", "2026-W30")
    assert result.exit_code == 0, result.output
    assert "no new comparisons" in result.stdout
