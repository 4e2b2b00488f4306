"""Jinja + MJML → the issue's HTML and text, compiled once per issue.

Per-recipient values (name, unsubscribe URL) are left as placeholders that
:mod:`digest.message` substitutes; MJML never runs per subscriber.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import mjml
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from markupsafe import Markup

from digest.config import PROJECT_ROOT, Settings
from digest.exceptions import RenderError
from digest.mailsafe import header_text, one_line
from digest.models import LENS_TITLES, Comparison, Tool
from digest.timeutil import parse_week

logger = logging.getLogger(__name__)

TEMPLATES_DIR = PROJECT_ROOT / "templates"

#: Placeholder syntax shared with digest.message. Content can never produce it: every
#: rendered value has "[[%" defused by :func:`_defuse`.
PLACEHOLDER = "[[%{}%]]"
PER_RECIPIENT = ("name", "unsubscribe_url")
_PLACEHOLDER_OPEN = "[[%"
GMAIL_CLIP_BYTES = 102 * 1024
_SENTENCE_END = re.compile(r"(?<=[.!?])[”\"')\]]?\s+(?=[A-Z0-9“\"'(])")


def placeholder(name: str) -> str:
    return PLACEHOLDER.format(name)


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    preheader: str
    html: str
    text: str
    warnings: list[str] = field(default_factory=list)


def _defuse(value: Any) -> Any:
    # Called on every {{ }} output before escaping: neutralise anything that looks like
    # one of our placeholders so a comparison cannot smuggle in a per-recipient value.
    if isinstance(value, Markup):
        return value
    if isinstance(value, str) and _PLACEHOLDER_OPEN in value:
        return value.replace(_PLACEHOLDER_OPEN, "[[ %")
    return value


def _environment(autoescape: bool) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        # The text environment renders text/plain, where HTML escaping would corrupt
        # names like "R&D"; every HTML template goes through the autoescaping one.
        autoescape=select_autoescape(default=True) if autoescape else False,  # noqa: S701
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_defuse,
    )


_HTML_ENV = _environment(autoescape=True)
_TEXT_ENV = _environment(autoescape=False)


def trim_quote(quote: str, limit: int) -> str:
    """Whole sentences of ``quote`` up to ``limit`` characters; a word cut with … if the
    first sentence alone is longer."""
    quote = " ".join(quote.split())
    if len(quote) <= limit:
        return quote
    sentences = _SENTENCE_END.split(quote)
    kept = ""
    for sentence in sentences:
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > limit:
            break
        kept = candidate
    if kept:
        return kept
    cut = quote[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:—- ")
    return cut + "…"


def _pct(value: int | None) -> str:
    return "no votes yet" if value is None else f"{value}%"


def _ships(tool: Tool) -> str:
    if tool.panel_ship_pct is None:
        return "no panel verdict"
    lenses = len(LENS_TITLES)
    return f"{round(tool.panel_ship_pct * lenses / 100)} of {lenses} ship"


def split_line(comparison: Comparison) -> str:
    """One line on how the panel divided, e.g. "A: 4 of 4 ship · B: 3 of 4 ship — leans A"."""
    a, b = comparison.tools[0], comparison.tools[1]
    line = f"{a.name}: {_ships(a)} · {b.name}: {_ships(b)}"
    pa, pb = a.panel_ship_pct, b.panel_ship_pct
    if pa is None or pb is None:
        return line
    if pa == pb:
        return f"{line} — dead even"
    return f"{line} — the panel leans {a.name if pa > pb else b.name}"


def comparison_link(comparison: Comparison, site_url: str) -> str:
    return comparison.url or f"{site_url.rstrip('/')}/compare/{comparison.slug}"


def _tool_view(tool: Tool, settings: Settings) -> dict[str, Any]:
    reviews = {r.lens: r for r in tool.reviews}
    pull = reviews.get("dx") or (tool.reviews[0] if tool.reviews else None)
    return {
        "name": tool.name,
        "tagline": tool.tagline,
        "category": tool.category,
        "entry": tool.entry,
        "panel": _pct(tool.panel_ship_pct),
        "community": _pct(tool.community_pct),
        "pull_quote": trim_quote(pull.quote, settings.quote_max_chars) if pull else "",
        "pull_lens": LENS_TITLES.get(pull.lens, pull.lens) if pull else "",
    }


def comparison_view(comparison: Comparison, settings: Settings) -> dict[str, Any]:
    return {
        "title": comparison.title,
        "standfirst": comparison.standfirst,
        "link": comparison_link(comparison, settings.site_url),
        "split_line": split_line(comparison),
        "tools": [_tool_view(t, settings) for t in comparison.tools],
    }


def default_subject(comparisons: Sequence[Comparison]) -> str:
    lead = comparisons[0].title
    more = len(comparisons) - 1
    return lead if more == 0 else f"{lead} and {more} more"


def default_preheader(comparisons: Sequence[Comparison]) -> str:
    count = len(comparisons)
    noun = "head-to-head" if count == 1 else "head-to-heads"
    text = f"{count} new {noun}: panel verdicts, pricing and where the reviewers split."
    return text[:200]


def default_intro(comparisons: Sequence[Comparison]) -> str:
    return (
        "Here are this week's newest AI tool comparisons: who the panel would ship, "
        "what each costs to start, and the one line from each reviewer worth reading."
    )


def week_label(week: str) -> str:
    year, num = parse_week(week)
    return f"Week {num}, {year}"


def _render(env: Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except TemplateNotFound as exc:
        raise RenderError(name, f"template not found: {exc.name}") from exc
    except TemplateError as exc:
        raise RenderError(name, str(exc)) from exc


def _include_loader(path: str) -> str:
    # mj-include may only read partials inside templates/email.
    base = (TEMPLATES_DIR / "email").resolve()
    target = (base / path).resolve()
    if base not in target.parents:
        raise RenderError("email/digest.mjml", f"mj-include outside templates: {path}")
    return target.read_text(encoding="utf-8")


def compile_mjml(source: str, template: str) -> str:
    try:
        # fonts={} keeps MRML from linking Google Fonts: no third-party requests from the inbox.
        return mjml.mjml2html(
            source, disable_comments=True, fonts={}, include_loader=_include_loader
        )
    except RenderError:
        raise
    except Exception as exc:  # MRML raises plain exceptions for malformed markup
        raise RenderError(template, f"MJML compile failed: {exc}") from exc


def render_issue(
    *,
    week: str,
    number: int | None = None,
    full: Sequence[Comparison],
    links: Sequence[Comparison],
    settings: Settings,
    subject: str | None = None,
    preheader: str | None = None,
    intro: str | None = None,
    template: str = "email/digest",
) -> RenderedIssue:
    """Render one issue once; per-recipient values stay as placeholders."""
    everything = [*full, *links]
    if not everything:
        raise RenderError(template, "an issue needs at least one comparison")
    # The subject is a header: no line break and no RFC 2047 encoded word (mailsafe).
    subject = header_text(subject or default_subject(everything), 200)
    preheader = one_line(preheader or default_preheader(everything), 200)
    context: dict[str, Any] = {
        "subject": subject,
        "preheader": preheader,
        "intro": intro if intro is not None else default_intro(everything),
        "week_label": week_label(week),
        "number": number,
        "total": len(everything),
        "full": [comparison_view(c, settings) for c in full],
        "links": [comparison_view(c, settings) for c in links],
        "list_name": settings.list_name,
        "site_host": urlsplit(settings.site_url).hostname or settings.site_url,
        "postal_address": settings.postal_address,
        "archive_url": f"{settings.base_url}/archive/{number if number is not None else week}",
        # Our own constant tokens, never content: safe to mark as markup.
        "placeholders": {name: Markup(placeholder(name)) for name in PER_RECIPIENT},  # noqa: S704
    }
    html = compile_mjml(_render(_HTML_ENV, f"{template}.mjml", context), f"{template}.mjml")
    text = _render(_TEXT_ENV, f"{template}.txt", context)
    warnings = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES * 0.8:
        warnings.append(f"HTML is {size // 1024} KB; Gmail clips messages over 102 KB")
        logger.warning("issue %s: %s", week, warnings[-1])
    return RenderedIssue(
        subject=subject, preheader=preheader, html=html, text=text, warnings=warnings
    )


def render_email(template: str, context: dict[str, Any]) -> tuple[str, str]:
    """Any email template pair (``{template}.mjml`` compiled, ``{template}.txt``) with
    ``context``: the same environments, escaping and MJML settings as the digest."""
    html = compile_mjml(_render(_HTML_ENV, f"{template}.mjml", context), f"{template}.mjml")
    return html, _render(_TEXT_ENV, f"{template}.txt", context)
