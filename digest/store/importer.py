"""Comparison import: canonical JSON and comparison-page text → the store, all-or-nothing.

Every file is read and validated before anything is written; one problem anywhere means
:class:`ImportValidationError` listing every problem (file, line or field, what is wrong)
and an unchanged database. Re-importing a slug updates that comparison in place, so
issues that featured it keep pointing at it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.core import jsonsafe
from digest.core.clock import utcnow
from digest.core.problems import Problems
from digest.exceptions import ImportValidationError
from digest.store.engine import session_scope
from digest.store.models import LENSES, Comparison, Review, Tool
from digest.store.schema import ComparisonIn, slugify

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 5 * 1024 * 1024
PAGE_HEADER = "AI tool comparison"
SCORECARD = "Reviewer scorecard"
_PCT = re.compile(r"^(\d{1,3})\s*%$")
_NO_VOTES = {"—", "–", "-", ""}
_CARD_LABELS = ("Panel ship", "Community", "Entry")


@dataclass(frozen=True)
class ImportSummary:
    created: int
    updated: int
    slugs: list[str]


class _PageError(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


# ---------------------------------------------------------------- reading files


def _decode(path: Path, data: bytes) -> str:
    if not data.strip():
        raise ValueError("file is empty")
    if b"\x00" in data:
        raise ValueError("binary file (contains NUL bytes), expected UTF-8 text or JSON")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"line {line}: invalid UTF-8 at byte {exc.start} ({exc.reason})") from exc


def _is_json(path: Path, text: str) -> bool:
    return path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "[")


def _pydantic_problems(where: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(object)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{where}: field {loc}: {msg}")
    return problems


def parse_json(
    where: str, text: str, default_published_at: datetime, undated: set[str] | None = None
) -> list[ComparisonIn]:
    """Canonical JSON (one object or a list) → validated comparisons. ``undated``, when
    given, collects the slugs of items that carried no ``published_at``."""
    try:
        data = jsonsafe.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportValidationError(
            [f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"]
        ) from exc
    except jsonsafe.TooDeep as exc:
        raise ImportValidationError([f"{where}: invalid JSON: {exc}"]) from exc
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ImportValidationError([f"{where}: the JSON list is empty"])
    result: list[ComparisonIn] = []
    problems = Problems()
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        label = f"{where}[{index}]" if isinstance(data, list) else where
        if not isinstance(item, dict):
            problems.append(f"{label}: expected a JSON object, got {type(item).__name__}")
            continue
        item = dict(item)
        if "slug" not in item and isinstance(item.get("title"), str):
            item["slug"] = slugify(item["title"])
        dated = item.get("published_at") is not None
        if not dated:
            # Optional (DESIGN §2): absent and null both mean "use --published-at".
            item["published_at"] = default_published_at.isoformat()
        try:
            parsed = ComparisonIn.model_validate(item)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(label, exc))
            continue
        if parsed.slug in seen:
            problems.append(
                f"{label}: field slug: {parsed.slug!r} also comes from {seen[parsed.slug]}"
            )
        seen[parsed.slug] = label
        if not dated and undated is not None:
            undated.add(parsed.slug)
        result.append(parsed)
    if problems:
        raise ImportValidationError(problems.lines())
    return result


def _percent(line_no: int, raw: str, what: str, allow_none: bool) -> int | None:
    if allow_none and raw in _NO_VOTES:
        return None
    match = _PCT.match(raw)
    if not match or int(match.group(1)) > 100:
        expected = "a share like 75% or — for no votes" if allow_none else "a share like 75%"
        raise _PageError(line_no, f"{what}: expected {expected}, got {raw!r}")
    return int(match.group(1))


class _Lines:
    """Non-blank lines with their 1-based line numbers, consumed front to back."""

    def __init__(self, text: str) -> None:
        self.items = [
            (n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()
        ]
        self.pos = 0
        self.last_line = len(text.splitlines())

    def take(self, what: str) -> tuple[int, str]:
        if self.pos >= len(self.items):
            raise _PageError(self.last_line, f"page ends early: expected {what}")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def expect(self, literal: str) -> int:
        line_no, value = self.take(repr(literal))
        if value != literal:
            raise _PageError(line_no, f"expected {literal!r}, got {value[:60]!r}")
        return line_no

    def peek(self) -> str | None:
        return self.items[self.pos][1] if self.pos < len(self.items) else None


def _parse_card(lines: _Lines) -> dict[str, Any]:
    _, category = lines.take("tool category")
    if category == SCORECARD:
        raise _PageError(lines.items[lines.pos - 1][0], "page has only one tool card")
    _, name = lines.take("tool name")
    _, tagline = lines.take("tool tagline")
    line_no, ship = lines.take("panel ship share")
    panel = _percent(line_no, ship, "panel ship share", allow_none=False)
    lines.expect("Panel ship")
    line_no, community = lines.take("community vote")
    votes = _percent(line_no, community, "community vote", allow_none=True)
    lines.expect("Community")
    _, entry = lines.take("entry price")
    lines.expect("Entry")
    _, description = lines.take("tool description")
    if description in (*_CARD_LABELS, SCORECARD):
        raise _PageError(lines.items[lines.pos - 1][0], "tool description is missing")
    return {
        "category": category,
        "name": name,
        "tagline": tagline,
        "panel_ship_pct": panel,
        "community_pct": votes,
        "entry": entry,
        "description": description,
    }


def _parse_quotes(lines: _Lines) -> list[tuple[int, str]]:
    quotes: list[tuple[int, str]] = []
    while (nxt := lines.peek()) is not None and nxt.startswith("“"):
        start, text = lines.take("a quote")
        # A quote may wrap over several lines; it ends at the closing curly quote.
        while not text.endswith("”"):
            if lines.peek() is None:
                raise _PageError(start, "quote is not closed with ”")
            text += " " + lines.take("rest of quote")[1]
        quotes.append((start, text[1:-1].strip()))
    return quotes


def parse_page(text: str) -> dict[str, Any]:
    """A comparison page in the seeds' text format → a canonical dict (no slug or time).

    Raises ``_PageError`` with the line number of the first problem.
    """
    lines = _Lines(text)
    lines.expect(PAGE_HEADER)
    line_no, title = lines.take("the title 'A vs B'")
    if " vs " not in title:
        raise _PageError(line_no, f"title must read 'Tool A vs Tool B', got {title[:60]!r}")
    _, standfirst = lines.take("the standfirst line")
    tools = [_parse_card(lines)]
    if lines.peek() == SCORECARD:
        raise _PageError(lines.items[lines.pos][0], "page has only one tool card")
    tools.append(_parse_card(lines))
    scorecard_line = lines.expect(SCORECARD)
    quotes = _parse_quotes(lines)
    expected = 2 * len(LENSES)
    if len(quotes) != expected:
        where = quotes[-1][0] if quotes else scorecard_line
        raise _PageError(where, f"reviewer scorecard needs {expected} quotes, found {len(quotes)}")
    # Quotes alternate tool A, tool B within each lens, lenses in LENSES order.
    for index, (_, quote) in enumerate(quotes):
        lens = LENSES[index // 2]
        tools[index % 2].setdefault("reviews", []).append(
            {"lens": lens, "quote": quote, "verdict": None}
        )
    return {"title": title, "standfirst": standfirst, "tools": tools}


def parse_file(path: Path, default_published_at: datetime) -> list[ComparisonIn]:
    """One file → validated comparisons, or ImportValidationError naming the file."""
    where = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImportValidationError([f"{where}: file is larger than 5 MiB"])
        text = _decode(path, path.read_bytes())
    except OSError as exc:
        raise ImportValidationError([f"{where}: cannot read: {exc.strerror}"]) from exc
    except ValueError as exc:
        raise ImportValidationError([f"{where}: {exc}"]) from exc
    return parse_text(where, text, default_published_at, json_name=_is_json(path, text))


def parse_bytes(
    where: str, data: bytes, default_published_at: datetime, undated: set[str] | None = None
) -> list[ComparisonIn]:
    """An upload or a request body (JSON or one comparison page) → validated comparisons:
    the checks ``digest import`` runs on a file, without the file."""
    if len(data) > MAX_FILE_BYTES:
        raise ImportValidationError([f"{where}: larger than 5 MiB"])
    try:
        text = _decode(Path(where), data)
    except ValueError as exc:
        raise ImportValidationError([f"{where}: {exc}"]) from exc
    json_like = text.lstrip()[:1] in ("{", "[")
    return parse_text(where, text, default_published_at, json_name=json_like, undated=undated)


def parse_text(
    where: str,
    text: str,
    default_published_at: datetime,
    *,
    json_name: bool,
    undated: set[str] | None = None,
) -> list[ComparisonIn]:
    """Decoded text → validated comparisons: canonical JSON when ``json_name``, else
    a comparison page (which has no date: it is always undated)."""
    if json_name:
        return parse_json(where, text, default_published_at, undated)
    try:
        page = parse_page(text)
    except _PageError as exc:
        raise ImportValidationError([f"{where}:{exc.line}: {exc}"]) from exc
    page["slug"] = slugify(page["title"])
    page["published_at"] = default_published_at
    try:
        parsed = ComparisonIn.model_validate(page, strict=False)
    except ValidationError as exc:
        raise ImportValidationError(_pydantic_problems(where, exc)) from exc
    if undated is not None:
        undated.add(parsed.slug)
    return [parsed]


def load_files(paths: Sequence[Path], default_published_at: datetime) -> list[ComparisonIn]:
    """Validate every file; collect every problem before failing."""
    items: list[ComparisonIn] = []
    problems = Problems()
    seen: dict[str, str] = {}
    if not paths:
        raise ImportValidationError(["no files given"])
    for path in paths:
        try:
            parsed = parse_file(path, default_published_at)
        except ImportValidationError as exc:
            problems.extend(exc.problems)
            continue
        for item in parsed:
            if item.slug in seen:
                problems.append(f"{path}: slug {item.slug!r} also comes from {seen[item.slug]}")
            seen[item.slug] = str(path)
            items.append(item)
    if problems:
        raise ImportValidationError(problems.lines())
    return items


# ---------------------------------------------------------------- writing


def apply_comparison(session: Session, item: ComparisonIn, imported_by: str | None) -> bool:
    """Insert or update one comparison; True when it was new."""
    existing = session.exec(select(Comparison).where(Comparison.slug == item.slug)).first()
    comparison = existing or Comparison(
        slug=item.slug, title=item.title, published_at=item.published_at
    )
    comparison.title = item.title
    comparison.standfirst = item.standfirst
    comparison.url = item.url
    comparison.published_at = item.published_at
    comparison.updated_at = utcnow()
    comparison.imported_by = imported_by
    if existing is not None:
        # The unit of work inserts before it deletes: drop the old tools first so the
        # new ones can take their (comparison, position) slots.
        comparison.tools = []
        session.flush()
    # The foreign keys (comparison_id, tool_id) are filled in by the relationships at
    # flush time; mypy's view of the model constructor cannot know that.
    comparison.tools = [
        Tool(  # type: ignore[call-arg]
            position=position,
            name=tool.name,
            tagline=tool.tagline,
            category=tool.category,
            description=tool.description,
            panel_ship_pct=tool.panel_ship_pct,
            community_pct=tool.community_pct,
            entry=tool.entry,
            reviews=[
                Review(  # type: ignore[call-arg]
                    position=i, lens=r.lens, quote=r.quote, verdict=r.verdict
                )
                for i, r in enumerate(tool.reviews)
            ],
        )
        for position, tool in enumerate(item.tools)
    ]
    session.add(comparison)
    return existing is None


def import_comparisons(
    engine: Engine,
    paths: Sequence[Path],
    default_published_at: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    imported_by: str = "cli",
) -> ImportSummary:
    """Validate every file, then write them all in one transaction."""
    items = load_files(paths, default_published_at or utcnow())
    created = updated = 0
    with session_scope(engine) as session:
        for item in items:
            if apply_comparison(session, item, imported_by):
                created += 1
            else:
                updated += 1
            if progress:
                progress(1)
    logger.info("imported %d comparisons (%d new, %d updated)", len(items), created, updated)
    return ImportSummary(created=created, updated=updated, slugs=[i.slug for i in items])


def list_comparisons(session: Session) -> Iterable[Comparison]:
    return session.exec(
        select(Comparison).order_by(col(Comparison.published_at).desc(), col(Comparison.id))
    )
