"""scheduler.py: the cron line and time zone decide the next run; a repeated tick sends
nobody anything twice."""

from __future__ import annotations

import importlib.util
import mailbox
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from store_support import REPO, sample_emails, seed_store

from digest.core.settings import Settings
from digest.exceptions import ConfigError
from digest.jobs.status import issue_status
from digest.jobs.weekly import current_week

pytestmark = pytest.mark.clock  # the cron slot and the weekly job


def _load_scheduler() -> ModuleType:
    # scheduler.py is a top-level script, not part of a package.
    if "scheduler" in sys.modules:
        return sys.modules["scheduler"]
    spec = importlib.util.spec_from_file_location("scheduler", REPO / "scheduler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scheduler"] = module
    spec.loader.exec_module(module)
    return module


scheduler = _load_scheduler()
WEDNESDAY = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


def _next(cron: str, zone: str = "UTC", now: datetime = WEDNESDAY) -> datetime:
    fire = scheduler.next_fire_time(Settings(send_cron=cron, timezone=zone), now)
    assert fire is not None
    return fire.astimezone(UTC)


def test_default_is_monday_nine() -> None:
    fire = scheduler.next_fire_time(Settings(), WEDNESDAY)
    assert fire is not None
    assert fire.astimezone(UTC) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert fire.astimezone(UTC).strftime("%A") == "Monday"


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 9 * * mon", datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
        # Crontab numbering (0/7 = Sunday, 1 = Monday), which APScheduler alone gets wrong.
        ("0 9 * * 1", datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
        ("0 9 * * 0", datetime(2026, 11, 22, 9, 0, tzinfo=UTC)),
        ("0 9 * * 7", datetime(2026, 11, 22, 9, 0, tzinfo=UTC)),
        ("30 6 * * 1-5", datetime(2026, 11, 19, 6, 30, tzinfo=UTC)),
        ("15 7 * * 5,6", datetime(2026, 11, 20, 7, 15, tzinfo=UTC)),
        ("0 18 * * */2", datetime(2026, 11, 19, 18, 0, tzinfo=UTC)),  # sun,tue,thu,sat
        ("0 8 1 * *", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
    ],
)
def test_next_fire_time_follows_the_cron_line(cron: str, expected: datetime) -> None:
    assert _next(cron) == expected


def test_next_fire_time_is_in_the_configured_zone() -> None:
    # 09:00 on Monday in Auckland (NZDT, +13) is 20:00 UTC on Sunday.
    assert _next("0 9 * * mon", "Pacific/Auckland") == datetime(2026, 11, 22, 20, 0, tzinfo=UTC)
    # 09:00 in Los Angeles (PST, -8) is 17:00 UTC.
    assert _next("0 9 * * mon", "America/Los_Angeles") == datetime(2026, 11, 23, 17, 0, tzinfo=UTC)


def test_next_fire_time_across_dst() -> None:
    la = "America/Los_Angeles"
    before = datetime(2026, 2, 25, tzinfo=UTC)
    after = datetime(2026, 3, 3, tzinfo=UTC)
    assert _next("0 9 * * mon", la, before) == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # PST
    assert _next("0 9 * * mon", la, after) == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)  # PDT
    fire = scheduler.next_fire_time(Settings(timezone=la), after)
    assert fire is not None
    assert fire.astimezone(ZoneInfo(la)).hour == 9


@pytest.mark.parametrize(
    "cron", ["every monday", "0 9 * *", "0 9 * * 8", "61 9 * * mon", "0 9 * * mon 2026"]
)
def test_bad_cron_line_is_a_config_error(cron: str) -> None:
    with pytest.raises(ConfigError, match="DIGEST_SEND_CRON"):
        scheduler.build_scheduler(Settings(send_cron=cron))


def test_job_is_coalesced_single_instance_with_grace() -> None:
    settings = Settings(send_cron="0 9 * * 1", timezone="Europe/Berlin", misfire_grace_seconds=900)
    sched = scheduler.build_scheduler(settings)
    job = sched.get_job(scheduler.JOB_ID)
    assert job.func is scheduler.run_weekly_job
    assert job.args == (settings,)
    assert job.coalesce is True
    assert job.max_instances == 1
    assert job.misfire_grace_time == 900
    assert str(job.trigger.timezone) == "Europe/Berlin"
    # The minute's look at the review window and late approvals, never two at once.
    tick = sched.get_job(scheduler.TICK_ID)
    assert tick.func is scheduler.run_tick and tick.max_instances == 1 and tick.coalesce
    assert tick.trigger.interval.total_seconds() == scheduler.TICK_SECONDS
    assert {j.id for j in sched.get_jobs()} == {scheduler.JOB_ID, scheduler.TICK_ID}
    assert not sched.running


def test_two_ticks_in_one_week_send_once(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    maildir = settings.model_copy(update={"transport": "maildir"})
    week = current_week(maildir)
    # The job sends the current week's issue: its window is the seven days before Monday.
    seed_store(engine, maildir, tmp_path, week=week)
    sched = scheduler.build_scheduler(maildir)
    job, tick = sched.get_job(scheduler.JOB_ID), sched.get_job(scheduler.TICK_ID)

    job.func(*job.args)
    tick.func(*tick.args)
    job.func(*job.args)

    box = mailbox.Maildir(maildir.outbox, create=False)
    assert len(box) == len(sample_emails())
    info = issue_status(engine, week)
    assert info is not None
    assert info["state"] == "sent" and info["counts"]["sent"] == len(sample_emails())
