"""A real console for browser tests and the README's screenshots: ``digest serve`` on
a free loopback port over a seeded SQLite store, mail through an aiosmtpd server, and
headless Debian Chromium driven by Playwright (never ``playwright install``).

``chromium()`` skips the calling test with the reason when Chromium or Playwright is
missing; ``axe_source()`` likewise for axe-core (``make test`` installs it with the
email checks' npm packages, tests/node/install.sh).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from email_support import CHROMIUM as CHROMIUM_PATH
from email_support import CHROMIUM_ARGS, NODE_MODULES
from servers import RecordingSMTPServer, digest_serve, free_port
from store_support import SAMPLE_CSV, seed_store

from digest.accounts.service import add_user
from digest.core.settings import Settings
from digest.jobs.weekly import current_week
from digest.store.engine import make_engine, migrate, session_scope

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = str(CHROMIUM_PATH)
AXE_PLACES = (
    NODE_MODULES / "axe-core" / "axe.min.js",
    Path("/usr/lib/node_modules/axe-core/axe.min.js"),
    Path("/usr/local/lib/node_modules/axe-core/axe.min.js"),
)
SECRET = "console-browser-secret-0123456789abcdef"
EDITOR, OPERATOR = "editor@example.com", "operator@example.com"
PASSWORD = "a long enough password for the rig"


def chromium() -> Any:
    """A Playwright ``Playwright`` object's chromium launcher, or skip."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is missing (pip install playwright)")
    return sync_playwright


@contextmanager
def browser() -> Iterator[Any]:
    with chromium()() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def chrome() -> Iterator[Any]:
    """A headless Chromium for the test (skips when it cannot be had)."""
    with browser() as launched:
        yield launched


def axe_source() -> str:
    for place in AXE_PLACES:
        if place.exists():
            return place.read_text(encoding="utf-8")
    npm = shutil.which("npm")
    if npm:
        root = subprocess.run(
            [npm, "root", "-g"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
        place = Path(root) / "axe-core" / "axe.min.js"
        if root and place.exists():
            return place.read_text(encoding="utf-8")
    pytest.skip("axe-core is missing (bash tests/node/install.sh installs it)")


def extra_subscribers(path: Path, count: int) -> Path:
    """The sample subscribers plus ``count`` more, as one CSV."""
    with SAMPLE_CSV.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows += [{"email": f"reader{i:04d}@example.com", "name": f"Reader {i}"} for i in range(count)]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["email", "name"])
        writer.writeheader()
        writer.writerows({"email": r["email"], "name": r.get("name", "")} for r in rows)
    return path


@dataclass
class Rig:
    base: str
    smtp: RecordingSMTPServer
    env: dict[str, str]
    settings: Settings
    tmp: Path

    def to(self, address: str) -> list[Any]:
        return [m for m in self.smtp.messages if address in m.rcpt_tos]


def rig_env(tmp: Path, smtp: RecordingSMTPServer, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATABASE_URL": f"sqlite:///{tmp / 'digest.db'}",
            "DIGEST_TRANSPORT": "smtp",
            "DIGEST_SMTP_HOST": smtp.host,
            "DIGEST_SMTP_PORT": str(smtp.port),
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_BASE_URL": f"http://127.0.0.1:{port}",
            "DIGEST_FROM": "Weekly AI Tool Verdicts <digest@verdicts.test>",
            "DIGEST_TIMEZONE": "Europe/Berlin",
            "DIGEST_OUTBOX": str(tmp / "outbox"),
            # A loopback rig: http links and a .test sender are warnings, not errors;
            # the preflight's health probe reaches the `digest serve` started here.
            "DIGEST_ALLOW_UNSAFE_SEND": "true",
            "DIGEST_PREFLIGHT_HEALTH_TIMEOUT": "5",
            **extra,
        }
    )
    return env


def seed(settings: Settings, tmp: Path, readers: int) -> None:
    """Sample comparisons (new this week), subscribers and the two accounts."""
    from subscribers.service import import_csv

    engine = make_engine(settings.database_url)
    migrate(engine)
    seed_store(engine, settings, tmp, week=current_week(settings))
    if readers:
        import_csv(
            engine, extra_subscribers(tmp / "more.csv", readers), source="sign-up sheet, meetup"
        )
    with session_scope(engine) as session:
        add_user(session, EDITOR, "editor", PASSWORD)
        add_user(session, OPERATOR, "operator", PASSWORD)
    engine.dispose()


@contextmanager
def console_rig(
    tmp: Path, smtp: RecordingSMTPServer, *, readers: int = 0, **env_extra: str
) -> Iterator[Rig]:
    port = free_port()
    env = rig_env(tmp, smtp, port, **env_extra)
    settings = Settings(
        database_url=env["DIGEST_DATABASE_URL"], secret_key=SECRET, timezone="Europe/Berlin"
    )
    seed(settings, tmp, readers)
    with digest_serve(env, tmp, port) as base:
        yield Rig(base, smtp, env, settings, tmp)


def log_in(page: Any, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/console")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/console")


def axe_violations(page: Any, source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as loaded."""
    page.add_script_tag(content=source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
