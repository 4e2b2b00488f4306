"""Running the real ``digest`` Typer app in-process, configured only by environment.

The CLI reads its configuration through :func:`digest.core.settings.get_settings`, which is
cached per process; :class:`DigestCLI` clears that cache around every call so each
invocation sees exactly the environment it was given, as a fresh process would.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from digest.cli import app
from digest.core.settings import Settings, get_settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The DIGEST_* variables that reproduce ``settings`` (the fields tests vary)."""
    env = {
        "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_OUTBOX": str(settings.outbox),
        "DIGEST_TRANSPORT": "maildir" if settings.transport == "memory" else settings.transport,
        "DIGEST_BASE_URL": settings.base_url,
        "DIGEST_FROM": settings.from_address,
        "DIGEST_TIMEZONE": settings.timezone,
        "DIGEST_SMTP_HOST": settings.smtp_host,
        "DIGEST_SMTP_PORT": str(settings.smtp_port),
        "DIGEST_POSTAL_ADDRESS": settings.postal_address,
        "DIGEST_ALLOW_UNSAFE_SEND": str(settings.allow_unsafe_send).lower(),
        "DIGEST_PREFLIGHT_HEALTH_TIMEOUT": str(settings.preflight_health_timeout),
    }
    if settings.secret_key is not None:
        env["DIGEST_SECRET_KEY"] = settings.secret_key.get_secret_value()
    return env


@dataclass
class DigestCLI:
    """``cli("import", "x.json")`` → click Result; ``env`` is the process environment."""

    env: dict[str, str]
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(self, *args: str | Path, stdin: str | None = None, **extra_env: str) -> Result:
        # Unset every DIGEST_* the outer process has, so nothing leaks into the test.
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DIGEST_")}
        env.update(self.env)
        env.update(extra_env)
        get_settings.cache_clear()
        try:
            return self.runner.invoke(app, [str(a) for a in args], env=env, input=stdin)
        finally:
            get_settings.cache_clear()

    def ok(self, *args: str | Path, **extra_env: str) -> Result:
        """Run and insist on exit status 0."""
        result = self(*args, **extra_env)
        assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
        return result

    def json(self, *args: str | Path, **extra_env: str) -> Any:
        return json.loads(self.ok(*args, **extra_env).stdout)


@pytest.fixture
def digest_cli(settings: Settings) -> DigestCLI:
    """The ``digest`` CLI on the test's settings (SQLite in tmp_path, Maildir outbox)."""
    return DigestCLI(env=settings_env(settings))
