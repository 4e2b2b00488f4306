"""The deployment examples: the systemd units pass ``systemd-analyze verify`` with
their paths pointed at this checkout, and the Dockerfile builds and runs the demo where
a Docker engine answers (skipped, with the reason, where none does)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from store_support import REPO, sample_emails

UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))


def test_both_services_have_units() -> None:
    assert {u.name for u in UNITS} == {"digest-web.service", "digest-scheduler.service"}
    web, scheduler = (u.read_text(encoding="utf-8") for u in sorted(UNITS, reverse=True))
    assert "digest serve" in web and "digest init" in web
    assert "scheduler.py" in scheduler
    for text in (web, scheduler):
        for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="):
            assert hardening in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_units_verify(tmp_path: Path) -> None:
    digest = REPO / ".venv" / "bin" / "digest"
    if not digest.exists():
        pytest.skip(f"no console script at {digest} (run make venv)")
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8")
        text = text.replace("/opt/digest/.venv", str(REPO / ".venv"))
        text = text.replace("/opt/digest/scheduler.py", str(REPO / "scheduler.py"))
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def _docker_answers() -> str | None:
    """None when a Docker engine answers, else why the Docker test cannot run here."""
    if shutil.which("docker") is None:
        return "no docker command: the Dockerfile is untested on this machine"
    info = subprocess.run(
        ["docker", "info"], capture_output=True, text=True, timeout=60, check=False
    )
    if info.returncode != 0:
        return "`docker info` fails (no Docker engine): the Dockerfile is untested here"
    return None


@pytest.mark.slow
def test_the_image_builds_and_runs_the_demo() -> None:
    reason = _docker_answers()
    if reason is not None:
        pytest.skip(reason)
    tag = f"weekly-digest-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(REPO)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        run = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "digest", "demo"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"{len(sample_emails())} sent" in run.stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
