"""The panel's verdict: counts per lens, inferred verdicts, the lens that is shown."""

from __future__ import annotations

from digest.issue.verdict import lens_verdicts, verdict, verdict_line
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


def test_verdict_lines() -> None:
    ship4, ship3 = _tool("A", 100, ["ship"] * 4), _tool("B", 75, ["ship"] * 3 + ["pass"])
    assert verdict_line(ship4, ship3) == (
        "The panel would ship A: 4 of 4 lenses, against 3 of 4 for B.",
        "A",
    )
    assert verdict_line(ship3, ship4)[1] == "A"
    draw = verdict_line(_tool("A", 50, [None] * 4), _tool("B", 50, [None] * 4))
    assert draw == ("A draw: the panel would ship either, 2 of 4 lenses each.", None)
    none = verdict_line(_tool("A", 0, [None] * 4), _tool("B", 0, [None] * 4))
    assert none[0].startswith("The panel would ship neither")
    assert "not scored" in verdict_line(_tool("A", None, [None] * 4), ship3)[0]


def test_the_split_lens_that_backs_the_verdict_is_shown() -> None:
    a = _tool("A", 75, ["pass", "ship", "ship", "ship"])
    b = _tool("B", 25, ["ship", "pass", "pass", "pass"])
    shown = verdict(_pair(a, b))
    # dx splits too, but there the leader passes: competition backs the verdict.
    assert shown.split and shown.lens == "competition"
    assert shown.lens_heading == "Where the panel split: Competition"
    assert [(q.tool, q.verdict) for q in shown.quotes] == [("A", "ship"), ("B", "pass")]
    assert shown.quotes[0].quote == "A on competition."


def test_with_no_split_the_most_decisive_agreement() -> None:
    a = _tool("A", 75, ["pass", "ship", "ship", "ship"])
    b = _tool("B", 75, ["pass", "ship", "ship", "ship"])
    shown = verdict(_pair(a, b))
    assert not shown.split and shown.lens == "competition"  # both ship there
    assert shown.lens_heading == "Where the panel agreed: Competition"
    nobody = verdict(_pair(_tool("A", 0, [None] * 4), _tool("B", 0, [None] * 4)))
    assert nobody.lens == "dx" and not nobody.split  # both pass everywhere
    assert nobody.lens_heading == "Where the panel agreed: Developer experience"
    unscored = verdict(_pair(_tool("A", None, [None] * 4), _tool("B", None, [None] * 4)))
    assert unscored.lens_heading == "The Developer experience lens"
    assert unscored.line == "The panel has not scored these two yet."
    assert [q.verdict for q in unscored.quotes] == [None, None]
