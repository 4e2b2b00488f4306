"""Byte-exact fast building of per-recipient MIME messages.

The stdlib ``email`` package needs about 5–10 ms per copy of a 37 KB digest; a list of
100,000 readers cannot afford that. This module reproduces, for the shapes the digest
uses, exactly the bytes ``EmailMessage.as_bytes(policy=policy.SMTP)`` produces:

- quoted-printable bodies (``email.quoprimime.body_encode``): the algorithm works line
  by line and, inside a line, left to right in steps of at most 77 characters, so only
  the lines holding a placeholder are encoded per recipient, and inside a long line only
  the part near the placeholder — the encoding of the static remainder depends on
  nothing but the column it starts at, and is cached per column;
- headers: values that stay short and plain are written as they are (what the stdlib's
  folder produces for them); unstructured headers made of plain words are folded
  greedily like ``_refold_parse_tree``; anything else (RFC 2047 display names, quoting,
  over-long words) goes through the stdlib's own folder for that one header.

:class:`digest.mail.message.IssueMessage` checks the result against the stdlib path when it
compiles the skeleton and falls back to the stdlib path if they ever differ.
"""

from __future__ import annotations

import logging
import re
from email import quoprimime
from typing import Any

logger = logging.getLogger(__name__)

EOL = "\r\n"
#: policy.SMTP.max_line_length: the stdlib wraps quoted-printable at 78, so we do too.
MAX_LINE = 78
_STEP = MAX_LINE - 1
#: Static stretches at least this long are cached per entry column; shorter ones are
#: simply re-encoded with the placeholder line.
LONG_SEGMENT = 160
#: the stdlib's own table, so both paths agree
_QP_MAP: dict[int, str] = quoprimime._QUOPRI_BODY_ENCODE_MAP  # type: ignore[attr-defined]

_PLAIN_HEADER = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9'_-]+(?: [A-Za-z0-9'_-]+)*")
_SIMPLE_ADDR = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
_SIMPLE_MSGID = re.compile(r"<[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+>")


def qp_translate(value: str) -> str:
    """A value as it appears inside a quoted-printable UTF-8 line, before wrapping."""
    return value.encode("utf-8").decode("latin-1").translate(_QP_MAP)


# ---------------------------------------------------------------- quoted-printable


def _wrap_line(line: str, out: list[str]) -> None:
    """``quoprimime.body_encode`` for one translated line (its loop, verbatim)."""
    start = 0
    laststart = len(line) - 1 - MAX_LINE
    while start <= laststart:
        stop = start + _STEP
        if line[stop - 2] == "=":
            out.append(line[start : stop - 1] + EOL)
            start = stop - 2
        elif line[stop - 1] == "=":
            out.append(line[start:stop] + EOL)
            start = stop - 1
        else:
            out.append(line[start:stop] + "=" + EOL)
            start = stop
    if line and line[-1] in " \t":
        room = start - laststart
        if room >= 3:
            tail = quoprimime.quote(line[-1])
        elif room == 2:
            tail = line[-1] + "=" + EOL
        else:
            tail = "=" + EOL + quoprimime.quote(line[-1])
        out.append(line[start:-1] + tail + EOL)
    else:
        out.append(line[start:] + EOL)


class _Segment:
    """A static stretch of a placeholder line, with its encoding cached per entry column."""

    __slots__ = ("_cache", "head", "long", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.long = len(text) >= LONG_SEGMENT
        self.head = text[:100]
        self._cache: dict[int, tuple[bytes, bytes, int]] = {}

    def advance(self, start: int) -> tuple[bytes, bytes, int]:
        """Encoded output while the wrap position stays well inside this segment, the
        same dot-stuffed (:func:`line_stuffed`), and the position where it stops. Only
        whole steps that cannot reach past the segment are taken, so the result does
        not depend on what follows."""
        cached = self._cache.get(start)
        if cached is not None:
            return cached
        first = start
        text = self.text
        out: list[str] = []
        while start + MAX_LINE + 1 <= len(text):
            stop = start + _STEP
            if text[stop - 2] == "=":
                out.append(text[start : stop - 1] + EOL)
                start = stop - 2
            elif text[stop - 1] == "=":
                out.append(text[start:stop] + EOL)
                start = stop - 1
            else:
                out.append(text[start:stop] + "=" + EOL)
                start = stop
        encoded = "".join(out).encode("ascii")
        result = (encoded, line_stuffed(encoded), start)
        self._cache[first] = result
        return result


class _PlaceholderLine:
    """One line that holds placeholders: static segments and value names, alternating."""

    def __init__(self, parts: list[_Segment | str]) -> None:
        self.parts = parts

    def encode(
        self, values: dict[str, str], into: list[bytes], stuffed: list[bytes] | None = None
    ) -> None:
        """Append the encoded line to ``into`` in pieces that each start a line, and
        the same pieces dot-stuffed to ``stuffed`` when it is given."""
        out: list[str] = []
        pending = ""
        for part in self.parts:
            if isinstance(part, str):
                pending += values[part]
                continue
            if not part.long:
                pending += part.text
                continue
            # Step through what is pending until the wrap position enters the segment;
            # the segment is long, so the line cannot end on the way.
            window = pending + part.head
            start, n = 0, len(pending)
            while start < n:
                stop = start + _STEP
                if window[stop - 2] == "=":
                    out.append(window[start : stop - 1] + EOL)
                    start = stop - 2
                elif window[stop - 1] == "=":
                    out.append(window[start:stop] + EOL)
                    start = stop - 1
                else:
                    out.append(window[start:stop] + "=" + EOL)
                    start = stop
            encoded, encoded_stuffed, resume = part.advance(start - n)
            if out:
                chunk = "".join(out).encode("ascii")
                into.append(chunk)
                if stuffed is not None:
                    stuffed.append(line_stuffed(chunk))
                out = []
            into.append(encoded)
            if stuffed is not None:
                stuffed.append(encoded_stuffed)
            pending = part.text[resume:]
        _wrap_line(pending, out)
        chunk = "".join(out).encode("ascii")
        into.append(chunk)
        if stuffed is not None:
            stuffed.append(line_stuffed(chunk))


class QPTemplate:
    """A text or HTML body as the stdlib would quoted-printable encode it, with
    placeholders left open. ``render(values)`` takes values already passed through
    :func:`qp_translate`."""

    def __init__(self, body: str, placeholders: dict[str, str]) -> None:
        self.parts: list[bytes | _PlaceholderLine] = []
        # Every piece starts a line and ends with CRLF, so each can be dot-stuffed alone.
        self._stuffed: dict[int, bytes] = {}
        pattern = re.compile("|".join(re.escape(p) for p in placeholders.values()))
        names = {token: name for name, token in placeholders.items()}
        static: list[str] = []
        # Exactly the stdlib's line split: bytes.splitlines of the UTF-8 text.
        for raw in body.encode("utf-8").splitlines():
            line = raw.decode("latin-1").translate(_QP_MAP)
            if pattern.search(line) is None:
                _wrap_line(line, static)
                continue
            if static:
                self.parts.append("".join(static).encode("ascii"))
                static = []
            pieces: list[_Segment | str] = []
            pos = 0
            for match in pattern.finditer(line):
                pieces.append(_Segment(line[pos : match.start()]))
                pieces.append(names[match.group()])
                pos = match.end()
            pieces.append(_Segment(line[pos:]))
            self.parts.append(_PlaceholderLine(pieces))
        if static:
            self.parts.append("".join(static).encode("ascii"))
        self._stuffed = {
            id(part): line_stuffed(part) for part in self.parts if isinstance(part, bytes)
        }

    def render(
        self, values: dict[str, str], into: list[bytes], stuffed: list[bytes] | None = None
    ) -> None:
        """Append the encoded body for ``values`` to ``into``, and the same dot-stuffed
        for SMTP (each piece starts a line) to ``stuffed`` when it is given."""
        for part in self.parts:
            if isinstance(part, bytes):
                into.append(part)
                if stuffed is not None:
                    stuffed.append(self._stuffed[id(part)])
            else:
                part.encode(values, into, stuffed)


# ---------------------------------------------------------------- headers


def fold_plain(name: str, value: str) -> bytes | None:
    """A header whose value is short plain ASCII: the stdlib writes it unchanged."""
    line = f"{name}: {value}"
    if len(line) <= MAX_LINE and "=?" not in value and _PLAIN_HEADER.fullmatch(value):
        return (line + EOL).encode("ascii")
    return None


def fold_unstructured(name: str, value: str) -> bytes | None:
    """Greedy folding of plain ASCII words, as ``_refold_parse_tree`` does it for an
    unstructured header; None for any case it would treat differently."""
    if "=?" in value or not _PLAIN_HEADER.fullmatch(value):
        return None
    first = name + ": "
    if len(first) + len(value) <= MAX_LINE:
        return (first + value + EOL).encode("ascii")
    if len(value) + 1 <= MAX_LINE:
        return (name + ":" + EOL + " " + value + EOL).encode("ascii")
    lines = [first]
    for index, word in enumerate(value.split(" ")):
        if index:
            if len(lines[-1]) + 1 > MAX_LINE:
                return None
            lines[-1] += " "
        if len(word) <= MAX_LINE - len(lines[-1]):
            lines[-1] += word
            continue
        if len(word) + 1 > MAX_LINE or not lines[-1].endswith(" "):
            return None
        lines[-1] = lines[-1][:-1]
        lines.append(" " + word)
    return (EOL.join(lines) + EOL).encode("ascii")


def fold_address(name: str, display_name: str, addr_spec: str) -> bytes | None:
    """``Name <addr>`` (or a bare address) when neither needs quoting or encoding."""
    if not _SIMPLE_ADDR.fullmatch(addr_spec):
        return None
    if not display_name:
        return fold_plain(name, addr_spec)
    if not _SIMPLE_NAME.fullmatch(display_name):
        return None
    return fold_plain(name, f"{display_name} <{addr_spec}>")


def fold_message_id(name: str, value: str) -> bytes | None:
    if not _SIMPLE_MSGID.fullmatch(value):
        return None
    return fold_plain(name, value)


def fold_stdlib(policy: Any, name: str, value: object) -> bytes:
    """One header through the stdlib, exactly as ``BytesGenerator`` writes it."""
    return bytes(policy.fold_binary(name, policy.header_factory(name, value)))


def fold_list_header(name: str, value: str, eol: str = EOL) -> str:
    """An RFC 2369 list header (``<url>, <mailto:…>``) folded only between entries.

    The stdlib would turn a URL longer than a line into an RFC 2047 encoded word,
    which no mail client reads back as a URL: a long entry stays whole on its line
    (RFC 5322 allows up to 998 octets) and the comma-separated entries wrap.
    """
    entries = value.split(", ")
    pieces = [entry + "," for entry in entries[:-1]] + entries[-1:]
    lines: list[str] = []
    line = name + ":"
    for piece in pieces:
        if line == name + ":" or len(line) + 1 + len(piece) <= MAX_LINE:
            line += " " + piece
        else:
            lines.append(line)
            line = " " + piece
    lines.append(line)
    return eol.join(lines) + eol


# ---------------------------------------------------------------- SMTP DATA


def _stuffed_pieces(raw: bytes) -> list[bytes | memoryview]:
    """``raw``, which starts a line, in pieces with a dot added in front of every line
    that starts with one (slices of a memoryview: the caller's join copies once)."""
    view = memoryview(raw)
    pieces: list[bytes | memoryview] = [b"."] if raw.startswith(b".") else []
    start = 0
    at = raw.find(b"\n.")
    while at >= 0:
        pieces.append(view[start : at + 1])
        pieces.append(b".")
        start = at + 1
        at = raw.find(b"\n.", start + 1)
    pieces.append(view[start:])
    return pieces


def smtp_data(raw: bytes) -> bytes:
    """``raw`` dot-stuffed (RFC 5321 4.5.2: a line that starts with "." gets another)
    and ended with CRLF "." CRLF, as one buffer for one write.

    A digest has a handful of such lines (MJML's CSS), so the cuts are found with
    ``bytes.find`` and the pieces joined once: ``bytes.replace`` with a longer
    replacement costs half as much again."""
    pieces = _stuffed_pieces(raw)
    if not raw.endswith(b"\r\n"):
        pieces.append(b"\r\n")
    pieces.append(b".\r\n")
    return b"".join(pieces)


def line_stuffed(part: bytes) -> bytes:
    """``part``, which starts a line, dot-stuffed: what it becomes inside SMTP DATA
    (the skeleton's pieces each start a line, so each is stuffed on its own)."""
    if part[:1] != b"." and b"\n." not in part:
        return part
    return b"".join(_stuffed_pieces(part))
