"""Values that go into mail headers and SMTP envelopes, made safe on any Python.

The stdlib ``email`` package before the CVE-2024-6923 fix (3.11.7 among them) decodes
RFC 2047 encoded words (``=?utf-8?b?…?=``) inside display names, quoted strings and
unstructured headers when it parses a value, and writes the decoded text back out —
a CR/LF inside an encoded word becomes a real line break, i.e. a new header or the
start of the body. Stripping literal control characters does not help, because the
line break only appears after decoding.

So every text that reaches a header passes :func:`header_text`: control characters and
line breaks become spaces, and the two characters that open an encoded word (``=?``)
get a space between them (``= ?``), which no parser reads as an encoded word. The
text looks the same to a reader and survives the stdlib's own RFC 2047 encoding of
non-ASCII names unchanged. This runs where values come in (names, titles, subjects,
settings) and again where messages are built, so neither place relies on the other.

Addresses cannot be rewritten (that would change the mailbox): :func:`check_address`
refuses one that could break a header or an envelope, and gives its domain in ASCII
(IDNA / punycode), the one form the store keeps and the wire needs.
"""

from __future__ import annotations

import logging
import re

import idna

from digest.exceptions import AddressError

logger = logging.getLogger(__name__)

ENCODED_WORD_OPEN = "=?"
_DEFUSED = "= ?"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
#: Characters no address we send to may hold: controls, spaces, and the delimiters of
#: an address list (a quoted local part is refused at input for the same reason).
_ADDRESS_UNSAFE = re.compile(r"[\x00-\x20\x7f\u0085\u00a0\u2028\u2029<>()\[\],;:\\\"]")


def defuse_encoded_words(text: str) -> str:
    """``=?`` → ``= ?``: no parser, patched or not, decodes an encoded word from it."""
    return text.replace(ENCODED_WORD_OPEN, _DEFUSED)


def one_line(value: str, limit: int = 300) -> str:
    """Collapse whitespace and control characters into single spaces, cut at ``limit``."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def header_text(value: str, limit: int = 300) -> str:
    """A value for a header: one line, no encoded word (see the module docstring)."""
    return defuse_encoded_words(one_line(value, limit))


#: RFC 5322 specials that make a display name a quoted string.
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
#: ``"name" <address>`` must fit on one folded line: the stdlib writes a quoted display
#: name that is longer than a line unquoted (its folder drops the quotes), and a comma
#: or colon in it then reads as an address list or a group.
_QUOTED_LINE = 76


def fit_display_name(name: str, address: str) -> str:
    """``name`` as the To header may carry it next to ``address``: cut at a word so that
    a name that needs quoting fits on one line (or left out when nothing fits)."""
    if not name or not _SPECIALS.search(name):
        return name
    room = _QUOTED_LINE - len(address) - 5 - name.count('"') - name.count("\\")
    if len(name) <= room:
        return name
    if room < 8:
        return ""
    cut = name[: room - 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return (cut + "…") if cut else ""


def ascii_domain(domain: str) -> str:
    """An internationalised domain in its ASCII (punycode) form; AddressError if it has none."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(f"domain {domain!r} has no valid IDNA form: {exc}") from exc


def needs_smtputf8(address: str) -> bool:
    """True when the local part is not ASCII: only an SMTPUTF8 server can take it."""
    return not address.rpartition("@")[0].isascii()


def check_address(address: str) -> str:
    """``address`` as it goes on the wire (domain in ASCII), or AddressError saying why
    it cannot be written into a header or an SMTP command."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{address[:80]!r} is not an address")
    if _ADDRESS_UNSAFE.search(address):
        raise AddressError(f"{address[:80]!r} holds spaces, control or delimiter characters")
    if ENCODED_WORD_OPEN in address:
        raise AddressError(f"{address[:80]!r} holds an RFC 2047 encoded word ('=?')")
    return f"{local}@{ascii_domain(domain)}"
