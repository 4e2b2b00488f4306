"""Preflight for every copy: words that name a comparison the copy does not carry.

The issue's subject, intro and note are written about the whole issue; a reader of two
topics gets a copy with two comparisons. When a copy's words name a comparison (its
title, or a tool no carried comparison has) that the copy leaves out, the reader is
told about something they will not find: a warning, with what to change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from digest.core.notes import note_text
from digest.core.wording import plural
from digest.editorial.preflight import OK, WARNING, PreflightReport
from digest.readers.previews import Copy
from digest.store.models import Comparison

logger = logging.getLogger(__name__)

CHECK = "every copy"
MIN_NAME_CHARS = 3


def _mentions(text: str, name: str) -> bool:
    if len(name) < MIN_NAME_CHARS:
        return False
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def named_but_missing(copy: Copy, everything: Sequence[Comparison]) -> dict[str, list[str]]:
    """For each of the copy's words (subject, preheader, intro, note): the titles of the
    comparisons they name that the copy does not carry."""
    carried = {c.slug for c in copy.comparisons}
    carried_tools = {t.name.lower() for c in copy.comparisons for t in c.tools}
    missing = [c for c in everything if c.slug not in carried]
    words = {
        "subject": copy.words.subject,
        "preheader": copy.words.preheader,
        "intro": copy.words.intro or "",
        "note": note_text(copy.words.note),
    }
    found: dict[str, list[str]] = {}
    for field, text in words.items():
        named = [
            c.title
            for c in missing
            if _mentions(text, c.title)
            or any(_mentions(text, t.name) for t in c.tools if t.name.lower() not in carried_tools)
        ]
        if named:
            found[field] = named
    return found


def check_copies(
    report: PreflightReport, copies: Sequence[Copy], everything: Sequence[Comparison]
) -> None:
    """Add one warning per copy whose words name what it does not carry (or one OK)."""
    warned = 0
    for copy in copies:
        if copy.skipped or not copy.readers:
            continue
        for field, titles in named_but_missing(copy, everything).items():
            warned += 1
            report.add(
                CHECK,
                WARNING,
                f"{copy.label} ({plural(copy.readers, 'reader')}): the {field} names "
                f"{', '.join(titles)}, which that copy does not carry; give it its own "
                f"{field} in “Every copy”",
            )
    if not warned:
        shown = [c for c in copies if not c.skipped and c.readers]
        report.add(
            CHECK, OK, f"{plural(len(shown), 'copy', 'copies')}: each names only what it carries"
        )
