"""``DIGEST_LOG_FORMAT=json``: one JSON object per line from the CLI, ``digest serve``
(uvicorn's access log included) and ``scheduler.py``."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import DIGEST, digest_serve, free_port
from store_support import REPO

from digest.core.settings import Settings
from digest.ops.logging_setup import JsonFormatter, configure_logging


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no log output"
    return [json.loads(line) for line in lines]  # every line is one JSON object


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.db'}",
            "DIGEST_SECRET_KEY": "logging-test-secret-0123456789",
            "DIGEST_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


def test_the_json_formatter_keeps_fields_extras_and_the_exception() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.getLogger("digest.test").makeRecord(
            "digest.test",
            logging.ERROR,
            __file__,
            1,
            "issue %s: %d failed",
            ("2026-W47", 3),
            sys.exc_info(),
            extra={"issue_week": "2026-W47", "detail": object()},
        )
    payload = json.loads(JsonFormatter().format(record))
    assert payload["level"] == "ERROR" and payload["logger"] == "digest.test"
    assert payload["message"] == "issue 2026-W47: 3 failed"
    assert payload["issue_week"] == "2026-W47"
    assert payload["detail"].startswith("<object object")
    assert "ValueError: bad value" in payload["exception"]
    assert payload["time"].endswith("+00:00")


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_cli_logs_json_lines(tmp_path: Path) -> None:
    done = _run([DIGEST, "init"], _env(tmp_path, DIGEST_LOG_LEVEL="info"))
    assert done.returncode == 0, done.stderr
    records = _json_lines(done.stderr)
    assert any(r["logger"].startswith("alembic") for r in records)
    assert "database ready" in done.stdout  # the command's own output stays plain


@pytest.mark.slow
def test_a_bad_log_format_is_refused_with_its_name(tmp_path: Path) -> None:
    done = _run([DIGEST, "init"], _env(tmp_path, DIGEST_LOG_FORMAT="xml"))
    assert done.returncode == 1 and "log_format" in done.stderr


@pytest.mark.slow
def test_serve_writes_json_access_logs(tmp_path: Path) -> None:
    with digest_serve(_env(tmp_path), tmp_path, free_port()) as base:
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    records = _json_lines((tmp_path / "serve.log").read_text())
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any(r.get("path") == "/readyz" and r.get("status") == 200 for r in access), access


@pytest.mark.slow
def test_scheduler_logs_json(tmp_path: Path) -> None:
    done = _run(
        [sys.executable, str(REPO / "scheduler.py")],
        _env(tmp_path, DIGEST_SEND_CRON="not a cron line"),
    )
    assert done.returncode == 1
    (record,) = _json_lines(done.stderr)
    assert record["level"] == "ERROR" and record["logger"] == "digest.scheduler"
    assert "DIGEST_SEND_CRON" in record["message"]


def test_the_log_follows_stderr_when_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """A process that swaps stderr (pytest's capture did, between tests) must not leave
    the log writing into the closed one: 'Logging error … I/O operation on closed
    file' filled the suite's output whenever Alembic logged after such a swap."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr(sys, "stderr", first)
        configure_logging(logging.INFO, settings)
        logging.getLogger("digest.test").info("one")
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("digest.test").info("two")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert second.getvalue().rstrip().endswith("digest.test: two")
