"""Comparison pages in the seeds' format import with every field right.

The expected values come from a deliberately different reader: the seeds' layout puts
every field on a fixed line, so :func:`fixed_layout` takes them by position. If the
importer's line-by-line parser and this position table ever disagree, one of them is
wrong. ``../shared/seeds`` is read when it exists; our own pages in tests/data/pages
always run, with a few values spelled out by hand as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import DigestCLI
from conftest import SEEDS
from store_support import PAGES_DIR

pytestmark = pytest.mark.clock  # publication dates

LENS_ORDER = ["dx", "competition", "thesis", "business"]
CARD_FIELDS = [
    "category",
    "name",
    "tagline",
    "ship",
    "_",
    "community",
    "_",
    "entry",
    "_",
    "description",
]


def _pct(raw: str) -> int | None:
    return None if raw == "—" else int(raw.rstrip("%"))


def fixed_layout(path: Path) -> dict[str, Any]:
    """A seed-format page read by line position (the format has one field per line)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    lines = [line for line in lines if line]
    assert lines[0] == "AI tool comparison"
    tools = []
    for offset in (3, 13):
        card = dict(zip(CARD_FIELDS, lines[offset : offset + 10], strict=True))
        assert lines[offset + 4] == "Panel ship" and lines[offset + 6] == "Community"
        assert lines[offset + 8] == "Entry"
        tools.append(
            {
                "category": card["category"],
                "name": card["name"],
                "tagline": card["tagline"],
                "panel_ship_pct": _pct(card["ship"]),
                "community_pct": _pct(card["community"]),
                "entry": card["entry"],
                "description": card["description"],
                "reviews": [],
            }
        )
    assert lines[23] == "Reviewer scorecard"
    quotes = lines[24:32]
    assert all(q.startswith("“") and q.endswith("”") for q in quotes)
    for index, quote in enumerate(quotes):
        tools[index % 2]["reviews"].append(
            {"lens": LENS_ORDER[index // 2], "quote": quote[1:-1].strip(), "verdict": None}
        )
    return {"title": lines[1], "standfirst": lines[2], "tools": tools}


def _check_every_field(imported: dict[str, Any], expected: dict[str, Any]) -> None:
    assert imported["title"] == expected["title"]
    assert imported["standfirst"] == expected["standfirst"]
    assert len(imported["tools"]) == 2
    for got, want in zip(imported["tools"], expected["tools"], strict=True):
        for key in (
            "category",
            "name",
            "tagline",
            "panel_ship_pct",
            "community_pct",
            "entry",
            "description",
        ):
            assert got[key] == want[key], (want["name"], key)
        assert [r["lens"] for r in got["reviews"]] == LENS_ORDER
        assert got["reviews"] == want["reviews"], want["name"]


def _import_one(digest_cli: DigestCLI, page: Path, when: str) -> dict[str, Any]:
    digest_cli.ok("import", page, "--published-at", when)
    listed = digest_cli.json("comparisons", "list", "--json")
    matches = [c for c in listed if c["title"] == fixed_layout(page)["title"]]
    assert len(matches) == 1
    item = matches[0]
    assert item["published_at"] == when
    return item


SEED_FILES = sorted(SEEDS.glob("*.txt")) if SEEDS.is_dir() else []


@pytest.mark.skipif(not SEED_FILES, reason=f"no seed pages in {SEEDS}")
@pytest.mark.parametrize("seed", SEED_FILES, ids=[p.stem for p in SEED_FILES])
def test_seed_imports_with_every_field(seed: Path, digest_cli: DigestCLI) -> None:
    item = _import_one(digest_cli, seed, "2026-11-18T09:00:00+00:00")
    _check_every_field(item, fixed_layout(seed))


@pytest.mark.skipif(not SEED_FILES, reason=f"no seed pages in {SEEDS}")
def test_all_seeds_import_together(digest_cli: DigestCLI) -> None:
    result = digest_cli.ok("import", *SEED_FILES)
    assert f"{len(SEED_FILES)} new" in result.stdout
    assert len(digest_cli.json("comparisons", "list", "--json")) == len(SEED_FILES)


PAGE_FILES = sorted(PAGES_DIR.glob("*.txt"))


@pytest.mark.parametrize("page", PAGE_FILES, ids=[p.stem for p in PAGE_FILES])
def test_new_page_imports_with_every_field(page: Path, digest_cli: DigestCLI) -> None:
    item = _import_one(digest_cli, page, "2026-11-12T07:30:00+00:00")
    _check_every_field(item, fixed_layout(page))


def test_new_pages_hand_checked_values(digest_cli: DigestCLI) -> None:
    digest_cli.ok("import", *PAGE_FILES, "--published-at", "2026-11-12T07:30:00+00:00")
    by_slug = {c["slug"]: c for c in digest_cli.json("comparisons", "list", "--json")}
    assert set(by_slug) == {"orbit-cache-vs-relaycache-edge", "sketchpad-ai-vs-drafthouse-2"}

    orbit = by_slug["orbit-cache-vs-relaycache-edge"]
    assert orbit["title"] == "Orbit Cache vs RelayCache (Edge)"
    assert orbit["standfirst"].startswith("Which one should you ship with?")
    a, b = orbit["tools"]
    assert (a["name"], a["category"], a["panel_ship_pct"], a["community_pct"], a["entry"]) == (
        "Orbit Cache",
        "Developer Tools",
        75,
        62,
        "$19/mo",
    )
    assert (b["name"], b["panel_ship_pct"], b["community_pct"], b["entry"]) == (
        "RelayCache (Edge)",
        50,
        None,
        "Paid",
    )
    assert a["tagline"] == "Semantic response cache that cuts repeat model calls"
    assert b["description"].startswith("RelayCache (Edge) caches model responses")
    assert a["reviews"][0]["quote"].startswith("The sidecar model is the right call")
    assert b["reviews"][0]["quote"].startswith("One header to turn caching on")
    assert a["reviews"][3]["quote"].endswith("the value is easy to prove.")
    assert b["reviews"][3]["quote"].endswith("I would wait for a bundle.")
    assert all(r["verdict"] is None for t in orbit["tools"] for r in t["reviews"])

    sketch = by_slug["sketchpad-ai-vs-drafthouse-2"]
    a, b = sketch["tools"]
    assert (a["name"], a["category"], a["panel_ship_pct"], a["community_pct"], a["entry"]) == (
        "Sketchpad AI",
        "Design Tools",
        25,
        None,
        "Free",
    )
    assert (b["name"], b["panel_ship_pct"], b["community_pct"], b["entry"]) == (
        "Drafthouse 2",
        100,
        81,
        "$24/mo",
    )
    assert b["reviews"][1]["lens"] == "competition"
    assert b["reviews"][1]["quote"].startswith("General layout generators produce pretty pages")
    # The sign-up footer after the scorecard is not content.
    assert "Get the next comparison" not in str(sketch)


def test_windows_line_endings_and_bom_import_the_same(
    tmp_path: Path, digest_cli: DigestCLI
) -> None:
    page = PAGE_FILES[0]
    crlf = tmp_path / page.name
    crlf.write_bytes(b"\xef\xbb\xbf" + page.read_bytes().replace(b"\n", b"\r\n"))
    item = _import_one(digest_cli, crlf, "2026-11-12T07:30:00+00:00")
    _check_every_field(item, fixed_layout(page))
