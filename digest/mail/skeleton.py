"""The MIME skeleton of one issue: prepared once, filled per recipient by byte joins.

:meth:`MessageSkeleton.compile` builds the stdlib message for a probe recipient, keeps
every header that is the same for everyone as folded bytes, cuts the static glue
(blank line, boundaries, part headers) out of the reference bytes, and turns the text
and HTML bodies into :class:`digest.mail.mimefast.QPTemplate` objects. It then checks its
own output against the stdlib path for a few probes and refuses (the caller falls
back to the stdlib path) if a single byte differs. Per recipient only the To,
Message-ID and List-Unsubscribe headers and the placeholder lines are produced.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from markupsafe import escape

from digest.core.mailsafe import fit_display_name
from digest.core.recipient import Recipient
from digest.mail import mimefast
from digest.mail.parts import MAIL_POLICY, greeting, preferences_url, to_address
from digest.mail.placeholders import placeholder

if TYPE_CHECKING:
    # Only a type here: the message module uses the skeleton, not the other way round.
    from digest.mail.dkim import DkimSigner
    from digest.mail.message import IssueMessage

logger = logging.getLogger(__name__)

#: Headers whose value differs per recipient; every other header is folded once.
DYNAMIC_HEADERS = ("To", "Message-ID", "List-Unsubscribe")
PROBES = (
    Recipient(subscriber_id=1, email="probe.reader@example.com", name="Probe Reader"),
    Recipient(subscriber_id=22, email="probe@example.com", name=""),
    Recipient(subscriber_id=333, email="p@example.com", name='Zoë "Q" O\'Brien-Ünïcode'),
)
_STANDARD_VALUES = ["greeting", "unsubscribe_url", "preferences_url"]
#: Characters quoted-printable leaves alone (anything else goes through the table).
_QP_UNSAFE = re.compile(r"[^\t -<>-~]")


def _qp(value: str) -> str:
    return mimefast.qp_translate(value) if _QP_UNSAFE.search(value) else value


class MessageSkeleton:
    """One issue's message with the per-recipient parts left open."""

    def __init__(self, message: IssueMessage, text: str, html: str) -> None:
        self.message = message
        self.headers: list[bytes | str] = []
        tokens = {key: placeholder(key) for key in message.values(PROBES[0])}
        # The standard pair of values is computed inline (one name clean-up, one token
        # per recipient); anything else goes through IssueMessage.values().
        self.standard = list(tokens) == _STANDARD_VALUES
        self.text = mimefast.QPTemplate(text, tokens)
        self.html = mimefast.QPTemplate(html, tokens)
        self.after_headers = b""
        self.body_start = b""  # after_headers without the blank line: where the body begins
        self.between = b""
        self.tail = b""
        self._mid = message.message_id(PROBES[0])
        self._mid_shape: tuple[bytes, bytes, int] | None = None
        self._lu_shape: dict[int, tuple[bytes, bytes]] = {}
        # after_headers, between and tail as they go into SMTP DATA (dot-stuffed)
        self._stuffed_after_headers = self._stuffed_between = self._stuffed_tail = b""

    # ------------------------------------------------------------ compile

    @classmethod
    def compile(cls, message: IssueMessage) -> MessageSkeleton:
        probe = PROBES[0]
        reference = message.build(probe)
        skeleton = cls(message, message.text, message.html)
        for name, value in reference.raw_items():
            if name in DYNAMIC_HEADERS:
                skeleton.headers.append(name)
            else:
                skeleton.headers.append(MAIL_POLICY.fold_binary(name, value))
        skeleton._learn_message_id()
        raw = reference.as_bytes(policy=MAIL_POLICY)
        values = message.values(probe)
        text_values, html_values = cls._body_values(values)
        head = b"".join(skeleton._headers(probe, values))
        text_parts: list[bytes] = []
        html_parts: list[bytes] = []
        skeleton.text.render(text_values, text_parts)
        skeleton.html.render(html_values, html_parts)
        text, html = b"".join(text_parts), b"".join(html_parts)
        at_text = raw.find(text, len(head))
        at_html = raw.find(html, at_text + len(text))
        if not raw.startswith(head) or at_text < 0 or at_html < 0:
            raise ValueError("the skeleton does not line up with the stdlib message")
        skeleton.after_headers = raw[len(head) : at_text]
        if not skeleton.after_headers.startswith(b"\r\n"):
            raise ValueError("the skeleton's header block does not end where the body starts")
        skeleton.body_start = skeleton.after_headers[2:]
        skeleton.between = raw[at_text + len(text) : at_html]
        skeleton.tail = raw[at_html + len(html) :]
        skeleton._stuffed_after_headers = mimefast.line_stuffed(skeleton.after_headers)
        skeleton._stuffed_between = mimefast.line_stuffed(skeleton.between)
        skeleton._stuffed_tail = mimefast.line_stuffed(skeleton.tail)
        for other in PROBES:
            stuffed: list[bytes] = []
            parts = skeleton._parts(other, stuffed)
            slow = message.as_bytes_slow(other)
            if parts is None or b"".join(parts) != slow:
                raise ValueError(f"fast bytes differ from the stdlib's for {other.email}")
            if not all(part.endswith(b"\r\n") for part in parts if part):
                raise ValueError("a piece of the message does not end a line")
            if b"".join(stuffed) + b".\r\n" != mimefast.smtp_data(slow):
                raise ValueError(f"fast SMTP data differ from the stdlib's for {other.email}")
        return skeleton

    def _learn_message_id(self) -> None:
        # Every Message-ID of an issue has one shape (week, 20 hex digits, domain):
        # when the probe's folds plainly, keep the bytes around the digest.
        folded = mimefast.fold_message_id("Message-ID", self._mid)
        digest = self._mid.partition(".")[2].partition("@")[0]
        if folded is None or len(digest) != 20 or folded.count(digest.encode()) != 1:
            return
        before, _, after = folded.partition(digest.encode())
        self._mid_shape = (before, after, len(digest))

    # ------------------------------------------------------------ per recipient

    @staticmethod
    def _body_values(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        text = {k: _qp(v) for k, v in values.items()}
        html = {k: _qp(str(escape(v))) for k, v in values.items()}
        return text, html

    def _values(self, recipient: Recipient) -> tuple[str, dict[str, str]]:
        name = self.message.display_name(recipient)
        if self.standard:
            url = self.message.unsubscribe_url(recipient)
            return name, {
                "greeting": greeting(name),
                "unsubscribe_url": url,
                "preferences_url": preferences_url(url),
            }
        return name, self.message.values(recipient)

    def _message_id(self, recipient: Recipient) -> bytes:
        value = self.message.message_id(recipient)
        if self._mid_shape is not None:
            before, after, size = self._mid_shape
            digest = value.partition(".")[2].partition("@")[0]
            if len(digest) == size and len(value) == len(self._mid):
                return before + digest.encode("ascii") + after
        return mimefast.fold_message_id("Message-ID", value) or mimefast.fold_stdlib(
            MAIL_POLICY, "Message-ID", value
        )

    def _list_unsubscribe(self, recipient: Recipient, url: str) -> bytes:
        value = self.message.list_unsubscribe(recipient, url)
        if not value.isascii():
            return mimefast.fold_stdlib(MAIL_POLICY, "List-Unsubscribe", value)
        # The fold depends only on the entries' lengths, and the URL is one entry.
        shape = self._lu_shape.get(len(url))
        if shape is None and ", " not in url and len(self._lu_shape) < 16:
            folded = mimefast.fold_list_header("List-Unsubscribe", value).encode("ascii")
            before, found, after = folded.partition(url.encode("ascii"))
            if found:
                shape = self._lu_shape[len(url)] = (before, after)
            return folded
        if shape is None:
            return mimefast.fold_list_header("List-Unsubscribe", value).encode("ascii")
        return shape[0] + url.encode("ascii") + shape[1]

    def _headers(
        self, recipient: Recipient, values: dict[str, str], name: str | None = None
    ) -> list[bytes]:
        if name is None:
            name = self.message.display_name(recipient)
        out: list[bytes] = []
        for item in self.headers:
            if isinstance(item, bytes):
                out.append(item)
            elif item == "To":
                out.append(
                    mimefast.fold_address(
                        "To", fit_display_name(name, recipient.email), recipient.email
                    )
                    or mimefast.fold_stdlib(MAIL_POLICY, "To", to_address(name, recipient.email))
                )
            elif item == "Message-ID":
                out.append(self._message_id(recipient))
            else:
                out.append(self._list_unsubscribe(recipient, values["unsubscribe_url"]))
        return out

    def _parts(
        self, recipient: Recipient, stuffed: list[bytes] | None = None
    ) -> list[bytes] | None:
        """The recipient's message in pieces; with ``stuffed``, the same pieces
        dot-stuffed for SMTP DATA are appended to it. Every piece starts a line (the
        compile checks it), so each is stuffed on its own, the static ones once."""
        name, values = self._values(recipient)
        if any("\n" in v or "\r" in v for v in values.values()):
            return None
        text_values, html_values = self._body_values(values)
        parts = self._headers(recipient, values, name)
        if stuffed is not None:
            # A header line starts with its name or, folded, with white space: no dot.
            stuffed.extend(parts)
            stuffed.append(self._stuffed_after_headers)
        parts.append(self.after_headers)
        self.text.render(text_values, parts, stuffed)
        parts.append(self.between)
        if stuffed is not None:
            stuffed.append(self._stuffed_between)
        self.html.render(html_values, parts, stuffed)
        parts.append(self.tail)
        if stuffed is not None:
            stuffed.append(self._stuffed_tail)
        return parts

    def render(self, recipient: Recipient) -> bytes | None:
        """The recipient's bytes; None when a value is outside what the skeleton handles."""
        parts = self._parts(recipient)
        return None if parts is None else b"".join(parts)

    def render_data(self, recipient: Recipient) -> bytes | None:
        """:meth:`render` as SMTP DATA, dot-stuffed and ended: what
        :func:`mimefast.smtp_data` makes of it, without scanning the static parts again."""
        stuffed: list[bytes] = []
        if self._parts(recipient, stuffed) is None:
            return None
        stuffed.append(b".\r\n")
        return b"".join(stuffed)

    def render_signed_data(self, recipient: Recipient, signer: DkimSigner) -> bytes | None:
        """:meth:`render_data` with a DKIM-Signature field in front, signed over the
        parts as they are: the body is hashed without being joined first."""
        stuffed: list[bytes] = []
        parts = self._parts(recipient, stuffed)
        if parts is None:
            return None
        count = len(self.headers)
        body = parts[count:]
        body[0] = self.body_start
        # The field's lines start with its name or a space: nothing to stuff.
        stuffed.insert(0, signer.field(parts[:count], body))
        stuffed.append(b".\r\n")
        return b"".join(stuffed)
