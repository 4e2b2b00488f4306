"""Reading one message that came back by mail: a bounce, a complaint, an auto-reply
or a person's reply.

- **Bounces.** ``flufl.bounce`` (Mailman's detectors: RFC 3464 DSNs and the
  non-standard formats of Exim, qmail, old Exchange, …) finds which addresses failed,
  permanently or for now. How hard each failure is comes from the DSN's own fields
  (RFC 3464 ``Action`` and ``Status``), else from the RFC 3463 status code in the
  notice's text: ``delayed`` is a warning (the MTA keeps trying); a failure with a
  4.x.x status (the MTA gave up on a transient condition) or 5.2.2 (mailbox full) is
  *soft*; any other failure is *hard*.
- **Complaints.** An ARF report (RFC 5965, ``multipart/report;
  report-type=feedback-report``) with ``Feedback-Type: abuse``; other feedback types
  (``not-spam``, ``virus`` …) are read and ignored.
- **Auto-replies** (ignored): RFC 3834 ``Auto-Submitted`` other than ``no``, and the
  de-facto markers vacation responders, Exchange and challenge-response systems set
  (``X-Autoreply``, ``X-Autorespond``, ``X-Auto-Response-Suppress``,
  ``Precedence: auto_reply/bulk/junk``), or an out-of-office subject prefix.
- **Replies**: anything else from a person.

A notice from a mail system (null sender, ``MAILER-DAEMON``, ``postmaster``) in which
nothing could be read is *unparsed*: the VERP address it came to still names the
delivery (see :mod:`digest.webhooks.mail_events`).

Also read: the returned message's ``Return-Path`` (our VERP address, written by the
receiving MTA) and ``List-Unsubscribe`` (our signed token), which tie a complaint to
its reader when the report hides the address.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from enum import StrEnum

from flufl.bounce import all_failures

logger = logging.getLogger(__name__)


class Kind(StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    FEEDBACK = "feedback"  # an ARF report of another type: ignored
    AUTO_REPLY = "auto-reply"
    REPLY = "reply"
    UNPARSED = "unparsed"  # a mail system's notice nobody could read


class Severity(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    DELAYED = "delayed"


@dataclass(frozen=True)
class Failure:
    """One recipient a bounce reports."""

    address: str
    severity: Severity
    status: str = ""  # RFC 3463, e.g. "5.1.1"
    diagnostic: str = ""


@dataclass(frozen=True)
class Reading:
    kind: Kind
    report_id: str  # the notice's Message-ID, else a hash of its bytes
    failures: tuple[Failure, ...] = ()
    feedback_type: str = ""
    #: addresses a complaint names (Original-Rcpt-To, the returned message's To)
    complained: tuple[str, ...] = ()
    #: our VERP address(es) in the returned message (Return-Path, Original-Mail-From)
    returned_senders: tuple[str, ...] = ()
    #: List-Unsubscribe URLs in the returned message (they carry the reader's token)
    unsubscribe_urls: tuple[str, ...] = ()
    #: the returned message's Message-ID (ours, deterministic per issue and reader)
    original_message_id: str = ""
    sender: str = ""  # the notice's From address
    subject: str = ""
    occurred_at: datetime | None = None
    detail: str = ""
    why: str = ""  # for auto-replies: the marker that said so
    #: where it was delivered (Delivered-To and kin, the mailbox path's envelope) and To
    addressed_to: tuple[str, ...] = field(default=())


#: An RFC 3463 enhanced status code in free text.
_STATUS_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_URL_IN_BRACKETS = re.compile(r"<(https?://[^>\s]+)>")
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-response-suppress")
_AUTO_PRECEDENCE = ("auto_reply", "bulk", "junk")
_AUTO_SUBJECTS = (
    "auto:",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "out of office",
    "out of the office",
)
#: Fields that tell where a mailbox copy was delivered (the poller's envelope), and To:
#: a VERP address found in any of them still has to pass its MAC check.
DELIVERY_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to")


def parse_message(raw: bytes) -> Message:
    return message_from_bytes(raw)


def report_id(msg: Message, raw: bytes) -> str:
    found = parseaddr(str(msg.get("message-id", "")))[1] or str(msg.get("message-id", "")).strip()
    if found and len(found) <= 250:
        return f"mid:{found.strip('<>')}"
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:40]


def _date(msg: Message) -> datetime | None:
    try:
        when = parsedate_to_datetime(str(msg.get("date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _report_type(msg: Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "") or "").lower()


def _parts(msg: Message, content_type: str) -> list[Message]:
    return [p for p in msg.walk() if p.get_content_type() == content_type]


def _returned(msg: Message) -> Message | None:
    """The message a report returns: a message/rfc822 part, else text/rfc822-headers."""
    for part in msg.walk():
        if part is msg:
            continue
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if part.get_content_type() == "text/rfc822-headers":
            return HeaderParser().parsestr(_text(part))
    return None


def _notice_text(msg: Message) -> str:
    """The human-readable part(s) of a notice, without the returned message."""
    out: list[str] = []

    def visit(part: Message) -> None:
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers", "message/delivery-status"):
            return
        if part.is_multipart():
            payload = part.get_payload()
            for sub in payload if isinstance(payload, list) else []:
                if isinstance(sub, Message):
                    visit(sub)
        elif part.get_content_maintype() == "text":
            text = _text(part)
            # An inline copy of the message (Exim, qmail) is not the notice.
            for marker in ("------ This is a copy", "--- Below this line is a copy"):
                text = text.partition(marker)[0]
            out.append(text)

    visit(msg)
    return "\n".join(out)


def _dsn_fields(msg: Message) -> dict[str, tuple[str, str, str]]:
    """address → (action, status, diagnostic) from every RFC 3464 per-recipient block."""
    found: dict[str, tuple[str, str, str]] = {}
    for part in _parts(msg, "message/delivery-status"):
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # the first block is about the message, not a recipient
            if not isinstance(block, Message):
                continue
            action = str(block.get("action", "")).strip().lower()
            status = str(block.get("status", "")).strip().split(" ")[0]
            diagnostic = " ".join(str(block.get("diagnostic-code", "")).split())
            for name in ("original-recipient", "final-recipient", "x-actual-recipient"):
                value = str(block.get(name, ""))
                address = parseaddr(value.partition(";")[2].strip())[1]
                if address:
                    found.setdefault(address.lower(), (action, status, diagnostic))
    return found


def worst_failure(failures: tuple[Failure, ...]) -> Failure | None:
    """Hard before soft before delayed; None for no failures."""
    order = list(Severity)
    return min(failures, key=lambda f: order.index(f.severity), default=None)


def severity_of(action: str, status: str) -> Severity:
    if action.startswith("delayed"):
        return Severity.DELAYED
    if status.startswith("4.") or status == "5.2.2":
        return Severity.SOFT
    return Severity.HARD


def _failures(msg: Message) -> tuple[Failure, ...]:
    temporary, permanent = all_failures(msg)
    if not temporary and not permanent:
        return ()
    fields = _dsn_fields(msg)
    text = _notice_text(msg)
    code = _STATUS_CODE.search(text)
    text_status = ".".join(code.groups()) if code else ""
    failures = []
    for raw, temp in [(a, True) for a in sorted(temporary)] + [
        (a, False) for a in sorted(permanent)
    ]:
        address = raw.decode("ascii", "replace")
        action, status, diagnostic = fields.get(address.lower(), ("", "", ""))
        if not action:
            action = "delayed" if temp else "failed"
            status = status or text_status
            diagnostic = diagnostic or _line_with(text, text_status)
        failures.append(Failure(address, severity_of(action, status), status, diagnostic[:300]))
    return tuple(failures)


def _line_with(text: str, needle: str) -> str:
    if not needle:
        return ""
    for line in text.splitlines():
        if needle in line:
            return " ".join(line.split())
    return ""


def _feedback(msg: Message) -> Message | None:
    for part in _parts(msg, "message/feedback-report"):
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0]
        if isinstance(inner, str):
            return HeaderParser().parsestr(inner)
    return None


def _auto_reply_marker(msg: Message) -> str:
    submitted = str(msg.get("auto-submitted", "")).strip().lower()
    if submitted and not submitted.startswith("no"):
        return f"Auto-Submitted: {submitted}"
    for name in _AUTO_HEADERS:
        if msg.get(name) is not None:
            return name
    precedence = str(msg.get("precedence", "") or msg.get("x-precedence", "")).strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    subject = " ".join(str(msg.get("subject", "")).split()).lower()
    for prefix in _AUTO_SUBJECTS:
        if subject.startswith(prefix):
            return f"subject {prefix!r}"
    return ""


def _from_daemon(msg: Message) -> bool:
    sender = parseaddr(str(msg.get("from", "")))[1].lower()
    return sender.partition("@")[0] in _DAEMONS


def _null_sender(msg: Message) -> bool:
    return str(msg.get("return-path", "")).strip() == "<>"


def _returned_fields(original: Message | None) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    if original is None:
        return (), (), ""
    senders = tuple(
        a for _, a in getaddresses([str(v) for v in original.get_all("return-path", [])]) if a
    )
    urls = tuple(
        url
        for value in original.get_all("list-unsubscribe", [])
        for url in _URL_IN_BRACKETS.findall(" ".join(str(value).split()))
    )
    return senders, urls, str(original.get("message-id", "")).strip()


def _addresses(values: list[str]) -> tuple[str, ...]:
    return tuple(a for _, a in getaddresses(values) if "@" in a)


def read(raw: bytes) -> Reading:
    """What ``raw`` (one message as received) is; never raises on malformed input."""
    msg = parse_message(raw)
    original = _returned(msg)
    senders, urls, original_id = _returned_fields(original)
    base = Reading(
        kind=Kind.REPLY,
        report_id=report_id(msg, raw),
        returned_senders=senders,
        unsubscribe_urls=urls,
        original_message_id=original_id,
        sender=parseaddr(str(msg.get("from", "")))[1],
        subject=" ".join(str(msg.get("subject", "")).split())[:300],
        occurred_at=_date(msg),
        addressed_to=_addresses(
            [str(v) for name in DELIVERY_HEADERS for v in msg.get_all(name, [])]
        ),
    )
    report_type = _report_type(msg)
    feedback = _feedback(msg) if report_type == "feedback-report" else None
    if feedback is not None:
        kind = str(feedback.get("feedback-type", "")).strip().lower()
        named = [str(v) for v in feedback.get_all("original-rcpt-to", [])]
        if original is not None:
            named += [str(v) for v in original.get_all("to", [])]
        mail_from = _addresses([str(v) for v in feedback.get_all("original-mail-from", [])])
        return replace(
            base,
            kind=Kind.COMPLAINT if kind == "abuse" else Kind.FEEDBACK,
            feedback_type=kind,
            complained=tuple(dict.fromkeys(_addresses(named))),
            returned_senders=tuple(dict.fromkeys(senders + mail_from)),
            detail=f"feedback-type {kind or '?'} from {base.sender or '?'}"[:300],
        )
    failures = _failures(msg)
    worst = worst_failure(failures)
    if worst is not None:
        detail = worst.diagnostic or worst.status or "bounce"
        return replace(base, kind=Kind.BOUNCE, failures=failures, detail=detail[:300])
    if _from_daemon(msg) or report_type == "delivery-status":
        return replace(base, kind=Kind.UNPARSED, detail="a mail system's notice, unreadable")
    marker = _auto_reply_marker(msg)
    if marker:
        return replace(base, kind=Kind.AUTO_REPLY, why=marker)
    if _null_sender(msg):  # RFC 5321: only notices and auto-replies use the null sender
        return replace(base, kind=Kind.UNPARSED, detail="a notice from the null sender")
    return base
