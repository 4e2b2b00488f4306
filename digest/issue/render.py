"""Jinja + MJML → the issue's HTML and text, compiled once per issue.

Per-recipient values (name, unsubscribe URL) are left as placeholders
(:mod:`digest.mail.placeholders`) that :mod:`digest.mail.message` substitutes; MJML
never runs per subscriber.
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
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

from digest.core.clock import parse_week
from digest.core.mailsafe import header_text, one_line
from digest.core.notes import note_html, note_text, one_line_take
from digest.core.resources import TEMPLATES_DIR
from digest.core.settings import Settings
from digest.exceptions import RenderError
from digest.issue.subject import default_preheader, default_subject
from digest.issue.verdict import SHIP, verdict
from digest.mail.placeholders import ARCHIVE_URL, PER_RECIPIENT, PLACEHOLDER_OPEN, placeholder
from digest.store.models import Comparison, Tool

logger = logging.getLogger(__name__)

GMAIL_CLIP_BYTES = 102 * 1024
#: Plain-text lines are wrapped here (RFC 3676's advice is 78 at most; URLs stay whole).
TEXT_WIDTH = 78
_SENTENCE_END = re.compile(r"(?<=[.!?])[”\"')\]]?\s+(?=[A-Z0-9“\"'(])")


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    preheader: str
    html: str
    text: str
    warnings: list[str] = field(default_factory=list)
    #: The Jinja-rendered MJML the HTML was compiled from (for validators).
    source: str = ""


def _defuse(value: Any) -> Any:
    # Called on every {{ }} output before escaping: neutralise anything that looks like
    # one of our placeholders so a comparison cannot smuggle in a per-recipient value.
    if isinstance(value, Markup):
        return value
    if isinstance(value, str) and PLACEHOLDER_OPEN in value:
        return value.replace(PLACEHOLDER_OPEN, "[[ %")
    return value


def wrap(value: str, indent: str = "", width: int = TEXT_WIDTH) -> str:
    """Plain text filled to ``width`` columns; a word longer than a line (a URL) is
    kept whole on its own line rather than broken."""
    lines = []
    for paragraph in str(value).split("\n"):
        filled = textwrap.fill(
            " ".join(paragraph.split()),
            width=width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines.append(filled or "")
    return "\n".join(lines)


def _environment(autoescape: bool) -> Environment:
    env = Environment(
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
    env.filters["wrap"] = wrap
    return env


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


def comparison_link(comparison: Comparison, site_url: str) -> str:
    return comparison.url or f"{site_url.rstrip('/')}/compare/{comparison.slug}"


def _tool_view(tool: Tool) -> dict[str, Any]:
    # No reviewers' share here: the card's one sentence already says how many would ship.
    return {
        "name": tool.name,
        "tagline": tool.tagline,
        "category": tool.category,
        "entry": tool.entry or "—",
        "community": _pct(tool.community_pct),
    }


def _facts(tool: Tool) -> str:
    """ "QuillCode 3: Free, readers' vote 64%" — a compact entry's facts for one tool."""
    votes = (
        "no reader votes yet"
        if tool.community_pct is None
        else f"readers' vote {tool.community_pct}%"
    )
    return f"{tool.name}: {tool.entry or '—'}, {votes}"


def anchor(comparison: Comparison) -> str:
    """The id of a comparison's card, for the week at a glance to link to."""
    return "c-" + re.sub(r"[^a-z0-9-]+", "-", comparison.slug.lower()).strip("-")


def comparison_view(comparison: Comparison, settings: Settings) -> dict[str, Any]:
    """What the templates show of one comparison: the decisive sentence first, then the
    lens the reviewers split on with both tools' quotes, then the two tool cards."""
    panel = verdict(comparison, lambda quote: trim_quote(quote, settings.quote_max_chars))
    a, b = comparison.tools[0], comparison.tools[1]
    return {
        "title": comparison.title,
        "anchor": anchor(comparison),
        "standfirst": " ".join(comparison.standfirst.split()),
        "link": comparison_link(comparison, settings.site_url),
        "verdict": panel.line,
        "pick": panel.pick,
        "reason": panel.reason,
        "lens_heading": panel.lens_heading,
        "quotes": [
            {
                "tool": q.tool,
                "quote": q.quote,
                "label": ""
                if q.verdict is None
                else ("would ship" if q.verdict == SHIP else "would pass"),
                "ships": q.verdict == SHIP,
            }
            for q in panel.quotes
        ],
        "tools": [_tool_view(t) for t in comparison.tools],
        # A compact entry's one line of facts: what each costs and the readers' vote.
        "facts": f"{_facts(a)} · {_facts(b)}",
    }


def default_intro(comparisons: Sequence[Comparison]) -> str:
    return (
        "Here are this week's newest AI tool comparisons: who to ship, what each costs "
        "to start, and the one line from each reviewer worth reading."
    )


def week_label(week: str) -> str:
    year, num = parse_week(week)
    return f"Week {num}, {year}"


def kicker(week: str, total: int, number: int | None = None) -> str:
    """The masthead's second line: "Issue #3 · Week 47, 2026 · 7 new comparisons"."""
    noun = "comparison" if total == 1 else "comparisons"
    issue = f"Issue #{number} · " if number else ""
    return f"{issue}{week_label(week)} · {total} new {noun}"


def brand_context(settings: Settings) -> dict[str, Any]:
    """The list's name, logo, host and postal address: every email template's masthead
    and footer."""
    return {
        "list_name": settings.list_name,
        "site_host": urlsplit(settings.site_url).hostname or settings.site_url,
        "postal_address": settings.postal_address,
        "logo": (
            {
                "url": settings.logo_url,
                "alt": settings.logo_alt or settings.list_name,
                "width": settings.logo_width,
            }
            if settings.logo_url
            else None
        ),
    }


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


#: MRML hides the preheader in 1px white text; spam filters score both as hidden
#: content (SpamAssassin's HTML_FONT_LOW_CONTRAST, FONT_INVIS_*), and display:none with
#: a zero height hides it anyway, so the font size and colour go.
_PREVIEW_STYLE = (
    'style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;'
    'max-width:0px;opacity:0;overflow:hidden;"'
)
_PREVIEW_STYLE_CLEAN = (
    'style="display:none;max-height:0px;max-width:0px;opacity:0;overflow:hidden;mso-hide:all;"'
)


def compile_mjml(source: str, template: str) -> str:
    try:
        # fonts={} keeps MRML from linking Google Fonts: no third-party requests from the inbox.
        html = mjml.mjml2html(
            source, disable_comments=True, fonts={}, include_loader=_include_loader
        )
    except RenderError:
        raise
    except Exception as exc:  # MRML raises plain exceptions for malformed markup
        raise RenderError(template, f"MJML compile failed: {exc}") from exc
    return str(html).replace(_PREVIEW_STYLE, _PREVIEW_STYLE_CLEAN, 1)


#: Gives a comparison's link its counted form (digest/issue/clicks.py): called with
#: the comparison, the kind of link ("card" or "link") and the URL.
Linker = Callable[[Comparison, str, str], str]


def _linked(
    view: dict[str, Any], comparison: Comparison, kind: str, linker: Linker | None
) -> dict[str, Any]:
    if linker is not None:
        view["link"] = linker(comparison, kind, view["link"])
    return view


def issue_context(
    *,
    week: str,
    number: int | None,
    full: Sequence[Comparison],
    links: Sequence[Comparison],
    settings: Settings,
    subject: str | None = None,
    preheader: str | None = None,
    intro: str | None = None,
    linker: Linker | None = None,
    note: str = "",
    takes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What templates/email/digest.* are rendered with. The email keeps per-recipient
    values and the archive link as placeholders; the web variant
    (digest/web/issue_page.py) overrides ``web``, ``subscriber`` and ``archive_url``."""
    everything = [*full, *links]
    if not everything:
        raise RenderError("email/digest", "an issue needs at least one comparison")
    takes = takes or {}

    def view(c: Comparison, kind: str) -> dict[str, Any]:
        shown = _linked(comparison_view(c, settings), c, kind, linker)
        shown["take"] = one_line_take(takes.get(c.slug) or "") or None
        return shown

    return {
        # The subject is a header: no line break and no RFC 2047 encoded word (mailsafe).
        "subject": header_text(subject or default_subject(everything), 200),
        "preheader": one_line(preheader or default_preheader(everything), 200),
        "intro": intro if intro is not None else default_intro(everything),
        "week_label": week_label(week),
        "number": number,
        "kicker": kicker(week, len(everything), number),
        "subscriber": True,
        "web": None,
        "total": len(everything),
        "full": [view(c, "card") for c in full],
        "links": [view(c, "link") for c in links],
        # The note is Markdown made safe by digest/core/notes.py (nh3): markup we made.
        "note": (
            {"html": Markup(note_html(note)), "text": note_text(note)}  # noqa: S704
            if note.strip()
            else None
        ),
        **brand_context(settings),
        # Substituted when the message is built (digest.mail.message), so the link follows
        # DIGEST_BASE_URL at send time, not the one the issue was frozen under.
        "archive_url": Markup(placeholder(ARCHIVE_URL)),  # noqa: S704
        # Our own constant tokens, never content: safe to mark as markup.
        "placeholders": {name: Markup(placeholder(name)) for name in PER_RECIPIENT},  # noqa: S704
    }


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
    linker: Linker | None = None,
    note: str = "",
    takes: Mapping[str, str] | None = None,
) -> RenderedIssue:
    """Render one issue once; per-recipient values stay as placeholders."""
    context = issue_context(
        week=week,
        number=number,
        full=full,
        links=links,
        settings=settings,
        subject=subject,
        preheader=preheader,
        intro=intro,
        linker=linker,
        note=note,
        takes=takes,
    )
    subject, preheader = context["subject"], context["preheader"]
    source = mjml_source(template, context)
    html = compile_mjml(source, f"{template}.mjml")
    text = _render(_TEXT_ENV, f"{template}.txt", context)
    warnings = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES * 0.8:
        warnings.append(f"HTML is {size // 1024} KB; Gmail clips messages over 102 KB")
        logger.warning("issue %s: %s", week, warnings[-1])
    return RenderedIssue(
        subject=subject,
        preheader=preheader,
        html=html,
        text=text,
        warnings=warnings,
        source=source,
    )


def mjml_source(template: str, context: dict[str, Any]) -> str:
    """``{template}.mjml`` rendered by Jinja: the MJML that MRML compiles."""
    return _render(_HTML_ENV, f"{template}.mjml", context)


def render_email(template: str, context: dict[str, Any]) -> tuple[str, str]:
    """Any email template pair (``{template}.mjml`` compiled, ``{template}.txt``) with
    ``context``: the same environments, escaping and MJML settings as the digest."""
    html = compile_mjml(mjml_source(template, context), f"{template}.mjml")
    return html, _render(_TEXT_ENV, f"{template}.txt", context)
