"""``digest import``: every malformed input fails whole, names where, changes nothing.

Everything goes through the real CLI (Typer app in-process, configured by environment)
against a SQLite file; "unchanged" is proven by a full dump of every table plus the
CLI's own ``comparisons list --json`` before and after.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import DigestCLI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from store_support import PAGES_DIR, dated, dump_store, sample_items, write_json

from digest.core.settings import Settings
from digest.store.models import Comparison

pytestmark = pytest.mark.clock  # publication dates

GOOD_PAGE = PAGES_DIR / "orbit-cache-vs-relaycache.txt"
BASE_PAGE = PAGES_DIR / "sketchpad-ai-vs-drafthouse.txt"


def _lines() -> list[str]:
    return BASE_PAGE.read_text(encoding="utf-8").split("\n")


def _page(lines: list[str]) -> bytes:
    return "\n".join(lines).encode("utf-8")


def truncated_page() -> bytes:
    text = BASE_PAGE.read_text(encoding="utf-8")
    return text[: len(text) // 2].encode("utf-8")


def one_tool_page() -> bytes:
    lines = _lines()
    assert lines[13] == "Design Tools" and lines[23] == "Reviewer scorecard"
    return _page(lines[:13] + lines[23:])  # drop card B (lines 14-23)


def seven_quotes_page() -> bytes:
    lines = _lines()
    assert lines[31].startswith("“")
    return _page(lines[:31] + lines[32:])  # drop the eighth quote (line 32)


def non_numeric_ship_page() -> bytes:
    lines = _lines()
    assert lines[6] == "25%"
    lines[6] = "a quarter"
    return _page(lines)


def invalid_utf8_page() -> bytes:
    lines = _lines()
    raw = [line.encode("utf-8") for line in lines]
    raw[4] = b"Sketchpad \xff\xfe AI"
    return b"\n".join(raw)


def _sample() -> dict[str, object]:
    item = sample_items()[0]
    item["published_at"] = "2026-11-12T10:00:00+00:00"
    item["slug"] = "brand-new-slug"
    return item


def unknown_fields_json() -> bytes:
    item = _sample()
    item["rating"] = 5
    return json.dumps(item).encode()


def wrong_types_json() -> bytes:
    item = json.loads(json.dumps(_sample()))
    item["tools"][0]["panel_ship_pct"] = "75"
    return json.dumps([item]).encode()


def binary_file() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def invalid_json() -> bytes:
    return b'{"slug": "x",\n "title": "A vs B",\n "tools": [\n}'


def three_tools_json() -> bytes:
    item = json.loads(json.dumps(_sample()))
    item["tools"].append(item["tools"][0])
    return json.dumps(item).encode()


# (name, file name, content, what the message must say besides the file name)
MALFORMED: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("truncated page", "truncated.txt", truncated_page, r"truncated\.txt:\d+: "),
    ("one tool", "one-tool.txt", one_tool_page, r"one-tool\.txt:14: page has only one tool"),
    ("seven quotes", "seven.txt", seven_quotes_page, r"seven\.txt:31: .*8 quotes, found 7"),
    ("non-numeric ship", "ship.txt", non_numeric_ship_page, r"ship\.txt:7: panel ship share"),
    ("unknown field", "unknown.json", unknown_fields_json, r"unknown\.json: field rating: unknown"),
    (
        "wrong type",
        "types.json",
        wrong_types_json,
        r"types\.json\[0\]: field tools\.0\.panel_ship_pct",
    ),
    ("empty file", "empty.txt", lambda: b"", r"empty\.txt: file is empty"),
    ("blank file", "blank.json", lambda: b"  \n\n", r"blank\.json: file is empty"),
    ("binary file", "image.png", binary_file, r"image\.png: binary file"),
    ("invalid UTF-8", "latin.txt", invalid_utf8_page, r"latin\.txt: line 5: invalid UTF-8"),
    ("invalid JSON", "broken.json", invalid_json, r"broken\.json:4:\d+: invalid JSON"),
    ("three tools", "three.json", three_tools_json, r"three\.json: field tools: .*exactly two"),
]


@pytest.fixture
def seeded(tmp_path: Path, settings: Settings, digest_cli: DigestCLI) -> Path:
    """A store that already holds the sample comparisons (so "unchanged" means something)."""
    source = write_json(tmp_path / "samples.json", dated(sample_items(), settings))
    digest_cli.ok("import", source)
    return source


@pytest.mark.parametrize(
    ("filename", "make", "where"),
    [pytest.param(f, m, w, id=name) for name, f, m, w in MALFORMED],
)
def test_malformed_input_fails_and_leaves_store_unchanged(
    tmp_path: Path,
    digest_cli: DigestCLI,
    engine: Engine,
    seeded: Path,
    filename: str,
    make: Callable[[], bytes],
    where: str,
) -> None:
    bad = tmp_path / filename
    bad.write_bytes(make())
    before_rows = dump_store(engine)
    before_json = digest_cli.json("comparisons", "list", "--json")

    # A valid page rides along: all-or-nothing means it must not be written either.
    result = digest_cli("import", GOOD_PAGE, bad)

    assert result.exit_code != 0
    message = result.stderr
    assert "nothing was written" in message
    assert re.search(where, message), message
    assert str(bad) in message
    assert dump_store(engine) == before_rows
    assert digest_cli.json("comparisons", "list", "--json") == before_json


def test_every_problem_of_every_file_is_reported(tmp_path: Path, digest_cli: DigestCLI) -> None:
    files = []
    for _name, filename, make, _where in MALFORMED:
        path = tmp_path / filename
        path.write_bytes(make())
        files.append(path)
    result = digest_cli("import", *files)
    assert result.exit_code != 0
    for _name, _filename, _make, where in MALFORMED:
        assert re.search(where, result.stderr), where
    assert digest_cli.json("comparisons", "list", "--json") == []


def test_missing_file_is_reported(tmp_path: Path, digest_cli: DigestCLI) -> None:
    result = digest_cli("import", tmp_path / "nope.txt")
    assert result.exit_code != 0
    assert "nope.txt" in result.stderr


def test_same_slug_twice_in_one_import_is_refused(tmp_path: Path, digest_cli: DigestCLI) -> None:
    copy = tmp_path / "copy.txt"
    copy.write_bytes(GOOD_PAGE.read_bytes())
    result = digest_cli("import", GOOD_PAGE, copy)
    assert result.exit_code != 0
    assert "orbit-cache-vs-relaycache-edge" in result.stderr
    assert digest_cli.json("comparisons", "list", "--json") == []


def test_reimport_updates_in_place(tmp_path: Path, digest_cli: DigestCLI, engine: Engine) -> None:
    digest_cli.ok("import", GOOD_PAGE, "--published-at", "2026-11-10T08:00:00+00:00")
    with Session(engine) as session:
        first = session.exec(select(Comparison)).one()
        first_id = first.id

    changed = tmp_path / "orbit-v2.txt"
    text = GOOD_PAGE.read_text(encoding="utf-8")
    text = text.replace("Semantic response cache that cuts repeat model calls", "A new tagline")
    text = text.replace("\n62%\n", "\n70%\n")
    changed.write_text(text, encoding="utf-8")
    result = digest_cli.ok("import", changed, "--published-at", "2026-11-11T08:00:00+00:00")
    assert "0 new, 1 updated" in result.stdout

    listed = digest_cli.json("comparisons", "list", "--json")
    assert len(listed) == 1
    tool_a = listed[0]["tools"][0]
    assert tool_a["tagline"] == "A new tagline"
    assert tool_a["community_pct"] == 70
    assert listed[0]["published_at"] == "2026-11-11T08:00:00+00:00"
    assert [r["lens"] for r in tool_a["reviews"]] == ["dx", "competition", "thesis", "business"]
    with Session(engine) as session:
        again = session.exec(select(Comparison)).one()
        assert again.id == first_id  # issues that featured it keep pointing at it
        assert len(again.tools) == 2 and all(len(t.reviews) == 4 for t in again.tools)


def test_json_export_round_trips(tmp_path: Path, digest_cli: DigestCLI, seeded: Path) -> None:
    exported = digest_cli.json("comparisons", "list", "--json")
    assert len(exported) == len(sample_items())
    dump = write_json(tmp_path / "export.json", exported)
    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    digest_cli.ok("import", dump, DIGEST_DATABASE_URL=other_db)
    assert (
        digest_cli.json("comparisons", "list", "--json", DIGEST_DATABASE_URL=other_db) == exported
    )


def test_published_at_defaults_and_naive_times_use_the_configured_zone(
    tmp_path: Path, digest_cli: DigestCLI
) -> None:
    item = _sample()
    del item["published_at"]
    src = write_json(tmp_path / "no-time.json", item)
    digest_cli.ok(
        "import", src, "--published-at", "2026-11-12T09:00", DIGEST_TIMEZONE="Pacific/Auckland"
    )
    listed = digest_cli.json("comparisons", "list", "--json")
    assert listed[0]["published_at"] == "2026-11-11T20:00:00+00:00"  # 09:00 NZDT


def test_bad_published_at_option_is_a_usage_error(digest_cli: DigestCLI) -> None:
    result = digest_cli("import", GOOD_PAGE, "--published-at", "next tuesday")
    assert result.exit_code == 2
    assert "--published-at" in result.stderr
