"""Content text and URLs that every renderer, driver and XML writer can carry.

A title with U+FFFF imported fine and then made every MJML compile fail; a URL with a
C0 control passed ``https?://\\S+`` and then broke the Atom feed (XML 1.0 forbids
those characters) and the archive page; a NUL reached PostgreSQL, which refuses it in
text. So content is checked once, where it comes in (digest/store/schema.py, used by
every importer), and the same checks name a stored comparison that predates them
(digest/issue/freeze.py skips it with the reason).

Refused everywhere: NUL and every other C0 control (tab and line feed only where a
field may hold several lines), DEL, the C1 controls, lone surrogates, and the Unicode
noncharacters (U+FDD0–U+FDEF and the last two code points of every plane).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}-{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
_SURROGATES = "\ud800-\udfff"
_BAD = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_SURROGATES}{_NONCHARACTERS}]")
_BAD_ONE_LINE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{_SURROGATES}{_NONCHARACTERS}]")
#: What a URL may not hold beyond the above: any white space.
_URL_SPACE = re.compile(r"\s")


def _describe(char: str) -> str:
    code = ord(char)
    if code == 0:
        return "a NUL character"
    if code < 0x20 or code == 0x7F:
        return f"a control character (U+{code:04X})"
    if 0x80 <= code <= 0x9F:
        return f"a C1 control character (U+{code:04X})"
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X})"
    if code in (0x2028, 0x2029):
        return f"a line separator (U+{code:04X})"
    return f"a Unicode noncharacter (U+{code:04X})"


def text_problem(value: str, *, one_line: bool = False) -> str | None:
    """What makes ``value`` unfit for an email, a web page or a feed, or None.

    ``one_line`` also refuses tab, line feed and the Unicode line separators.
    """
    found = (_BAD_ONE_LINE if one_line else _BAD).search(value)
    if found is None:
        return None
    return f"contains {_describe(found.group())} at position {found.start() + 1}"


def url_problem(value: str) -> str | None:
    """What makes ``value`` unfit as a link in an email, a page and a feed, or None."""
    problem = text_problem(value, one_line=True)
    if problem is not None:
        return problem
    if _URL_SPACE.search(value):
        return "contains white space"
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http:// or https:// URL"
    return None


#: What XML 1.0 does not allow anywhere in a document, escaped or not.
_NOT_XML = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\ud800-\\udfff\\ufffe\\uffff]")


def xml_text(document: str) -> str:
    """``document`` without the characters XML 1.0 forbids: the last guard that keeps a
    feed well-formed whatever an older row or an edited subject holds."""
    return _NOT_XML.sub("", document)
