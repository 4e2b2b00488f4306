"""The panel's verdict: counts per lens, inferred verdicts, the lens that is shown."""

from __future__ import annotations

import pytest

from digest.issue.verdict import lens_verdicts, lens_words, verdict
from digest.store.models import LENSES, Comparison, Review, Tool


def _tool(name: str, pct: int | None, verdicts: list[str | None]) -> Tool:
    reviews = [
        Review(position=i, lens=lens, quote=f"{name} on {lens}.", verdict=v)
        for i, (lens, v) in enumerate(zip(LENSES, verdicts, strict=True))
    ]
    return Tool(position=0, name=name, panel_ship_pct=pct, reviews=reviews)


def _pair(a: Tool, b: Tool) -> Comparison:
    return Comparison(slug="a-vs-b", title=f"{a.name} vs {b.name}", tools=[a, b])


def test_unknown_verdicts_are_inferred_when_the_share_settles_them() -> None:
    assert lens_verdicts(_tool("A", 50, [None, "pass", "ship", "pass"]))["dx"] == "ship"
    assert lens_verdicts(_tool("A", 25, [None, "pass", "ship", None])) == {
        "dx": "pass",
        "competition": "pass",
        "thesis": "ship",
        "business": "pass",
    }
    assert set(lens_verdicts(_tool("A", 100, [None] * 4)).values()) == {"ship"}
    # Two unknowns, one ship among them: not settled, stays unknown.
    assert lens_verdicts(_tool("A", 50, [None, "ship", None, "pass"]))["dx"] is None


def _priced(
    name: str, pct: int | None, verdicts: list[str | None], entry: str, votes: int | None
) -> Tool:
    tool = _tool(name, pct, verdicts)
    tool.entry, tool.community_pct = entry, votes
    return tool


ALL = ["ship"] * 4
#: (tool A, tool B, the decisive sentence, the pick, the reason): wins, draws, a 0%
#: tool, missing community votes, unscored tools.
CASES = [
    pytest.param(
        _priced("A", 100, ALL, "Free", 64),
        _priced("B", 75, ["ship", "pass", "ship", "ship"], "$12/mo", None),
        "Ship A — all four reviewers would; three of four would ship B.",
        "Ship A",
        "stands up to rivals",
        id="win",
    ),
    pytest.param(
        _priced("A", 25, [None, "pass", "pass", "ship"], "Free", None),
        _priced("B", 50, ["ship", "pass", "pass", None], "Free", None),
        "Lean to B — only two of four reviewers would; one of four would ship A.",
        "Lean to B",
        "nicer to build with",
        id="narrow win",
    ),
    pytest.param(
        _priced("A", 75, ["ship", "ship", "ship", "pass"], "Paid", 50),
        _priced("B", 0, [None] * 4, "Free", 90),
        "Ship A — three of four reviewers would; none would ship B.",
        "Ship A",
        "nicer to build with",
        id="a 0% tool",
    ),
    pytest.param(
        _priced("A", 100, [None] * 4, "Free", None),
        _priced("B", 75, [None] * 4, "$12/mo", 70),
        "Ship A — all four reviewers would; three of four would ship B.",
        "Ship A",
        "free to start, too",
        id="win with implicit verdicts, told by price",
    ),
    pytest.param(
        _priced("A", 50, [None] * 4, "Paid", None),
        _priced("B", 100, [None] * 4, "Paid", None),
        "Ship B — all four reviewers would; two of four would ship A.",
        "Ship B",
        "two more reviewers would ship it",
        id="win with implicit verdicts, told by the margin",
    ),
    pytest.param(
        _priced("A", 100, ALL, "Free", 81),
        _priced("B", 100, ALL, "$9/mo", 58),
        "A draw: all four reviewers would ship either. A is free to start; readers lean to A.",
        "a draw",
        "A is free to start; readers lean to A",
        id="draw told apart by price and vote",
    ),
    pytest.param(
        _priced("A", 100, ALL, "$19/mo", None),
        _priced("B", 100, ALL, "$12/mo", 70),
        "A draw: all four reviewers would ship either. B costs less.",
        "a draw",
        "B costs less",
        id="draw with a missing community vote",
    ),
    pytest.param(
        _priced("A", 100, ALL, "Paid", None),
        _priced("B", 100, ALL, "Paid", None),
        "A draw: all four reviewers would ship either. Nothing in the scores tells them "
        "apart: the reviews do.",
        "a draw",
        "read the reviews",
        id="draw with nothing to tell apart",
    ),
    pytest.param(
        _priced("A", 50, ["ship", "pass", "ship", "pass"], "Free", 40),
        _priced("B", 50, ["pass", "pass", "ship", "ship"], "Free", 42),
        "It depends: two of four reviewers would ship each — A for developer experience, "
        "B for the business case.",
        "depends: A for developer experience, B for the business case",
        "",
        id="draw split between lenses",
    ),
    pytest.param(
        _priced("A", 0, [None] * 4, "Free", None),
        _priced("B", 0, [None] * 4, "Free", None),
        "Ship neither: no reviewer would ship either tool.",
        "ship neither",
        "no reviewer would ship either",
        id="both 0%",
    ),
    pytest.param(
        _priced("A", None, [None] * 4, "Free", None),
        _priced("B", 75, ["ship", "pass", "ship", "ship"], "Free", None),
        "B: three of four reviewers would ship it; A is not scored yet.",
        "not scored yet",
        "B so far",
        id="one not scored",
    ),
]


@pytest.mark.parametrize(("a", "b", "line", "pick", "reason"), CASES)
def test_one_decisive_sentence(a: Tool, b: Tool, line: str, pick: str, reason: str) -> None:
    shown = verdict(_pair(a, b))
    assert (shown.line, shown.pick, shown.reason) == (line, pick, reason)
    # No figure twice, no share, no jargon: the cards carry the votes and prices.
    assert "%" not in shown.line and "lens" not in shown.line.lower()
    for vote in (a.community_pct, b.community_pct):
        assert vote is None or str(vote) not in shown.line
    assert "None" not in shown.line


def test_unknown_lens_labels_read_as_themselves() -> None:
    assert lens_words("competition") == "the competition"
    assert lens_words("time_to_value") == "time to value"
    # A tool stored with a lens we do not know: the known ones still decide.
    odd = _tool("A", 100, ALL)
    odd.reviews[0].lens = "latency"
    shown = verdict(_pair(odd, _tool("B", 50, ["pass", "ship", "pass", "ship"])))
    assert shown.line.startswith("Ship A — all four reviewers would")
    assert "latency" not in shown.lens_heading


def test_the_split_lens_that_backs_the_verdict_is_shown() -> None:
    a = _tool("A", 75, ["pass", "ship", "ship", "ship"])
    b = _tool("B", 25, ["ship", "pass", "pass", "pass"])
    shown = verdict(_pair(a, b))
    # dx splits too, but there the leader passes: competition backs the verdict.
    assert shown.split and shown.lens == "competition"
    assert shown.lens_heading == "Where the reviewers split: the competition"
    assert [(q.tool, q.verdict) for q in shown.quotes] == [("A", "ship"), ("B", "pass")]
    assert shown.quotes[0].quote == "A on competition."


def test_with_no_split_the_most_decisive_agreement() -> None:
    a = _tool("A", 75, ["pass", "ship", "ship", "ship"])
    b = _tool("B", 75, ["pass", "ship", "ship", "ship"])
    shown = verdict(_pair(a, b))
    assert not shown.split and shown.lens == "competition"  # both ship there
    assert shown.lens_heading == "Where the reviewers agreed: the competition"
    nobody = verdict(_pair(_tool("A", 0, [None] * 4), _tool("B", 0, [None] * 4)))
    assert nobody.lens == "dx" and not nobody.split  # both pass everywhere
    assert nobody.lens_heading == "Where the reviewers agreed: developer experience"
    unscored = verdict(_pair(_tool("A", None, [None] * 4), _tool("B", None, [None] * 4)))
    assert unscored.lens_heading == "The reviews on developer experience"
    assert unscored.line == "Not scored yet: the reviewers have not judged these two."
    assert [q.verdict for q in unscored.quotes] == [None, None]
