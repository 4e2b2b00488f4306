"""What the review panel said about one comparison, in the words the email leads with.

A comparison carries four lenses per tool (``LENSES``); each lens says *ship* or
*pass*. The page prints only the share of lenses that ship (``panel_ship_pct``), and a
review's own verdict is often implied, so verdicts are read from the reviews where
they are stored and inferred from the share where that settles them (100% = every lens
ships; with two of four known to ship at 50%, the unknown ones pass).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from digest.store.models import LENS_TITLES, LENSES, Comparison, Tool

logger = logging.getLogger(__name__)

SHIP, PASS = "ship", "pass"


def ship_count(tool: Tool) -> int | None:
    """How many of the four lenses would ship ``tool`` (None: not scored)."""
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
    """The verdict line and the one lens shown with both tools' quotes."""

    line: str
    leader: str | None  # the tool the panel would ship; None for a draw or no score
    lens: str | None  # lens key shown; None when neither tool has a quote
    lens_title: str
    lens_heading: str  # "Where the panel split: Competition" / "… agreed …" / "The … lens"
    split: bool
    quotes: tuple[LensQuote, ...]


def _lenses(n: int | None) -> str:
    if n is None:
        return "not scored"
    return f"{n} of {len(LENSES)} lenses"


def verdict_line(a: Tool, b: Tool) -> tuple[str, str | None]:
    """The verdict line ('The panel would ship A: 4 of 4 lenses, against 3 of 4 for B.')
    and the tool the panel would ship (None for a draw or without scores)."""
    na, nb = ship_count(a), ship_count(b)
    if na is None and nb is None:
        return "The panel has not scored these two yet.", None
    if na is None or nb is None:
        scored, count, other = (a, na, b) if nb is None else (b, nb, a)
        return f"{scored.name} ships on {_lenses(count)}; {other.name} is not scored yet.", None
    if na == nb == 0:
        return "The panel would ship neither: no lens says ship for either tool.", None
    if na == nb:
        return f"A draw: the panel would ship either, {_lenses(na)} each.", None
    lead, trail, nl, nt = (a, b, na, nb) if na > nb else (b, a, nb, na)
    return (
        f"The panel would ship {lead.name}: {_lenses(nl)}, against {nt} of "
        f"{len(LENSES)} for {trail.name}.",
        lead.name,
    )


def _pick_lens(
    a: dict[str, str | None], b: dict[str, str | None], leader_first: bool | None
) -> tuple[str, bool]:
    """The lens to show and whether the panel split on it.

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
    line, leader = verdict_line(a, b)
    va, vb = lens_verdicts(a), lens_verdicts(b)
    lead_first = None if leader is None else leader == a.name
    lens, split = _pick_lens(va, vb, lead_first)
    quotes = []
    for tool, verdicts in ((a, va), (b, vb)):
        review = next((r for r in tool.reviews if r.lens == lens), None)
        if review is not None and review.quote.strip():
            quotes.append(LensQuote(tool.name, trim(review.quote), verdicts[lens]))
    title = LENS_TITLES.get(lens, lens)
    if split:
        heading = f"Where the panel split: {title}"
    elif va[lens] is not None and vb[lens] is not None:
        heading = f"Where the panel agreed: {title}"
    else:  # no verdicts to compare: just the lens
        heading = f"The {title} lens"
    return Verdict(
        line=line,
        leader=leader,
        lens=lens if quotes else None,
        lens_title=title,
        lens_heading=heading,
        split=split,
        quotes=tuple(quotes),
    )
