"""``digest demo``: the weekly job end to end on bundled sample data.

A fresh SQLite database and Maildir outbox under ``demo-data/`` (``DIGEST_DATABASE_URL``
and ``DIGEST_OUTBOX`` override them), the sample comparisons dated into the last six days,
the sample subscribers, the weekly job, a preview, and a summary of where to look.
"""

from __future__ import annotations

import json
import logging
import mailbox
import os
import secrets
import shlex
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine, make_url

from digest.accounts.service import add_user
from digest.core.clock import utcnow
from digest.core.resources import resource_dir
from digest.core.settings import Settings
from digest.core.wording import plural
from digest.exceptions import DigestError
from digest.jobs.preview import write_preview
from digest.jobs.weekly import open_store, weekly_job
from digest.store.account_models import Role
from digest.store.engine import session_scope
from digest.store.importer import import_comparisons
from subscribers.service import import_csv

logger = logging.getLogger(__name__)

SAMPLE_DIR = resource_dir("sample")
DEMO_DIR = Path("demo-data")


def _fresh_sqlite(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(parsed.database)
        db.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)


def demo_settings(base: Settings) -> Settings:
    """The demo's settings: the user's, with demo-data/ locations unless they set theirs."""
    overrides: dict[str, object] = {"demo": True, "transport": "maildir"}
    if "database_url" not in base.model_fields_set:
        overrides["database_url"] = f"sqlite:///{DEMO_DIR / 'digest.db'}"
    if "outbox" not in base.model_fields_set:
        overrides["outbox"] = DEMO_DIR / "outbox"
    return base.model_copy(update=overrides)


def dated_samples(now: datetime, target: Path) -> Path:
    """The sample comparisons with publication times spread over the six days before
    ``now``: all new, all within any sensible DIGEST_MAX_AGE_DAYS."""
    items = json.loads((SAMPLE_DIR / "comparisons.json").read_text(encoding="utf-8"))
    span = timedelta(days=6) / (len(items) + 1)
    for index, item in enumerate(items):
        item["published_at"] = (now - span * (index + 1) - timedelta(minutes=7)).isoformat()
    target.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return target


DEMO_EDITOR = "editor@demo.example"


def _demo_editor(engine: Engine) -> str:
    """A console account for trying the editor's side; returns its one-run password."""
    password = secrets.token_urlsafe(12)
    with session_scope(engine) as session:
        add_user(session, DEMO_EDITOR, Role.EDITOR.value, password)
    return password


def digest_command(cwd: Path | None = None) -> str:
    """How to run ``digest`` again from ``cwd`` exactly as printed: plain ``digest`` when
    PATH finds this installation's script, else its path (``.venv/bin/digest`` after
    ``make demo``)."""
    script = Path(sys.executable).with_name("digest")
    found = shutil.which("digest")
    if found is not None and Path(found).resolve() == script.resolve():
        return "digest"
    here = (cwd or Path.cwd()).resolve()
    where = script.absolute()
    if where.is_relative_to(here):
        return shlex.quote(os.path.relpath(where, here))
    return shlex.quote(str(where))


def run_demo(base: Settings) -> str:
    settings = demo_settings(base)
    _fresh_sqlite(settings.database_url)
    if settings.outbox.exists():
        shutil.rmtree(settings.outbox)
    work = DEMO_DIR if "outbox" not in base.model_fields_set else settings.outbox.parent
    work.mkdir(parents=True, exist_ok=True)

    engine = open_store(settings)
    samples = dated_samples(utcnow(), work / "sample-comparisons.json")
    imported = import_comparisons(engine, [samples])
    people = import_csv(engine, SAMPLE_DIR / "subscribers.csv", source="demo sample")
    password = _demo_editor(engine)
    result = weekly_job(settings, engine=engine, actor="demo")
    preview_dir = work / "preview"
    write_preview(engine, settings, None, preview_dir, number=result.number)

    box = mailbox.Maildir(settings.outbox, create=False)
    in_box = len(box)
    if result.report is None:
        raise DigestError(f"demo did not send: {result.summary()}")
    return "\n".join(
        [
            f"demo: {plural(imported.created, 'comparison')}, "
            f"{plural(people.added, 'subscriber')}, {result.label}",
            result.summary(),
            f"outbox (Maildir, {plural(in_box, 'message')}): {settings.outbox.resolve()}",
            f"   read it with: mutt -f {settings.outbox}   (one file per message in new/)",
            f"preview: {(preview_dir / 'digest.html').resolve()} (and digest.txt, digest.eml)",
            f"database: {settings.database_url}",
            f"next: DIGEST_DATABASE_URL={shlex.quote(settings.database_url)} "
            f"{digest_command()} status --json",
            f"console: DIGEST_DEMO=true DIGEST_DATABASE_URL={shlex.quote(settings.database_url)} "
            f"{digest_command()} serve, then open http://127.0.0.1:8000/console",
            f"   log in as {DEMO_EDITOR} with password {password} (a demo editor)",
        ]
    )
