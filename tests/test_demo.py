"""``digest demo`` as a new user runs it: the installed console script in a fresh folder."""

from __future__ import annotations

import json
import mailbox
import os
import re
import subprocess
import sys
from collections import Counter
from email import message_from_bytes, policy
from email.utils import parseaddr
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from store_support import REPO, sample_emails

from digest.core.settings import Settings
from digest.issue.freeze import freeze_next, issue_rows
from digest.store.engine import make_engine
from digest.store.models import Comparison, Issue, IssueComparison

pytestmark = pytest.mark.slow

DIGEST = Path(sys.executable).with_name("digest")


def _run_demo(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    clean.update(env)
    return subprocess.run(
        [str(DIGEST), "demo"], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120
    )


def _recipients(outbox: Path) -> Counter[str]:
    box = mailbox.Maildir(outbox, create=False)
    found: Counter[str] = Counter()
    for key in box.iterkeys():
        msg = message_from_bytes(box.get_bytes(key), policy=policy.default)
        found[parseaddr(str(msg["To"]))[1]] += 1
    return found


@pytest.mark.skipif(not DIGEST.exists(), reason=f"console script not installed at {DIGEST}")
def test_demo_leaves_one_message_per_sample_subscriber(tmp_path: Path) -> None:
    outbox = tmp_path / "mail"
    db = tmp_path / "state" / "demo.db"
    env = {"DIGEST_DATABASE_URL": f"sqlite:///{db}", "DIGEST_OUTBOX": str(outbox)}

    first = _run_demo(tmp_path, **env)
    assert first.returncode == 0, first.stderr
    emails = sample_emails()
    assert _recipients(outbox) == Counter({e: 1 for e in emails})
    assert db.exists()
    summary = first.stdout
    assert f"{len(emails)} sent" in summary
    assert str(outbox.resolve()) in summary
    assert "preview" in summary and "database" in summary

    # Run again: a fresh database and outbox, still exactly one each.
    second = _run_demo(tmp_path, **env)
    assert second.returncode == 0, second.stderr
    assert _recipients(outbox) == Counter({e: 1 for e in emails})


@pytest.mark.skipif(not DIGEST.exists(), reason=f"console script not installed at {DIGEST}")
def test_demo_defaults_to_demo_data_in_the_working_folder(tmp_path: Path) -> None:
    result = _run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    base = tmp_path / "demo-data"
    assert (base / "digest.db").exists()
    assert sum(_recipients(base / "outbox").values()) == len(sample_emails())
    for name in ("digest.html", "digest.txt", "digest.eml"):
        assert (base / "preview" / name).stat().st_size > 0


@pytest.mark.skipif(not DIGEST.exists(), reason=f"console script not installed at {DIGEST}")
def test_demo_sends_the_older_samples_and_leaves_the_newest_for_the_editor(
    tmp_path: Path,
) -> None:
    result = _run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'demo-data' / 'digest.db'}")
    with Session(engine) as session:
        (issue,) = session.exec(select(Issue)).all()
        featured = set(
            session.exec(
                select(Comparison.slug)
                .join(IssueComparison, col(IssueComparison.comparison_id) == Comparison.id)
                .where(IssueComparison.issue_id == issue.id)
            ).all()
        )
        everything = session.exec(select(Comparison)).all()
        waiting = [c for c in everything if c.slug not in featured]
        assert issue.state == "sent" and len(featured) == 4 and len(waiting) == 3
        # The ones left over are the newest: what the next issue is made of.
        newest_sent = max(c.published_at for c in everything if c.slug in featured)
        assert all(c.published_at > newest_sent for c in waiting)
        assert {c.imported_by for c in everything} == {"demo"}
        # ... and the next issue can be frozen from them at once.
        frozen = freeze_next(session, Settings(database_url="sqlite://", demo=True))
        assert frozen.issue is not None and frozen.issue.number == 2
        assert {c.slug for c, _ in issue_rows(session, frozen.issue)} == {c.slug for c in waiting}
        session.rollback()
    engine.dispose()
    assert "waiting: 3 newer comparisons no issue featured yet, for issue #2" in result.stdout
    assert "Freeze the next issue as a draft" in result.stdout


def _normalised(lines: list[str]) -> list[str]:
    """Demo output with what differs between runs and machines spelled out: the week,
    timings, and where the folder and the console script are."""
    out = []
    for line in lines:
        line = re.sub(r"\d{4}-W\d{2}", "WEEK", line)
        line = re.sub(r"in \d+\.\d+s \(\d+/s\)", "in Ts (R/s)", line)
        line = re.sub(r"/\S*?/demo-data", "/…/demo-data", line)
        line = re.sub(r"\S*/bin/digest ", ".venv/bin/digest ", line)
        line = re.sub(r"with password \S+", "with password PASSWORD", line)
        out.append(line.rstrip())
    return out


def _readme_demo_output() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"imports the bundled sample.*?```\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README lost the demo output block"
    return block.group(1).splitlines()


@pytest.mark.skipif(not DIGEST.exists(), reason=f"console script not installed at {DIGEST}")
def test_demo_prints_what_the_readme_shows_and_its_next_command_works(tmp_path: Path) -> None:
    result = _run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert _normalised(printed) == _normalised(_readme_demo_output())

    (next_line,) = [line for line in printed if line.startswith("next: ")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    done = subprocess.run(
        ["/bin/sh", "-c", next_line.removeprefix("next: ")],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["state"] == "sent"
    assert status["counts"]["sent"] == len(sample_emails())
