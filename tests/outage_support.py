"""Shared pieces of the database-outage tests: a store on a private PostgreSQL cluster
(or a SQLite file), ``digest`` run as a real subprocess against an aiosmtpd server, and
the figures the closing notes of issues 24 and 29 ask for (sent, duplicates, time from
the database being back to the next message).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cli_support import settings_env
from conftest import rig_settings
from smtp_faults import FaultHandler
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.store.engine import make_engine, migrate

DIGEST = Path(sys.executable).parent / "digest"
#: What "no traceback in any output" looks for.
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "')


def store_settings(url: str, tmp: Path) -> Settings:
    return rig_settings(tmp, database_url=url)


@contextmanager
def migrated(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def send_env(settings: Settings, smtp_host: str, smtp_port: int, **extra: str) -> dict[str, str]:
    """The environment of a real ``digest`` process sending through the test's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(settings_env(settings))
    env.update(
        {
            "DIGEST_TRANSPORT": "smtp",
            "DIGEST_SMTP_HOST": smtp_host,
            "DIGEST_SMTP_PORT": str(smtp_port),
            "DIGEST_RETRY_BASE_SECONDS": "0.05",
            "DIGEST_RETRY_MAX_SECONDS": "0.2",
            **extra,
        }
    )
    return env


@dataclass
class Run:
    """A ``digest`` subprocess with its combined output in a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def wait(self, timeout: float = 300) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        return code, self.log.read_text(errors="replace")


def run_digest(args: list[str], env: dict[str, str], cwd: Path, name: str) -> Run:
    log = cwd / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DIGEST), *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
        )
    return Run(proc, log)


def has_traceback(text: str) -> bool:
    return any(mark in text for mark in TRACEBACK_MARKS)


@dataclass
class Outage:
    """Takes the database away once the SMTP server has taken ``after`` messages;
    records when it went and when it was back, and what was delivered meanwhile."""

    handler: FaultHandler
    after: int
    take_away: Callable[[], float]
    went_at: float = 0.0
    back_at: float = 0.0
    delivered_before: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while self.handler.total < self.after:
                if time.monotonic() > deadline:
                    raise AssertionError("the send never reached the outage point")
                time.sleep(0.005)
            self.delivered_before = self.handler.total
            self.went_at = time.monotonic()
            self.back_at = self.take_away()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def start(self) -> Outage:
        self._thread = threading.Thread(target=self._run, name="outage", daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join(timeout=180)
        if self.error is not None:
            raise self.error

    def resumed_after(self) -> float | None:
        """Seconds from the database being back to the next message delivered."""
        later = [t for t in self.handler.delivered_at if t >= self.back_at]
        return min(later) - self.back_at if later else None


def duplicates(handler: FaultHandler) -> int:
    return sum(n - 1 for n in handler.copies().values())


def figure(name: str, **values: object) -> None:
    """A measured figure, printed for ``pytest -s`` (the closing note quotes them)."""
    shown = ", ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"\nFIGURE {name}: {shown}", flush=True)


def assert_stopped_in_one_line(code: int, output: str) -> None:
    """Exit 3, no traceback, and one line saying the database is why and that
    ``digest resume`` continues."""
    assert code == 3, output
    assert not has_traceback(output), output
    said = [line for line in output.splitlines() if "database" in line and "resume" in line]
    assert len(said) == 1, output


def assert_everyone_once(handler: FaultHandler, emails: list[str], duplicates_at_most: int) -> None:
    """Every reader got the issue; at most ``duplicates_at_most`` second copies, each
    with the first copy's Message-ID."""
    copies = handler.copies()
    assert set(copies) == set(emails), "somebody was missed"
    assert duplicates(handler) <= duplicates_at_most, duplicates(handler)
    for email, n in copies.items():
        if n > 1:
            assert len(handler.message_ids(email)) == 1, email
