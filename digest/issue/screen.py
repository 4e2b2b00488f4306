"""Keep one bad comparison from stopping the newsletter.

Import refuses text that no renderer, driver or feed can carry (digest/core/textsafe.py),
but a comparison stored before that check — or one that fails MJML for a reason nobody
foresaw — must not make every ``send``, ``draft`` and console Freeze fail for as long
as it stays new. It is skipped instead, by name and with the reason, in the log, the
issue's history and the command's output; the rest of the week goes out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from digest.core.settings import Settings
from digest.core.textsafe import text_problem, url_problem
from digest.exceptions import RenderError
from digest.issue.render import Linker, RenderedIssue, render_issue
from digest.store.models import Comparison

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A comparison left out of an issue, and why."""

    slug: str
    reason: str

    def __str__(self) -> str:
        return f"comparison {self.slug!r} skipped: {self.reason}"


def _fields(comparison: Comparison) -> Iterable[tuple[str, str, bool]]:
    """(where, text, one line) for every text of a stored comparison."""
    yield "title", comparison.title, True
    yield "standfirst", comparison.standfirst or "", True
    for n, tool in enumerate(comparison.tools, 1):
        for name in ("name", "tagline", "category", "entry"):
            yield f"tool {n} {name}", getattr(tool, name) or "", True
        yield f"tool {n} description", tool.description or "", False
        for review in tool.reviews:
            yield f"tool {n} {review.lens} quote", review.quote, False


def content_problem(comparison: Comparison) -> str | None:
    """What in a stored comparison cannot be rendered, or None."""
    if comparison.url and (problem := url_problem(comparison.url)):
        return f"url {problem}"
    for where, value, one_line in _fields(comparison):
        if problem := text_problem(value, one_line=one_line):
            return f"{where} {problem}"
    return None


def screen(comparisons: Sequence[Comparison]) -> tuple[list[Comparison], list[Skipped]]:
    """The comparisons fit to render, and the others with their reasons."""
    kept: list[Comparison] = []
    skipped: list[Skipped] = []
    for comparison in comparisons:
        problem = content_problem(comparison)
        if problem is None:
            kept.append(comparison)
        else:
            skipped.append(Skipped(comparison.slug, problem))
            logger.warning("%s", skipped[-1])
    return kept, skipped


def render_failures(
    comparisons: Sequence[Comparison], settings: Settings, week: str
) -> list[Skipped]:
    """The comparisons that fail to render on their own (after a whole issue failed)."""
    failures = []
    for comparison in comparisons:
        try:
            render_issue(week=week, full=[comparison], links=[], settings=settings)
        except RenderError as exc:
            failures.append(Skipped(comparison.slug, f"cannot be rendered: {exc}"))
            logger.warning("%s", failures[-1])
    return failures


@dataclass(frozen=True)
class Screened:
    """An issue rendered without the comparisons that made it fail (``rendered`` is
    None when none was left)."""

    rendered: RenderedIssue | None
    full: list[Comparison]
    links: list[Comparison]
    skipped: list[Skipped]


def render_screened(
    *,
    week: str,
    number: int | None,
    full: Sequence[Comparison],
    links: Sequence[Comparison],
    settings: Settings,
    linker: Linker | None = None,
) -> Screened:
    """:func:`render_issue`; when it fails, each comparison is rendered alone and those
    that fail are left out (a full card's place goes to the next link)."""
    try:
        rendered = render_issue(
            week=week, number=number, full=full, links=links, settings=settings, linker=linker
        )
        return Screened(rendered, list(full), list(links), [])
    except RenderError:
        failures = render_failures([*full, *links], settings, week)
        if not failures:
            raise  # the template itself, not a comparison: a real error
    bad = {failure.slug for failure in failures}
    kept = [c for c in [*full, *links] if c.slug not in bad]
    if not kept:
        return Screened(None, [], [], failures)
    full, links = kept[: len(full)], kept[len(full) :]
    rendered = render_issue(
        week=week, number=number, full=full, links=links, settings=settings, linker=linker
    )
    return Screened(rendered, list(full), list(links), failures)


def words_problem(subject: str | None, preheader: str | None, intro: str | None) -> str | None:
    """What in an editor's words no renderer, driver or feed can carry, or None (the
    same checks as an imported comparison's text)."""
    for name, value, one_line in (
        ("subject", subject, True),
        ("preheader", preheader, True),
        ("intro", intro, False),
    ):
        if value and (problem := text_problem(value, one_line=one_line)):
            return f"the {name} {problem}"
    return None
