"""The canonical JSON shape of a comparison (DESIGN §2), validated with pydantic.

Import reads it, ``comparisons list --json`` writes it; both go through these classes so
the two can never drift apart.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from digest.core.mailsafe import defuse_encoded_words
from digest.core.textsafe import text_problem, url_problem
from digest.store.models import LENSES, Comparison

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")

#: Years a publication date may have.
PUBLISHED_RANGE = (1970, 9998)

OneLine = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Percent = Annotated[int, Field(ge=0, le=100)]


def slugify(title: str) -> str:
    """``"SmolVLM 2.5 vs Mistral 3 Small (24B)"`` → ``"smolvlm-2-5-vs-mistral-3-small-24b"``."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return slug[:200].rstrip("-")


def _one_line(value: str) -> str:
    if _LINE_CONTROL.search(value):
        raise ValueError("must be a single line without control characters")
    return value


def _text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _renderable(cls, value: object) -> object:
        # Every text field, including any added later: what MJML, PostgreSQL and an
        # XML feed cannot carry is refused here, not when the newsletter is rendered.
        if isinstance(value, str) and (problem := text_problem(value)):
            raise ValueError(problem)
        return value


class ReviewIn(_Strict):
    lens: Literal["dx", "competition", "thesis", "business"]
    quote: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    verdict: Literal["ship", "pass"] | None = None

    _check_quote = field_validator("quote")(lambda v: _text(v))


class ToolIn(_Strict):
    name: OneLine
    tagline: Annotated[str, StringConstraints(max_length=1000)] = ""
    category: Annotated[str, StringConstraints(max_length=200)] = ""
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    panel_ship_pct: Percent | None = None
    community_pct: Percent | None = None
    entry: Annotated[str, StringConstraints(max_length=100)] = ""
    reviews: list[ReviewIn]

    _single_lines = field_validator("name", "tagline", "category", "entry")(lambda v: _one_line(v))
    _check_description = field_validator("description")(lambda v: _text(v))

    @field_validator("reviews")
    @classmethod
    def _one_per_lens(cls, reviews: list[ReviewIn]) -> list[ReviewIn]:
        lenses = [r.lens for r in reviews]
        missing = [lens for lens in LENSES if lens not in lenses]
        dupes = sorted({lens for lens in lenses if lenses.count(lens) > 1})
        if missing or dupes:
            parts = []
            if missing:
                parts.append("missing lens " + ", ".join(missing))
            if dupes:
                parts.append("repeated lens " + ", ".join(dupes))
            raise ValueError(f"needs one review per lens ({'; '.join(parts)})")
        return sorted(reviews, key=lambda r: LENSES.index(r.lens))


class ComparisonIn(_Strict):
    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=200)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    standfirst: Annotated[str, StringConstraints(max_length=2000)] = ""
    url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    published_at: datetime
    tools: list[ToolIn]

    _single_lines = field_validator("standfirst")(lambda v: _one_line(v))
    # The title makes the subject (a header): no RFC 2047 encoded word in it.
    _title = field_validator("title")(lambda v: defuse_encoded_words(_one_line(v)))

    @field_validator("url")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        if value is not None and (problem := url_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("published_at", mode="before")
    @classmethod
    def _parse_time(cls, value: object) -> object:
        # strict mode refuses ISO strings; accept them explicitly, and nothing else.
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"not an ISO 8601 date-time: {value!r}") from exc
        return value

    @field_validator("published_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-11-18T09:00:00+00:00")
        # Stored in UTC and compared with week windows: year 1 at +05:00 is before the
        # first representable instant (an OverflowError deep in the store otherwise).
        if not PUBLISHED_RANGE[0] <= value.year <= PUBLISHED_RANGE[1]:
            raise ValueError(
                f"year {value.year} is out of range ({PUBLISHED_RANGE[0]}–{PUBLISHED_RANGE[1]})"
            )
        return value

    @field_validator("tools")
    @classmethod
    def _two_tools(cls, tools: list[ToolIn]) -> list[ToolIn]:
        if len(tools) != 2:
            raise ValueError(f"needs exactly two tools, got {len(tools)}")
        return tools


def comparison_to_dict(comparison: Comparison) -> dict[str, object]:
    """The canonical JSON of a stored comparison."""
    return {
        "slug": comparison.slug,
        "title": comparison.title,
        "standfirst": comparison.standfirst,
        "url": comparison.url,
        "published_at": comparison.published_at.isoformat(),
        "tools": [
            {
                "name": tool.name,
                "tagline": tool.tagline,
                "category": tool.category,
                "description": tool.description,
                "panel_ship_pct": tool.panel_ship_pct,
                "community_pct": tool.community_pct,
                "entry": tool.entry,
                "reviews": [
                    {"lens": r.lens, "quote": r.quote, "verdict": r.verdict} for r in tool.reviews
                ],
            }
            for tool in comparison.tools
        ],
    }
