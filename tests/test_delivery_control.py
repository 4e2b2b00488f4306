"""Pause, resume and cancel while a send runs; status shows rate and ETA meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_support import DigestCLI
from smtp_faults import FaultHandler, FaultPlan, fault_smtp, seed_issue_store, smtp_settings
from sqlalchemy.engine import Engine
from store_support import WEEK

from digest.cli import app
from digest.core.settings import Settings
from digest.delivery.controls import cancel_issue, pause_issue, resume_issue
from digest.exceptions import IssueStateError
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job

SLOW = FaultPlan(rate_slow=1.0, slow_seconds=0.002)


def test_pause_mid_send_then_resume_sends_everyone_exactly_once(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 400)
    seen: dict[str, Any] = {}

    def pause_at(count: int) -> None:
        if count == 120:
            pause_issue(engine, WEEK)
        if count == 60:
            seen["status"] = issue_status(engine, WEEK)

    handler = FaultHandler(SLOW, on_delivered=pause_at)
    with fault_smtp(handler) as server:
        s = smtp_settings(settings, server, batch_size=50, smtp_connections=2)
        first = weekly_job(s, engine=engine, week=WEEK)
        assert first.report is not None and first.report.stopped == "issue is paused"
        info = issue_status(engine, WEEK)
        assert info is not None and info["state"] == "paused"
        # What the transport had in hand is finished and recorded; the rest goes back.
        assert 120 <= info["counts"]["sent"] <= 120 + 50
        assert info["counts"]["sent"] == handler.total
        assert info["counts"]["sending"] == 0
        # A paused issue stays paused for `send` and the scheduler.
        again = weekly_job(s, engine=engine, week=WEEK)
        assert again.outcome == "paused" and "digest resume" in again.summary()
        resume_issue(engine, WEEK)
        second = weekly_job(s, engine=engine, week=WEEK)
    assert second.report is not None and second.report.stopped is None
    assert set(handler.copies()) == set(emails)
    assert set(handler.copies().values()) == {1}
    status = seen["status"]
    assert status["state"] == "sending" and status["rate"] > 0
    assert status["eta_seconds"] is not None and status["remaining"] > 0


def test_cancel_mid_send_skips_the_rest(tmp_path: Path, settings: Settings, engine: Engine) -> None:
    seed_issue_store(engine, settings, tmp_path, 300)

    def cancel_at(count: int) -> None:
        if count == 80:
            cancel_issue(engine, WEEK)

    handler = FaultHandler(SLOW, on_delivered=cancel_at)
    with fault_smtp(handler) as server:
        s = smtp_settings(settings, server, batch_size=40, smtp_connections=2)
        result = weekly_job(s, engine=engine, week=WEEK)
        assert result.report is not None and result.report.stopped == "issue is cancelled"
        info = issue_status(engine, WEEK)
        assert info is not None and info["state"] == "cancelled"
        counts = info["counts"]
        assert counts["sent"] == handler.total and 80 <= counts["sent"] <= 80 + 40
        assert counts["skipped"] == 300 - counts["sent"]
        assert counts["queued"] == counts["retry"] == counts["sending"] == 0
        later = weekly_job(s, engine=engine, week=WEEK)
    assert later.outcome == "cancelled" and handler.total == counts["sent"]
    with pytest.raises(IssueStateError, match="cancelled"):
        resume_issue(engine, WEEK)


def test_control_commands_on_the_cli(
    tmp_path: Path, settings: Settings, engine: Engine, digest_cli: DigestCLI
) -> None:
    seed_issue_store(engine, settings, tmp_path, 5)
    assert digest_cli("pause").exit_code == 1  # no issue yet: a clear error
    digest_cli.ok("send", "--week", WEEK, "--dry-run")
    # Freeze the week's issue without sending, then drive it from the CLI.
    from digest.issue.freeze import freeze_issue
    from digest.store.engine import session_scope

    with session_scope(engine) as session:
        freeze_issue(session, WEEK, settings)
    paused = digest_cli.ok("pause", "--week", WEEK)
    assert "draft → paused" in paused.stdout
    sent = digest_cli("send", "--week", WEEK, "--yes")
    assert "paused" in sent.stdout
    resumed = digest_cli.ok("resume", "--week", WEEK)
    assert "paused → sending" in resumed.stdout and "5 sent" in resumed.stdout
    info = json.loads(digest_cli.ok("status", "--week", WEEK, "--json").stdout)
    assert info["state"] == "sent" and {"rate", "eta_seconds", "remaining"} <= set(info)
    refused = digest_cli("cancel", "--week", WEEK)
    assert refused.exit_code == 2 and "--yes" in refused.output
    late = digest_cli("cancel", "--week", WEEK, "--yes")
    assert late.exit_code == 1 and "is sent" in late.output


@pytest.mark.parametrize("command", ["pause", "resume", "cancel"])
def test_control_help_ends_with_an_example(command: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example: digest " + command in result.stdout
