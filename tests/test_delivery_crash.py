"""kill -9 a real `digest send --yes` at random moments, resume it, count at the server.

Zero recipients missed; duplicates at most one in-flight batch per crash; a duplicate
carries the same Message-ID as the first copy.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import settings_env
from smtp_faults import FaultHandler, FaultPlan, fault_smtp, seed_issue_store
from sqlalchemy.engine import Engine
from store_support import WEEK

from digest.core.settings import Settings
from digest.jobs.status import issue_status

pytestmark = pytest.mark.slow

DIGEST = Path(sys.executable).parent / "digest"
BATCH = 20
CONNECTIONS = 2


def _env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(settings_env(settings))
    env.update(
        DIGEST_TRANSPORT="smtp",
        DIGEST_SMTP_HOST="127.0.0.1",
        DIGEST_SMTP_PORT=str(port),
        DIGEST_SMTP_CONNECTIONS=str(CONNECTIONS),
        DIGEST_BATCH_SIZE=str(BATCH),
        DIGEST_LEASE_SECONDS="2",
        DIGEST_RETRY_BASE_SECONDS="0.05",
        DIGEST_RETRY_MAX_SECONDS="0.2",
    )
    return env


def _wait_for(handler: FaultHandler, count: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if handler.total >= count:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def test_sigkill_at_random_points_then_resume_misses_nobody(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 500)
    rng = random.Random(4)
    handler = FaultHandler(FaultPlan(rate_slow=1.0, slow_seconds=0.003))
    crashes = 0
    with fault_smtp(handler) as server:
        env = _env(settings, server.port)
        command = [str(DIGEST), "send", "--week", WEEK, "--yes"]
        target = 0
        for _ in range(3):
            target += rng.randint(40, 130)
            # No pipes: nothing reads them, and an unread pipe is a leaked file.
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                if _wait_for(handler, target, proc):
                    # A random moment inside the next message or two.
                    time.sleep(rng.uniform(0, 0.01))
                    proc.send_signal(signal.SIGKILL)
                    crashes += 1
            finally:
                proc.wait(timeout=30)
        final = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
        assert final.returncode == 0, final.stderr.decode()
    assert crashes >= 2
    copies = handler.copies()
    assert set(copies) == set(emails), "somebody was missed"
    duplicates = sum(n - 1 for n in copies.values())
    assert duplicates <= BATCH * crashes
    for email, n in copies.items():
        if n > 1:
            assert len(handler.message_ids(email)) == 1, email
    info = issue_status(engine, WEEK)
    assert info is not None and info["state"] == "sent"
    assert info["counts"]["sent"] == len(emails)
