"""The automatic subject and preheader of an issue (an editor may replace either).

The subject names the lead matchup's pick and how many more verdicts follow, in the
words people use ("Ship QuillCode 3 over Ferrous Assist — plus 6 more verdicts"),
within 60 characters where the names allow; the preheader, shown after it in the
inbox, adds what the subject leaves out and never says the lead matchup again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from digest.core.mailsafe import one_line
from digest.issue.verdict import verdict
from digest.store.models import Comparison

logger = logging.getLogger(__name__)

#: The automatic subject stays within this where the names allow (an inbox's width).
SUBJECT_TARGET = 60
#: The preheader stops adding matchups here, so that with ", and N more." it stays
#: within the 140 characters inboxes show (and preflight checks).
PREHEADER_TARGET = 124


def _more(count: int) -> str:
    return "" if count == 0 else f" — plus {count} more verdict{'s' if count != 1 else ''}"


def matchup(comparison: Comparison) -> tuple[str, str]:
    """A subject's lead ("Ship A over B", "A or B? A draw") and the same matchup as a
    short phrase for a list ("A over B", "A or B: a draw")."""
    a, b = comparison.tools[0].name, comparison.tools[1].name
    panel = verdict(comparison)
    if panel.leader is not None:
        trail = b if panel.leader == a else a
        return f"{panel.pick} over {trail}", f"{panel.leader} over {trail}"
    if panel.pick == "ship neither":
        return f"Ship neither {a} nor {b}", f"neither {a} nor {b}"
    if panel.pick == "a draw":
        return f"{a} or {b}? A draw", f"{a} or {b}: a draw"
    if panel.pick.startswith("depends"):
        return f"{a} or {b}? It depends", f"{a} or {b}: it depends"
    return comparison.title, comparison.title


def default_subject(comparisons: Sequence[Comparison]) -> str:
    """The lead matchup's pick and the count of the rest; when that passes 60
    characters, the pick alone with the count, then with "(+N more)"."""
    lead, _phrase = matchup(comparisons[0])
    more = len(comparisons) - 1
    candidates = [f"{lead}{_more(more)}"]
    panel = verdict(comparisons[0])
    if panel.leader is not None:
        candidates.append(f"{panel.pick}{_more(more)}")
        candidates.append(panel.pick + (f" (+{more} more)" if more else ""))
    for candidate in candidates:
        if len(candidate) <= SUBJECT_TARGET:
            return candidate
    return candidates[-1]


def default_preheader(comparisons: Sequence[Comparison]) -> str:
    """The other matchups' picks ("Also: A over B, C or D: a draw, and 2 more."), or for
    an issue of one, why the pick: never the lead matchup again."""
    if len(comparisons) == 1:
        why = verdict(comparisons[0]).reason or "where the reviewers split"
        return one_line(f"Why: {why}. Prices, readers' votes and the reviews inside.", 200)
    phrases = [matchup(c)[1] for c in comparisons[1:]]
    text = "Also: " + phrases[0]
    for index, phrase in enumerate(phrases[1:], start=1):
        if len(text) + len(phrase) + 2 > PREHEADER_TARGET:
            text += f", and {len(phrases) - index} more"
            break
        text += f", {phrase}"
    return one_line(text + ".", 200)
