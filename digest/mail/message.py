"""Per-recipient MIME messages from an issue compiled once.

:class:`IssueMessage` holds everything that is the same for every recipient (subject,
compiled HTML and text with placeholders, list headers, the date); per recipient only
the name, address, unsubscribe URL and Message-ID change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from email import errors
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import TYPE_CHECKING

from markupsafe import escape

from digest.core.clock import utcnow
from digest.core.mailsafe import check_address, fit_display_name, header_text, needs_smtputf8
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.core.tokens import TokenMinter, stable_digest, stable_digester
from digest.exceptions import AddressError
from digest.mail import mimefast
from digest.mail.parts import (
    MAIL_POLICY,
    MAIL_POLICY_UTF8,
    greeting,
    preferences_url,
    safe_mailbox,
    to_address,
)
from digest.mail.placeholders import ARCHIVE_URL, BASE_URL, placeholder
from digest.mail.skeleton import MessageSkeleton

if TYPE_CHECKING:
    from digest.mail.dkim import DkimSigner

logger = logging.getLogger(__name__)


_LEGACY_GREETING = "Hi " + placeholder("name") + ","


def per_issue_values(html: str, text: str, archive_url: str, base_url: str = "") -> tuple[str, str]:
    """The frozen HTML and text with the per-issue placeholders filled in (the archive
    link, the base of the counted links); per-recipient ones stay. Issues frozen
    before greetings became whole lines said "Hi [[%name%]],": that becomes the
    greeting placeholder."""
    html = html.replace(placeholder(ARCHIVE_URL), str(escape(archive_url)))
    text = text.replace(placeholder(ARCHIVE_URL), archive_url)
    html = html.replace(placeholder(BASE_URL), str(escape(base_url)))
    text = text.replace(placeholder(BASE_URL), base_url)
    if _LEGACY_GREETING in html or _LEGACY_GREETING in text:
        html = html.replace(_LEGACY_GREETING, placeholder("greeting"))
        text = text.replace(_LEGACY_GREETING, placeholder("greeting"))
    return html, text


class IssueMessage:
    """The issue's email, prepared once; :meth:`as_bytes` makes one recipient's copy."""

    def __init__(
        self,
        *,
        issue_id: int,
        week: str,
        number: int | None = None,
        subject: str,
        html: str,
        text: str,
        settings: Settings,
        date: datetime | None = None,
        test: bool = False,
    ) -> None:
        self.issue_id = issue_id
        self.week = week
        self.number = number
        #: how logs and summaries name the issue: "#12 (2026-W47)"
        self.label = f"#{number} ({week})" if number is not None else week
        self.settings = settings
        self.subject = header_text(("[TEST] " if test else "") + subject, 250)
        #: "view in browser": the current DIGEST_BASE_URL, whenever the issue was frozen.
        #: The public archive has only sent issues, so a test copy (an editor's, before
        #: the send) links to the issue's preview in the console, behind its login.
        ref = number if number is not None else week
        self.archive_url = (
            f"{settings.base_url}/console/issues/{number}/preview"
            if test and number is not None
            else f"{settings.base_url}/archive/{ref}"
        )
        self.html, self.text = per_issue_values(html, text, self.archive_url, settings.base_url)
        self.date = date or utcnow()
        self.date_header = format_datetime(self.date.astimezone(), usegmt=False)
        # Settings are checked at start-up too; the message does not rely on that.
        self.from_header = safe_mailbox(settings.from_address)
        self.reply_to = safe_mailbox(settings.reply_to) if settings.reply_to else None
        self.list_id = f"{header_text(settings.list_name, 100)} <{settings.effective_list_id}>"
        self.mailto = settings.effective_unsubscribe_mailto
        self.domain = settings.from_domain
        self.boundary = "=_digest_" + stable_digest(settings, "boundary", issue_id, length=24)
        # Gmail's feedback loop groups complaints by these fields (campaign, list, mail
        # type, sender); constant per issue, so it costs the fast path nothing.
        campaign = f"issue-{number}" if number is not None else week
        self.feedback_id = f"{campaign}:{settings.effective_list_id}:newsletter:{self.domain}"
        self._message_ids: Callable[[object], str] | None = None
        self._tokens: TokenMinter | None = None
        self._skeleton: MessageSkeleton | None = None
        self._fast_ready = False

    # ------------------------------------------------------------ per recipient values

    def message_id(self, recipient: Recipient) -> str:
        """Deterministic per (issue, subscriber): a resent copy carries the same id."""
        if self._message_ids is None:
            self._message_ids = stable_digester(self.settings, "message-id", self.issue_id)
        digest = self._message_ids(recipient.subscriber_id)[:20]
        return f"<{self.week}.{digest}@{self.domain}>"

    def unsubscribe_url(self, recipient: Recipient) -> str:
        if self._tokens is None:
            self._tokens = TokenMinter(self.settings, "unsubscribe")
        token = self._tokens.for_address(recipient.subscriber_id, recipient.email)
        return f"{self.settings.base_url}/unsubscribe/{token}"

    def list_unsubscribe(self, recipient: Recipient, url: str | None = None) -> str:
        url = url or self.unsubscribe_url(recipient)
        return f"<{url}>, <mailto:{self.mailto}?subject=unsubscribe>"

    @staticmethod
    def display_name(recipient: Recipient) -> str:
        """The name as it may appear in the To header (and the greeting)."""
        return header_text(recipient.name, 100)

    def values(self, recipient: Recipient) -> dict[str, str]:
        """Plain-text values for every placeholder."""
        unsubscribe = self.unsubscribe_url(recipient)
        return {
            "greeting": greeting(self.display_name(recipient)),
            "unsubscribe_url": unsubscribe,
            "preferences_url": preferences_url(unsubscribe),
        }

    def html_for(self, recipient: Recipient) -> str:
        html = self.html
        for key, value in self.values(recipient).items():
            html = html.replace(placeholder(key), str(escape(value)))
        return html

    def text_for(self, recipient: Recipient) -> str:
        text = self.text
        for key, value in self.values(recipient).items():
            text = text.replace(placeholder(key), value)
        return text

    def to_header(self, recipient: Recipient) -> str:
        address = check_address(recipient.email)
        name = fit_display_name(self.display_name(recipient), address)
        if not name:
            return address
        if not address.isascii():  # formataddr refuses a UTF-8 local part
            return str(to_address(name, address))
        return formataddr((name, address))

    def headers(self, recipient: Recipient) -> dict[str, str]:
        """Every header of one recipient's copy, in order (unencoded values)."""
        headers = {
            "From": self.from_header,
            "To": self.to_header(recipient),
            "Subject": self.subject,
            "Date": self.date_header,
            "Message-ID": self.message_id(recipient),
            "List-Id": self.list_id,
            "List-Unsubscribe": self.list_unsubscribe(recipient),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Feedback-ID": self.feedback_id,
        }
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        return headers

    # ------------------------------------------------------------ the stdlib path

    def build(self, recipient: Recipient) -> EmailMessage:
        """One recipient's message through the stdlib ``email`` package."""
        msg = EmailMessage(policy=MAIL_POLICY)
        for key, value in self.headers(recipient).items():
            if key == "To":
                # Address objects encode a non-ASCII display name (RFC 2047) correctly.
                msg[key] = to_address(self.display_name(recipient), recipient.email)
            else:
                msg[key] = value
        msg.set_content(
            self.text_for(recipient), subtype="plain", charset="utf-8", cte="quoted-printable"
        )
        msg.add_alternative(
            self.html_for(recipient), subtype="html", charset="utf-8", cte="quoted-printable"
        )
        # A fixed boundary per issue keeps every copy's bytes reproducible.
        msg.set_boundary(self.boundary)
        return msg

    def as_bytes_slow(self, recipient: Recipient) -> bytes:
        """The reference bytes: :meth:`build` serialised by the stdlib generator.

        Raises AddressError for an address no header can hold; a non-ASCII local part
        gets a UTF-8 header block (the SMTP transport sends it only with SMTPUTF8)."""
        utf8 = needs_smtputf8(recipient.email)
        try:
            return self.build(recipient).as_bytes(policy=MAIL_POLICY_UTF8 if utf8 else MAIL_POLICY)
        except (UnicodeError, errors.HeaderParseError, errors.MessageDefect) as exc:
            raise AddressError(
                f"{recipient.email[:80]!r}: the message cannot be built: {exc}"
            ) from exc

    # ------------------------------------------------------------ the fast path

    def as_bytes(self, recipient: Recipient) -> bytes:
        """One recipient's message, byte for byte what :meth:`as_bytes_slow` gives."""
        skeleton = self._compiled()
        if skeleton is None or not recipient.email.isascii():
            return self.as_bytes_slow(recipient)
        return skeleton.render(recipient) or self.as_bytes_slow(recipient)

    def as_data(self, recipient: Recipient) -> bytes:
        """:meth:`as_bytes` as SMTP DATA: dot-stuffed and ended with CRLF "." CRLF."""
        skeleton = self._compiled()
        if skeleton is not None and recipient.email.isascii():
            data = skeleton.render_data(recipient)
            if data is not None:
                return data
        return mimefast.smtp_data(self.as_bytes(recipient))

    def as_signed_data(self, recipient: Recipient, signer: DkimSigner) -> bytes:
        """:meth:`as_data` with ``signer``'s DKIM-Signature field in front."""
        skeleton = self._compiled()
        if skeleton is not None and recipient.email.isascii():
            data = skeleton.render_signed_data(recipient, signer)
            if data is not None:
                return data
        return mimefast.smtp_data(signer.sign(self.as_bytes(recipient)))

    def _compiled(self) -> MessageSkeleton | None:
        if not self._fast_ready:
            self._fast_ready = True
            try:
                self._skeleton = MessageSkeleton.compile(self)
            except (ValueError, LookupError) as exc:
                logger.warning("issue %s: fast message path unavailable (%s)", self.week, exc)
        return self._skeleton
