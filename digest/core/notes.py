"""The editor's words: a note in Markdown, made safe for the email, the archive and the
feed, and as plain text for the text part.

Markdown is parsed by markdown-it-py with raw HTML off (a ``<script>`` in the source
stays text), then nh3 keeps only what a note may carry — paragraphs, emphasis, links
and lists — so nothing the parser lets through can add a tag, an attribute, a remote
image or a ``javascript:`` link. The plain text is made from the same tokens, with each
link's address after its words.
"""

from __future__ import annotations

import logging
import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

logger = logging.getLogger(__name__)

NOTE_MAX_CHARS = 5000
TAKE_MAX_CHARS = 200
ALLOWED_TAGS = frozenset({"p", "br", "em", "strong", "a", "ul", "ol", "li", "code"})
ALLOWED_ATTRIBUTES = {"a": {"href"}}
ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
_LINK_STYLE = "color:#1d4ed8"

# "commonmark" with html=False: raw HTML is never passed on. An image parses (so its
# Markdown does not show as text) and nh3 then drops it: no request leaves the inbox.
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_MD.disable(["table", "html_block", "html_inline", "heading", "lheading", "hr"])
_BLANKS = re.compile(r"\n{3,}")


def _untagged(source: str) -> str:
    """The Markdown with every HTML tag taken out (a script or style with its content):
    a tag in a note is neither run nor shown, in any part."""
    return nh3.clean(source, tags=set(), clean_content_tags={"script", "style"})


def note_html(source: str, *, styled: bool = True) -> str:
    """The note as safe HTML (empty for an empty note); ``styled`` gives links their
    colour inline, for mail clients (the console's own CSS colours them there)."""
    if not source.strip():
        return ""
    rendered = _MD.render(_untagged(source))
    clean = nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_SCHEMES),
        link_rel="noopener",
        strip_comments=True,
    )
    if not styled:
        return clean.strip()
    # Mail clients ignore <style> blocks unevenly: links carry their colour inline.
    return clean.replace("<a ", f'<a style="{_LINK_STYLE}" ').strip()


def note_text(source: str) -> str:
    """The note as plain text: paragraphs, "- " list items, and "words (address)" links."""
    if not source.strip():
        return ""
    out: list[str] = []
    _walk(_MD.parse(_untagged(source)), out)
    text = "".join(out)
    return _BLANKS.sub("\n\n", text).strip()


def _walk(tokens: list[Token], out: list[str]) -> None:
    ordered: list[int] = []
    for token in tokens:
        kind = token.type
        if kind == "bullet_list_open":
            ordered.append(0)
        elif kind == "ordered_list_open":
            ordered.append(1)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            ordered.pop()
            out.append("\n")
        elif kind == "list_item_open":
            if ordered and ordered[-1]:
                out.append(f"{ordered[-1]}. ")
                ordered[-1] += 1
            else:
                out.append("- ")
        elif kind == "paragraph_close":
            out.append("\n" if ordered else "\n\n")
        elif kind == "inline":
            out.append(_inline(token.children or []))
        elif kind in ("code_block", "fence"):
            out.append(token.content.rstrip("\n") + "\n\n")


def _inline(children: list[Token]) -> str:
    parts: list[str] = []
    href: str | None = None
    for child in children:
        if child.type == "link_open":
            target = str(child.attrs.get("href", ""))
            scheme = target.split(":", 1)[0].lower() if ":" in target else ""
            href = target if scheme in ALLOWED_SCHEMES else None
        elif child.type == "link_close":
            if href:
                parts.append(f" ({href})")
            href = None
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
    return "".join(parts)


def plain_lines(value: str) -> str:
    """Line ends as ``\n``: a browser sends a textarea's lines ending ``\r\n``, and the
    text checks (digest/core/textsafe.py) refuse a bare carriage return."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


def one_line_take(value: str) -> str:
    """An editor's take: one line, whitespace folded, at most ``TAKE_MAX_CHARS``."""
    return " ".join(value.split())[:TAKE_MAX_CHARS]
