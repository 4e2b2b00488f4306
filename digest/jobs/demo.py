"""``digest demo``: the weekly job end to end on bundled sample data, and work left for
an editor.

A fresh SQLite database and Maildir outbox under ``demo-data/`` (``DIGEST_DATABASE_URL``
and ``DIGEST_OUTBOX`` override them), the sample comparisons dated into the last six
days, the sample subscribers, a demo editor and operator. Issue #1 goes out with the
older samples; the newest arrive after it, so no issue features them yet and the
console opens with issue #2 to freeze and review. The summary says where to look and
prints the one command that serves the console over the same database, outbox and
secret (its links follow the port it serves, digest/cli/server.py).
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
#: The port of the console command the demo prints.
DEMO_PORT = 8000


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
    if "base_url" not in base.model_fields_set:
        # The console command it prints serves there: issue #1's links reach it.
        overrides["base_url"] = f"http://127.0.0.1:{DEMO_PORT}"
    return base.model_copy(update=overrides)


#: How many of the newest samples arrive after issue #1 went out (the editor's work).
LATER = 3


def dated_samples(now: datetime, target: Path, later: Path | None = None) -> Path:
    """The sample comparisons with publication times spread over the six days before
    ``now``: all new, all within any sensible DIGEST_MAX_AGE_DAYS. With ``later``, the
    newest :data:`LATER` go to that file instead, to arrive after issue #1."""
    items = json.loads((SAMPLE_DIR / "comparisons.json").read_text(encoding="utf-8"))
    span = timedelta(days=6) / (len(items) + 1)
    for index, item in enumerate(items):
        item["published_at"] = (now - span * (index + 1) - timedelta(minutes=7)).isoformat()
    if later is not None:
        later.write_text(json.dumps(items[:LATER], indent=2), encoding="utf-8")
        items = items[LATER:]
    target.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return target


DEMO_EDITOR = "editor@demo.example"
DEMO_OPERATOR = "operator@demo.example"


def _demo_account(engine: Engine, email: str, role: Role) -> str:
    """A console account for trying the console; returns its one-run password."""
    password = secrets.token_urlsafe(12)
    with session_scope(engine) as session:
        add_user(session, email, role.value, password)
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


def serve_command(settings: Settings, port: int = DEMO_PORT) -> str:
    """The exact command that serves the console over what the demo made: the same
    database, outbox, transport and (demo) secret. Its links follow ``--port``."""
    env = [
        "DIGEST_DEMO=true",
        f"DIGEST_DATABASE_URL={shlex.quote(settings.database_url)}",
        f"DIGEST_OUTBOX={shlex.quote(str(settings.outbox))}",
        "DIGEST_TRANSPORT=maildir",
    ]
    return f"{' '.join(env)} {digest_command()} serve --port {port}"


def run_demo(base: Settings) -> str:
    settings = demo_settings(base)
    _fresh_sqlite(settings.database_url)
    if settings.outbox.exists():
        shutil.rmtree(settings.outbox)
    work = DEMO_DIR if "outbox" not in base.model_fields_set else settings.outbox.parent
    work.mkdir(parents=True, exist_ok=True)

    engine = open_store(settings)
    later = work / "later-comparisons.json"
    samples = dated_samples(utcnow(), work / "sample-comparisons.json", later)
    imported = import_comparisons(engine, [samples], imported_by="demo")
    people = import_csv(engine, SAMPLE_DIR / "subscribers.csv", source="demo sample")
    editor = _demo_account(engine, DEMO_EDITOR, Role.EDITOR)
    operator = _demo_account(engine, DEMO_OPERATOR, Role.OPERATOR)
    result = weekly_job(settings, engine=engine, actor="demo")
    preview_dir = work / "preview"
    write_preview(engine, settings, None, preview_dir, number=result.number)
    # The newest samples arrive after issue #1 went out: the next issue's material.
    arrived = import_comparisons(engine, [later], imported_by="demo")

    box = mailbox.Maildir(settings.outbox, create=False)
    in_box = len(box)
    if result.report is None:
        raise DigestError(f"demo did not send: {result.summary()}")
    waiting = arrived.created
    return "\n".join(
        [
            f"demo: {plural(people.added, 'subscriber')}, {result.label} sent with "
            f"{imported.created} of the {imported.created + waiting} sample comparisons",
            result.summary(),
            f"outbox (Maildir, {plural(in_box, 'message')}): {settings.outbox.resolve()}",
            f"   read it with: mutt -f {settings.outbox}   (one file per message in new/)",
            f"preview: {(preview_dir / 'digest.html').resolve()} (and digest.txt, digest.eml)",
            f"database: {settings.database_url}",
            f"waiting: {plural(waiting, 'newer comparison')} no issue featured yet, "
            f"for issue #{(result.number or 0) + 1}",
            f"next: DIGEST_DATABASE_URL={shlex.quote(settings.database_url)} "
            f"{digest_command()} status --json",
            f"console: {serve_command(settings)}, then open http://127.0.0.1:{DEMO_PORT}/console",
            f"   log in as {DEMO_EDITOR} with password {editor} (a demo editor)",
            f"   or as {DEMO_OPERATOR} with password {operator} (a demo operator: also sends)",
            "   then press “Freeze the next issue as a draft”: issue "
            f"#{(result.number or 0) + 1} with the {plural(waiting, 'newer comparison')}, "
            "to review, edit, test and approve",
            f"   mail the console sends (test copies, sign-up confirmations, sends) lands in "
            f"{settings.outbox}",
        ]
    )
