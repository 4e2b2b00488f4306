"""What both ways of building a message share: the header policy, the To address, the
From and Reply-To mailboxes, the greeting and the preference link.

:class:`digest.mail.message.IssueMessage` builds each recipient's copy through the
stdlib; :class:`digest.mail.skeleton.MessageSkeleton` builds the same bytes by joins.
Both take these pieces from here, so the skeleton needs nothing of the message module
(which uses the skeleton).
"""

from __future__ import annotations

import logging
from email import errors, policy
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.utils import formataddr, parseaddr
from typing import Any

from digest.core.mailsafe import check_address, fit_display_name, header_text
from digest.exceptions import AddressError
from digest.mail import mimefast

logger = logging.getLogger(__name__)


class _ListHeader(UnstructuredHeader):
    """List-Unsubscribe and friends: entries are URLs in angle brackets and must never
    be folded into RFC 2047 encoded words (the stdlib does that to a long URL)."""

    def fold(self, *, policy: Any) -> str:
        value = str(self)
        if not value.isascii():
            return str(super().fold(policy=policy))  # type: ignore[misc]
        return mimefast.fold_list_header(self.name, value, policy.linesep)  # type: ignore[attr-defined]


_HEADERS = HeaderRegistry()
for _name in ("list-unsubscribe", "list-help", "list-subscribe", "list-archive"):
    _HEADERS.map_to_type(_name, _ListHeader)  # type: ignore[arg-type]

#: CRLF line ends and 78-column folding: what SMTP and every provider expects.
MAIL_POLICY = policy.SMTP.clone(header_factory=_HEADERS)
#: The same for a recipient whose local part is not ASCII (RFC 6531/6532): headers in
#: raw UTF-8, only ever handed to an SMTPUTF8 server or written to a Maildir.
MAIL_POLICY_UTF8 = MAIL_POLICY.clone(utf8=True)


def greeting(name: str) -> str:
    """The greeting line for a display name (already one line): 'Hi Ada,' from the
    first name, or nothing at all: a reader without a name is not called "there"."""
    if "," in name:  # "Lovelace, Ada"
        name = name.partition(",")[2]
    first = name.split(maxsplit=1)[0].strip(";:") if name.strip() else ""
    return f"Hi {first}," if first else ""


def safe_mailbox(value: str) -> str:
    """A configured ``Name <addr>`` (DIGEST_FROM, DIGEST_REPLY_TO) rebuilt from its parts:
    the name through :func:`header_text`, the address checked (AddressError if bad)."""
    name, addr = parseaddr(value)
    name = header_text(name, 100)
    addr = check_address(addr)
    return formataddr((name, addr)) if name else addr


def to_address(display_name: str, email: str) -> Address:
    """The To header's value. Built from its parts, so a non-ASCII local part (sent only
    with SMTPUTF8) is not refused by the stdlib's addr-spec parser."""
    address = check_address(email)
    local, _, domain = address.rpartition("@")
    try:
        return Address(
            display_name=fit_display_name(display_name, address), username=local, domain=domain
        )
    except (ValueError, errors.HeaderParseError, errors.MessageDefect) as exc:
        raise AddressError(f"{address[:80]!r} cannot go into a To header: {exc}") from exc


def preferences_url(unsubscribe_url: str) -> str:
    """The reader's preference page: the same signed token as their unsubscribe link
    (both let the reader, and only the reader, change their subscription)."""
    return unsubscribe_url.replace("/unsubscribe/", "/preferences/", 1)
