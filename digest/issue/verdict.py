"""What the review panel said about one comparison, in the words the email leads with.

Four reviewers judge each tool, each from one side (a *lens*, ``LENSES``): developer
experience, the competition, the long-term bet, the business case. Each says *ship* or
*pass*. The page prints only the share of reviewers who would ship (``panel_ship_pct``),
and a review's own verdict is often implied, so verdicts are read from the reviews
where they are stored and inferred from the share where that settles them (100% =
every reviewer ships; with two of four known to ship at 50%, the unknown ones pass).

The reader never sees the word "lens" nor a percentage of reviewers: one decisive
sentence says who to ship and how strongly, in counts of reviewers, and a draw is told
apart by what differs (price, the readers' vote, the side each tool wins on).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from digest.store.models import LENSES, Comparison, Tool

logger = logging.getLogger(__name__)

SHIP, PASS = "ship", "pass"

#: Each lens in plain words, as a reader would name that side of a tool.
LENS_WORDS = {
    "dx": "developer experience",
    "competition": "the competition",
    "thesis": "the long-term bet",
    "business": "the business case",
}
#: Why the pick wins, in a few words, when it wins on that lens and the other loses.
_WINS_ON = {
    "dx": "nicer to build with",
    "competition": "stands up to rivals",
    "thesis": "the better long-term bet",
    "business": "the stronger business",
}
_NUMBERS = ("none", "one", "two", "three", "four", "five", "six", "seven", "eight")
#: Two readers' votes closer than this are not a preference worth telling.
_VOTE_MARGIN = 5


def lens_words(lens: str) -> str:
    """A lens in plain words; a label we do not know is shown as itself."""
    return LENS_WORDS.get(lens) or " ".join(lens.replace("_", " ").replace("-", " ").split())


def _number(n: int) -> str:
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def ship_count(tool: Tool) -> int | None:
    """How many of the four reviewers would ship ``tool`` (None: not scored)."""
    if tool.panel_ship_pct is not None:
        return round(tool.panel_ship_pct * len(LENSES) / 100)
    verdicts = lens_verdicts(tool)
    if any(v is None for v in verdicts.values()):
        return None
    return sum(v == SHIP for v in verdicts.values())


def lens_verdicts(tool: Tool) -> dict[str, str | None]:
    """Each lens's verdict: stored, else inferred from the ship share when it is forced."""
    stored = {r.lens: r.verdict for r in tool.reviews}
    verdicts: dict[str, str | None] = {
        lens: stored.get(lens) if stored.get(lens) in (SHIP, PASS) else None for lens in LENSES
    }
    if tool.panel_ship_pct is None:
        return verdicts
    ships = round(tool.panel_ship_pct * len(LENSES) / 100)
    known_ships = sum(v == SHIP for v in verdicts.values())
    unknown = [lens for lens, v in verdicts.items() if v is None]
    if unknown and known_ships == ships:
        verdicts.update(dict.fromkeys(unknown, PASS))
    elif unknown and known_ships + len(unknown) == ships:
        verdicts.update(dict.fromkeys(unknown, SHIP))
    return verdicts


@dataclass(frozen=True)
class LensQuote:
    tool: str
    quote: str
    verdict: str | None  # "ship", "pass" or None (not known)


@dataclass(frozen=True)
class Verdict:
    """The decisive sentence, the week-at-a-glance pick and reason, and the one lens
    shown with both tools' quotes."""

    line: str
    leader: str | None  # the tool to ship; None for a draw or no score
    pick: str  # "Ship QuillCode 3", "a draw", "depends: A for …, B for …"
    reason: str  # a few words: why the pick, or what tells a draw apart
    lens: str | None  # lens key shown; None when neither tool has a quote
    lens_title: str  # the lens in plain words
    lens_heading: str  # "Where the reviewers split: the competition" / "… agreed …"
    split: bool
    quotes: tuple[LensQuote, ...]


# ---------------------------------------------------------------- what differs


_PRICE = re.compile(r"^\$\s*(\d+(?:\.\d+)?)\s*(/\s*\w+)?$")


def _price(entry: str | None) -> tuple[float, str] | None:
    """An entry price we can compare: Free is 0; "$12/mo" is (12, "/mo")."""
    text = (entry or "").strip().lower()
    if text == "free":
        return 0.0, ""
    found = _PRICE.match(text)
    if found is None:
        return None
    return float(found.group(1)), (found.group(2) or "").replace(" ", "")


def cheaper(a: Tool, b: Tool) -> str | None:
    """What the price tells apart, or None: "A is free to start" / "A costs less"."""
    pa, pb = _price(a.entry), _price(b.entry)
    free_a, free_b = pa is not None and pa[0] == 0, pb is not None and pb[0] == 0
    if free_a != free_b:
        other = b if free_a else a
        # Against an unknown entry ("—") free says nothing.
        return (
            f"{(a if free_a else b).name} is free to start"
            if (other.entry or "").strip(" —-")
            else None
        )
    if pa is None or pb is None or free_a or pa[1] != pb[1] or pa[0] == pb[0]:
        return None
    return f"{(a if pa[0] < pb[0] else b).name} costs less"


def readers_prefer(a: Tool, b: Tool) -> str | None:
    """Which tool the readers' vote leans to, when both have votes and they differ."""
    ca, cb = a.community_pct, b.community_pct
    if ca is None or cb is None or abs(ca - cb) < _VOTE_MARGIN:
        return None
    return f"readers lean to {(a if ca > cb else b).name}"


def _splits(a: dict[str, str | None], b: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """The lenses where only the first tool ships, and those where only the second does."""
    only_a = [lens for lens in LENSES if a[lens] == SHIP and b[lens] == PASS]
    only_b = [lens for lens in LENSES if b[lens] == SHIP and a[lens] == PASS]
    return only_a, only_b


# ---------------------------------------------------------------- the sentence


def _reviewers(n: int) -> str:
    """ "all four reviewers would" / "three of four reviewers would" / "only one …"."""
    total = len(LENSES)
    if n == total:
        return f"all {_number(total)} reviewers would"
    if n * 2 <= total:
        return f"only {_number(n)} of {_number(total)} reviewers would"
    return f"{_number(n)} of {_number(total)} reviewers would"


def _and_ship(n: int, name: str) -> str:
    total = len(LENSES)
    if n == 0:
        return f"none would ship {name}"
    if n == total:
        return f"all {_number(total)} would ship {name}"
    return f"{_number(n)} of {_number(total)} would ship {name}"


def _sentence(parts: list[str]) -> str:
    text = "; ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "." if text else ""


def _draw(
    a: Tool, b: Tool, n: int, va: dict[str, str | None], vb: dict[str, str | None]
) -> tuple[str, str, str]:
    """A draw told apart by what differs: (line, pick, reason)."""
    total = len(LENSES)
    both = f"all {_number(total)}" if n == total else f"{_number(n)} of {_number(total)}"
    only_a, only_b = _splits(va, vb)
    if only_a and only_b:
        sides = f"{a.name} for {lens_words(only_a[0])}, {b.name} for {lens_words(only_b[0])}"
        line = f"It depends: {both} reviewers would ship each — {sides}."
        others = _sentence([cheaper(a, b) or "", readers_prefer(a, b) or ""])
        return (f"{line} {others}" if others else line), f"depends: {sides}", ""
    apart = [d for d in (cheaper(a, b), readers_prefer(a, b)) if d]
    if apart:
        told = _sentence(apart)
        reason = "; ".join(apart)
    else:
        told = "Nothing in the scores tells them apart: the reviews do."
        reason = "read the reviews"
    return f"A draw: {both} reviewers would ship either. {told}", "a draw", reason


def _win_reason(
    lead: Tool,
    trail: Tool,
    margin: int,
    lead_v: dict[str, str | None],
    trail_v: dict[str, str | None],
) -> str:
    """Why the pick, in a few words: the side it wins on; else (verdicts the page left
    implicit) what else favours it — price, the readers — or the margin itself."""
    backing = [lens for lens in LENSES if lead_v[lens] == SHIP and trail_v[lens] == PASS]
    if backing:
        return _WINS_ON.get(backing[0], f"stronger on {lens_words(backing[0])}")
    price = cheaper(lead, trail)
    if price == f"{lead.name} is free to start":
        return "free to start, too"
    if price == f"{lead.name} costs less":
        return "costs less, too"
    if readers_prefer(lead, trail) == f"readers lean to {lead.name}":
        return "readers agree"
    return f"{_number(margin)} more reviewer{'s' if margin > 1 else ''} would ship it"


def decide(
    a: Tool,
    b: Tool,
    va: dict[str, str | None] | None = None,
    vb: dict[str, str | None] | None = None,
) -> tuple[str, str | None, str, str]:
    """The decisive sentence, the tool to ship (None for none), the pick and its reason.

    ``Ship QuillCode 3 — all four reviewers would; three of four would ship Ferrous
    Assist.`` Counts in words, never a share: the cards carry price and votes."""
    va = lens_verdicts(a) if va is None else va
    vb = lens_verdicts(b) if vb is None else vb
    na, nb = ship_count(a), ship_count(b)
    if na is None and nb is None:
        return "Not scored yet: the reviewers have not judged these two.", None, "not scored", ""
    if na is None or nb is None:
        scored, count, other = (a, na, b) if nb is None else (b, nb, a)
        assert count is not None
        line = f"{scored.name}: {_reviewers(count)} ship it; {other.name} is not scored yet."
        return line, None, "not scored yet", f"{scored.name} so far"
    if na == nb == 0:
        line = "Ship neither: no reviewer would ship either tool."
        return line, None, "ship neither", "no reviewer would ship either"
    if na == nb:
        line, pick, reason = _draw(a, b, na, va, vb)
        return line, None, pick, reason
    lead, trail, nl, nt = (a, b, na, nb) if na > nb else (b, a, nb, na)
    lv, tv = (va, vb) if lead is a else (vb, va)
    verb = "Ship" if nl * 2 > len(LENSES) else "Lean to"
    line = f"{verb} {lead.name} — {_reviewers(nl)}; {_and_ship(nt, trail.name)}."
    return line, lead.name, f"{verb} {lead.name}", _win_reason(lead, trail, nl - nt, lv, tv)


def verdict_line(a: Tool, b: Tool) -> tuple[str, str | None]:
    """The decisive sentence and the tool to ship (None for a draw or without scores)."""
    line, leader, _pick, _reason = decide(a, b)
    return line, leader


def _pick_lens(
    a: dict[str, str | None], b: dict[str, str | None], leader_first: bool | None
) -> tuple[str, bool]:
    """The lens to show and whether the reviewers split on it.

    A split lens (one tool ships, the other passes) wins, preferably one where the
    leader ships; with no split, the most decisive agreement: both ship when the
    panel leans to shipping, both pass otherwise; the first lens as the last resort.
    """
    splits = [lens for lens in LENSES if a[lens] and b[lens] and a[lens] != b[lens]]
    if splits:
        if leader_first is not None:
            lead = a if leader_first else b
            backing = [lens for lens in splits if lead[lens] == SHIP]
            if backing:
                return backing[0], True
        return splits[0], True
    ships = sum(v == SHIP for v in (*a.values(), *b.values()))
    passes = sum(v == PASS for v in (*a.values(), *b.values()))
    wanted = SHIP if ships >= passes else PASS
    for lens in LENSES:
        if a[lens] == b[lens] == wanted:
            return lens, False
    return LENSES[0], False


def verdict(comparison: Comparison, trim: Callable[[str], str] = str.strip) -> Verdict:
    """The verdict for ``comparison``; ``trim`` shortens each quote shown."""
    a, b = comparison.tools[0], comparison.tools[1]
    va, vb = lens_verdicts(a), lens_verdicts(b)
    line, leader, pick, reason = decide(a, b, va, vb)
    lead_first = None if leader is None else leader == a.name
    lens, split = _pick_lens(va, vb, lead_first)
    quotes = []
    for tool, verdicts in ((a, va), (b, vb)):
        review = next((r for r in tool.reviews if r.lens == lens), None)
        if review is not None and review.quote.strip():
            quotes.append(LensQuote(tool.name, trim(review.quote), verdicts[lens]))
    words = lens_words(lens)
    if split:
        heading = f"Where the reviewers split: {words}"
    elif va[lens] is not None and vb[lens] is not None:
        heading = f"Where the reviewers agreed: {words}"
    else:  # no verdicts to compare: just the side the quotes speak to
        heading = f"The reviews on {words}"
    return Verdict(
        line=line,
        leader=leader,
        pick=pick,
        reason=reason,
        lens=lens if quotes else None,
        lens_title=words,
        lens_heading=heading,
        split=split,
        quotes=tuple(quotes),
    )
