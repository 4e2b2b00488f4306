"""Checking produced mail bytes for header and body injection (tests of issue 13, item 1).

:func:`assert_clean` reads a message the way a receiving mail system would: the raw
header block line by line (every line a known header or a continuation), then the
stdlib parser (which decodes RFC 2047 encoded words, like every mail client): no
decoded value holds a line break, no header appears that we did not write, and the
body is our two-part ``multipart/alternative``.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage

DIGEST_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
}
CONFIRM_HEADERS = (DIGEST_HEADERS - {"List-Id"}) | {"Auto-Submitted"}
_HEADER_LINE = re.compile(rb"^([A-Za-z0-9-]+):")


def encoded(text: str, kind: str = "b") -> str:
    """``text`` as one RFC 2047 encoded word."""
    data = text.encode("utf-8")
    if kind == "b":
        return f"=?utf-8?b?{base64.b64encode(data).decode()}?="
    quoted = "".join(chr(c) if chr(c).isalnum() else f"={c:02X}" for c in data)
    return f"=?utf-8?q?{quoted}?="


#: What an attacker would put in a name, title or subject.
ATTACKS = [
    encoded("x\r\nSubject: Reset your password\r\nX-Injected: yes\r\n"),
    encoded("x\r\n\r\nINJECTED BODY"),
    encoded("\r\nX-Injected: q", "q"),
    "Ada " + encoded("\nX-Injected: 1") + " Lovelace",
    "a" + encoded("\rX-Injected: 2") + "b",
    '"' + encoded("\r\nX-Injected: 3") + '"',
    "=?utf-8?b?" + encoded("\r\nX-Injected: 4")[10:],
    "Zoë =?iso-8859-1?q?=0D=0AX-Injected:_5?= 李",
    "plain\r\nX-Injected: literal",
]


def assert_clean(raw: bytes, allowed: set[str]) -> EmailMessage:
    """The parsed message, after checking it carries no injected header or body."""
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, "no blank line after the headers"
    names: list[str] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        found = _HEADER_LINE.match(line)
        assert found is not None, f"header line that is no header: {line[:120]!r}"
        names.append(found.group(1).decode("ascii"))
    unknown = set(names) - allowed
    assert not unknown, f"headers nobody wrote: {unknown}"
    repeated = [n for n, c in Counter(names).items() if c > 1]
    assert not repeated, f"headers written twice: {repeated}"
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    for key, value in msg.items():
        assert "\r" not in str(value) and "\n" not in str(value), (key, str(value))
        assert "x-injected" not in str(value).lower() or key in ("Subject", "To", "List-Id")
    assert msg.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"], parts
    return msg
