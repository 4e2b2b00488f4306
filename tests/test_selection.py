"""What an issue features: everything new within the max age before its cutoff, newest
first, each comparison once — across missed weeks, mid-week sends, DST and racing
schedulers."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cli_support import DigestCLI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from store_support import WEEK, sample_items, seed_store, write_json

from digest.core.clock import parse_week, week_of, window
from digest.core.settings import Settings
from digest.issue.freeze import freeze_next, issue_comparisons
from digest.issue.selection import select_comparisons, window_start
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope
from digest.store.importer import import_comparisons
from digest.store.models import Issue, IssueState
from digest.transports.memory import MemoryTransport

pytestmark = pytest.mark.clock  # the issue's window and cutoff

ZONES = ["UTC", "Pacific/Auckland", "America/Los_Angeles", "Asia/Kolkata", "Europe/London"]
BERLIN = ZoneInfo("Europe/Berlin")
#: A Wednesday: mid-week, where a manual send used to find nothing.
WEDNESDAY = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


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
    import_comparisons(engine, [write_json(tmp_path / f"timed-{len(times)}.json", items)])


def _selected(engine: Engine, settings: Settings, cutoff: datetime) -> list[str]:
    with Session(engine) as session:
        return [c.slug for c in select_comparisons(session, cutoff, settings).all]


def _send(engine: Engine, settings: Settings, now: datetime, **kw: object) -> list[str]:
    """Run the job at ``now`` into a fresh in-memory outbox; the slugs it featured."""
    result = weekly_job(
        settings,
        engine=engine,
        transport=MemoryTransport(),
        now=now,
        **kw,  # type: ignore[arg-type]
    )
    if result.number is None:
        return []
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.number == result.number)).one()
        full, links = issue_comparisons(session, issue)
    return [c.slug for c in full + links]


def test_the_window_reaches_back_the_max_age_before_the_cutoff(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    _import_at(
        engine,
        tmp_path,
        {
            "fifteen-days": WEDNESDAY - timedelta(days=15),
            "thirteen-days": WEDNESDAY - timedelta(days=13),
            "an-hour-ago": WEDNESDAY - timedelta(hours=1),
            "tomorrow": WEDNESDAY + timedelta(days=1),
        },
    )
    assert _selected(engine, settings, WEDNESDAY) == ["an-hour-ago", "thirteen-days"]
    week = settings.model_copy(update={"max_age_days": 7})
    assert _selected(engine, week, WEDNESDAY) == ["an-hour-ago"]


def test_a_missed_week_is_caught_up_and_nothing_stale_is_dumped(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    monday = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)
    _import_at(engine, tmp_path, {"week-one": monday - timedelta(days=2)})
    assert _send(engine, settings, monday, scheduled=True) == ["week-one"]
    # The scheduler is down the next Monday; two comparisons arrive that week and one
    # the week after; an old one is imported late.
    _import_at(
        engine,
        tmp_path,
        {
            "during-the-outage": monday + timedelta(days=4),
            "just-before-it": monday + timedelta(days=6),
            "this-week": monday + timedelta(days=13),
            "imported-late-but-old": monday - timedelta(days=20),
        },
    )
    two_weeks_on = monday + timedelta(days=14)
    featured = _send(engine, settings, two_weeks_on, scheduled=True)
    assert featured == ["this-week", "just-before-it", "during-the-outage"]
    with Session(engine) as session:
        numbers = session.exec(select(Issue.number).order_by(Issue.number)).all()
    assert numbers == [1, 2]


def test_a_manual_send_mid_week_sends_what_is_new(
    engine: Engine, settings: Settings, tmp_path: Path, digest_cli: DigestCLI
) -> None:
    _import_at(
        engine,
        tmp_path,
        {"sunday": WEDNESDAY - timedelta(days=3), "this-morning": WEDNESDAY - timedelta(hours=4)},
    )
    assert _send(engine, settings, WEDNESDAY) == ["this-morning", "sunday"]
    # Imported after that send: the next manual send features it, and only it — but a
    # second issue in one ISO week needs the operator's confirmation.
    _import_at(engine, tmp_path, {"afternoon": WEDNESDAY + timedelta(hours=2)})
    later = WEDNESDAY + timedelta(hours=3)
    refused = weekly_job(settings, engine=engine, transport=MemoryTransport(), now=later)
    assert refused.outcome == "needs-confirmation" and "already went out this week" in (
        refused.reason or ""
    )
    assert _send(engine, settings, later, again=True) == ["afternoon"]


def test_the_scheduler_never_sends_two_issues_in_one_iso_week(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    _import_at(engine, tmp_path, {"monday-early": WEDNESDAY - timedelta(days=2, hours=5)})
    assert _send(engine, settings, WEDNESDAY - timedelta(days=2)) == ["monday-early"]
    _import_at(engine, tmp_path, {"tuesday": WEDNESDAY - timedelta(days=1)})
    result = weekly_job(
        settings, engine=engine, transport=MemoryTransport(), now=WEDNESDAY, scheduled=True
    )
    assert result.outcome == "already-this-week"
    with Session(engine) as session:
        assert len(session.exec(select(Issue)).all()) == 1  # no stale draft left behind
    # The next week's scheduled run features it.
    assert _send(engine, settings, WEDNESDAY + timedelta(days=5), scheduled=True) == ["tuesday"]


def test_nothing_new_names_the_window(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    berlin = settings.model_copy(update={"timezone": "Europe/Berlin"})
    monday = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    first = weekly_job(berlin, engine=engine, transport=MemoryTransport(), now=monday)
    assert first.outcome == "nothing-new"
    assert "no comparison published between 2026-11-02 09:00 Europe/Berlin" in first.summary()
    _import_at(engine, tmp_path, {"one": monday - timedelta(days=1)})
    assert _send(engine, berlin, monday) == ["one"]
    again = weekly_job(berlin, engine=engine, transport=MemoryTransport(), now=monday)
    assert again.outcome == "nothing-new"
    assert again.summary().startswith(
        "nothing new since issue #1, frozen 2026-11-16 09:00 Europe/Berlin"
    )
    with Session(engine) as session:
        assert len(session.exec(select(Issue)).all()) == 1


def test_cli_send_with_nothing_new_exits_zero(digest_cli: DigestCLI) -> None:
    result = digest_cli("send", "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing new" in result.stdout and "DIGEST_MAX_AGE_DAYS=14" in result.stdout


def test_dst_the_max_age_counts_local_days(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    # Europe/Berlin leaves summer time on Sunday 25 October 2026: the 14 local days
    # before Monday 2 November 09:00 CET begin Monday 19 October 09:00 CEST, 337 hours.
    berlin = settings.model_copy(update={"timezone": "Europe/Berlin"})
    cutoff = datetime(2026, 11, 2, 9, 0, tzinfo=BERLIN).astimezone(UTC)
    start = window_start(cutoff, berlin)
    assert start.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 10, 19, 9, 0)
    assert cutoff - start == timedelta(hours=337)
    _import_at(
        engine,
        tmp_path,
        {
            "on-the-edge": datetime(2026, 10, 19, 9, 0, tzinfo=BERLIN),
            "a-minute-before": datetime(2026, 10, 19, 8, 59, tzinfo=BERLIN),
            "sunday-of-the-change": datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN),
        },
    )
    assert _selected(engine, berlin, cutoff) == ["sunday-of-the-change", "on-the-edge"]
    # And in spring: 29 March 2026, 335 hours.
    spring = datetime(2026, 4, 6, 9, 0, tzinfo=BERLIN).astimezone(UTC)
    assert spring - window_start(spring, berlin) == timedelta(hours=335)


def test_newest_first_full_cards_then_links(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    three = settings.model_copy(update={"full_cards": 3})
    count, _emails = seed_store(engine, three, tmp_path)
    _, end = window(WEEK, three.tz)
    with Session(engine) as session:
        selection = select_comparisons(session, end, three)
        times = [c.published_at for c in selection.all]
        assert len(selection.full) == 3 and len(selection.links) == count - 3
    assert times == sorted(times, reverse=True)
    newest_title = sample_items()[-1]["title"]  # dated() makes the last item the newest
    assert selection.full[0].title == newest_title


def test_a_comparison_is_featured_once_and_a_scrapped_draft_gives_it_back(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    _import_at(engine, tmp_path, {"one": WEDNESDAY - timedelta(days=1)})
    with session_scope(engine) as session:
        draft = freeze_next(session, settings, now=WEDNESDAY).issue
        assert draft is not None
        draft.state = IssueState.CANCELLED  # never started: nobody got it
        session.add(draft)
    assert _selected(engine, settings, WEDNESDAY) == ["one"]
    assert _send(engine, settings, WEDNESDAY) == ["one"]
    assert _selected(engine, settings, WEDNESDAY + timedelta(days=7)) == []
    # Re-importing it with a new date does not feature it again either.
    _import_at(engine, tmp_path, {"one": WEDNESDAY + timedelta(days=6)})
    assert _selected(engine, settings, WEDNESDAY + timedelta(days=7)) == []


def test_a_comparison_published_after_the_draft_froze_goes_to_the_next_issue(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    _import_at(engine, tmp_path, {"early": WEDNESDAY - timedelta(days=1)})
    with session_scope(engine) as session:
        draft = freeze_next(session, settings, now=WEDNESDAY).issue
        assert draft is not None and draft.number == 1
    _import_at(engine, tmp_path, {"late": WEDNESDAY + timedelta(hours=1)})
    assert _send(engine, settings, WEDNESDAY + timedelta(hours=2)) == ["early"]
    assert _send(engine, settings, WEDNESDAY + timedelta(days=7)) == ["late"]


def _race(engine: Engine, settings: Settings, now: datetime, n: int = 4) -> list[str]:
    """``n`` scheduled runs at once, released together by a barrier."""
    start = threading.Barrier(n)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(timeout=30)
            outcomes.append(
                weekly_job(
                    settings, engine=engine, transport=MemoryTransport(), now=now, scheduled=True
                ).outcome
            )
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return outcomes


def test_two_schedulers_at_once_freeze_one_issue(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    _import_at(engine, tmp_path, {"racy": WEDNESDAY - timedelta(hours=3)})
    outcomes = _race(engine, settings, WEDNESDAY)
    assert "sent" in outcomes
    with Session(engine) as session:
        issues = session.exec(select(Issue)).all()
    assert [(i.number, i.state) for i in issues] == [(1, "sent")]


@pytest.mark.postgres
def test_two_schedulers_at_once_freeze_one_issue_on_postgres(tmp_path: Path) -> None:
    from conftest import TEST_SECRET, throwaway_postgres

    from digest.store.engine import make_engine, migrate

    with throwaway_postgres() as url:
        settings = Settings(
            database_url=url, secret_key=TEST_SECRET, transport="memory", allow_unsafe_send=True
        )
        engine = make_engine(url)
        migrate(engine)
        try:
            _import_at(engine, tmp_path, {"racy": WEDNESDAY - timedelta(hours=3)})
            assert "sent" in _race(engine, settings, WEDNESDAY)
            with Session(engine) as session:
                issues = session.exec(select(Issue)).all()
            assert [(i.number, i.state) for i in issues] == [(1, "sent")]
        finally:
            engine.dispose()


@pytest.mark.parametrize("zone", ZONES)
def test_week_labels_follow_the_local_calendar(zone: str) -> None:
    tz = ZoneInfo(zone)
    weeks = [f"{y}-W{w:02d}" for y, w in [(2026, n) for n in range(1, 54)] + [(2027, 1)]]
    for this, nxt in pairwise(weeks):
        assert window(this, tz)[1] == window(nxt, tz)[0], (this, nxt)
    sunday_night = datetime(2026, 11, 15, 23, 30, tzinfo=tz)
    assert week_of(sunday_night, tz) == "2026-W46"
    assert week_of(sunday_night + timedelta(hours=1), tz) == "2026-W47"


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
