"""``digest preview``: the files a subscriber would receive, written to a folder."""

from __future__ import annotations

import logging
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy.engine import Engine

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import DigestError
from digest.issue.freeze import issue_message
from digest.jobs.schedule import prepare_draft
from digest.store.engine import session_scope

logger = logging.getLogger(__name__)

SAMPLE_RECIPIENT = Recipient(subscriber_id=0, email="reader@example.com", name="Sample Reader")


def write_preview(
    engine: Engine,
    settings: Settings,
    week: str | None,
    out_dir: Path,
    *,
    number: int | None = None,
    actor: str = "cli",
) -> list[Path] | None:
    """Write digest.html/.txt/.eml of the issue an editor works on (see
    :func:`digest.jobs.schedule.prepare_draft`: frozen as a draft when there is
    none); None when nothing is new.

    The three files come from the one .eml, so they are exactly what is sent.
    """
    with session_scope(engine) as session:
        issue = prepare_draft(session, settings, number=number, week=week, actor=actor).issue
        if issue is None:
            return None
        message = issue_message(issue, settings)
    raw = message.as_bytes(SAMPLE_RECIPIENT)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    if text_part is None or html_part is None:
        raise DigestError("the built message lacks a text or HTML part")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {
            "digest.html": html_part.get_content(),
            "digest.txt": text_part.get_content(),
        }
        paths = []
        for name, content in files.items():
            path = out_dir / name
            path.write_text(content, encoding="utf-8")
            paths.append(path)
        eml = out_dir / "digest.eml"
        eml.write_bytes(raw)
        paths.append(eml)
    except OSError as exc:
        raise DigestError(f"cannot write preview to {out_dir}: {exc}") from exc
    return paths
