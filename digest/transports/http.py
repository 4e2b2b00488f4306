"""What every HTTP email API transport shares: one ``requests`` session, timeouts,
``Retry-After`` / rate-limit parsing and the mapping of whole-request answers onto the
transport contract.

The one rule that shapes this module: **never re-send a POST that may have succeeded**
unless the provider de-duplicates it (an idempotency key). So a failure is classified
by *when* it happened:

- the connection was never made (refused, DNS, connect timeout): nothing was sent,
  retrying is safe → :class:`~digest.exceptions.TransientTransportError`;
- the request went out and no answer came back (read timeout, dropped connection,
  ``504``): the provider may have accepted it. With an idempotency key the batch is
  retried; without one it is reported as *outcome unknown* (see
  :func:`uncertain_results`) and never sent again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from digest import __version__
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import (
    ConfigError,
    TransientTransportError,
    TransportConfigError,
)
from digest.mail.message import IssueMessage
from digest.mail.placeholders import PER_RECIPIENT, placeholder
from digest.transports.base import SendResult, SendStatus, Transport, address_refusal

logger = logging.getLogger(__name__)

#: Never wait less than this for a throttled provider, nor more than this.
MIN_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 3600.0
USER_AGENT = f"weekly-verdict-digest/{__version__}"


class OutcomeUnknown(Exception):
    """The request was sent and no answer came back; it may have been accepted."""


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or, failing that, the
    providers' rate-limit reset headers; None when the answer names no delay."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return _clamp(float(value))
        except ValueError:
            try:
                return _clamp(parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError, IndexError):
                pass
    for name in ("RateLimit-Reset", "X-RateLimit-Reset"):
        raw = headers.get(name) or headers.get(name.lower())
        if not raw:
            continue
        try:
            reset = float(raw.strip())
        except ValueError:
            continue
        # Providers disagree: seconds to wait (Resend), epoch seconds (SendGrid) or
        # epoch milliseconds. Magnitude tells them apart.
        if reset > 1e12:
            return _clamp(reset / 1000 - now)
        if reset > 1e9:
            return _clamp(reset - now)
        return _clamp(reset)
    return None


def _clamp(seconds: float) -> float:
    return max(MIN_RETRY_AFTER, min(MAX_RETRY_AFTER, seconds))


def _nothing_sent(exc: BaseException) -> bool:
    """True when the connection failed before any byte of the request left."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, NewConnectionError | NameResolutionError):
            return True
        if isinstance(item, BaseException):
            stack.extend(item.args)
            stack.append(item.__cause__)
            stack.append(item.__context__)
        reason = getattr(item, "reason", None)
        if reason is not None:
            stack.append(reason)
    return False


def uncertain_results(recipients: Sequence[Recipient], reason: str) -> list[SendResult]:
    """Results for a batch that may or may not have been accepted.

    Reported as ``sent`` without a provider id: re-sending could deliver the issue twice
    and failing would suppress working addresses. The provider's webhooks (delivered,
    bounced) later settle what happened; the log names every affected delivery.
    """
    ids = [r.delivery_id for r in recipients]
    logger.warning(
        "outcome unknown for %d recipients (%s); not re-sent to avoid duplicates: deliveries %s",
        len(recipients),
        reason,
        ids,
    )
    note = f"outcome unknown: {reason}; not re-sent to avoid a duplicate"
    return [SendResult(r, SendStatus.SENT, provider_id=None, error=note) for r in recipients]


def secret(value: Any, setting: str) -> str:
    """A required secret setting's value, or a ConfigError naming the variable."""
    raw = value.get_secret_value() if value is not None else ""
    if not raw:
        raise ConfigError(f"{setting} is not set")
    return str(raw)


def describe(response: requests.Response, limit: int = 300) -> str:
    """A one-line summary of an error answer for logs and ``last_error``."""
    body = " ".join(response.text.split())[:limit]
    return f"HTTP {response.status_code}: {body}" if body else f"HTTP {response.status_code}"


class HttpTransport(Transport):
    """Base of the API transports: subclasses implement :meth:`send_chunk`."""

    #: True when the provider de-duplicates a re-sent request (idempotency key)
    idempotent: bool = False

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self._session = session
        self._own_session = session is None
        self.requests_made = 0
        self.bytes_sent = 0

    # ------------------------------------------------------------ session

    def open(self) -> None:
        if self._session is None:
            self._session = requests.Session()
            self._session.headers["User-Agent"] = USER_AGENT
            self._own_session = True

    def close(self) -> None:
        if self._session is not None and self._own_session:
            self._session.close()
            self._session = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self.open()
        assert self._session is not None
        return self._session

    # ------------------------------------------------------------ requests

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        """POST once (the session never retries on its own) and classify transport errors."""
        kwargs.setdefault(
            "timeout", (min(10.0, self.settings.http_timeout), self.settings.http_timeout)
        )
        kwargs.setdefault("allow_redirects", False)
        try:
            response = self.session.post(url, **kwargs)
        except requests.RequestException as exc:
            if _nothing_sent(exc):
                raise TransientTransportError(f"{self.name}: cannot connect: {exc}") from exc
            if self.idempotent:
                raise TransientTransportError(
                    f"{self.name}: no answer ({type(exc).__name__}); retried with the same "
                    "idempotency key"
                ) from exc
            raise OutcomeUnknown(f"{self.name}: no answer ({type(exc).__name__})") from exc
        self.requests_made += 1
        body = response.request.body
        self.bytes_sent += len(body) if isinstance(body, bytes | str) else 0
        return response

    def raise_for_request(self, response: requests.Response) -> None:
        """Whole-request answers: credentials → config error, throttling and 5xx → retry.

        Leaves 2xx and the other 4xx to the provider module, which knows which of them
        name single recipients.
        """
        code = response.status_code
        if code in (401, 403):
            raise TransportConfigError(
                f"{self.name}: credentials or sender rejected ({describe(response)}); "
                "check the API key and the verified sender domain"
            )
        if code == 429:
            raise TransientTransportError(
                f"{self.name}: throttled ({describe(response, 120)})",
                retry_after=parse_retry_after(response.headers),
            )
        if code == 504 and not self.idempotent:
            raise OutcomeUnknown(f"{self.name}: gateway timeout")
        if code >= 500:
            raise TransientTransportError(
                f"{self.name}: server error ({describe(response, 120)})",
                retry_after=parse_retry_after(response.headers),
            )

    def json_body(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            # A 2xx we cannot read: the request was accepted, so never re-send it.
            raise OutcomeUnknown(
                f"{self.name}: unreadable answer {describe(response, 80)}"
            ) from exc

    # ------------------------------------------------------------ the contract

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        if not recipients:
            return []
        if len(recipients) > self.max_batch:
            raise ValueError(f"{self.name} accepts at most {self.max_batch} recipients per batch")
        refused = {i: address_refusal(r) for i, r in enumerate(recipients)}
        usable = [r for i, r in enumerate(recipients) if refused[i] is None]
        try:
            done = iter(self.send_chunk(message, usable) if usable else [])
        except OutcomeUnknown as exc:
            done = iter(uncertain_results(usable, str(exc)))
        # One unusable address fails alone; the others go out in one request as before.
        return [refused[i] or next(done) for i in range(len(recipients))]

    def send_chunk(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        raise NotImplementedError


def metadata(message: IssueMessage, recipient: Recipient) -> dict[str, str]:
    """Custom arguments the provider echoes in its webhooks, so events find the issue
    and the delivery even where a provider message id is shared by a whole batch."""
    data = {"digest_issue": str(message.issue_id)}
    if recipient.delivery_id is not None:
        data["digest_delivery"] = str(recipient.delivery_id)
    return data


def personal_headers(message: IssueMessage, recipient: Recipient) -> dict[str, str]:
    """The headers an API lets us set: everything but the ones it builds from fields."""
    headers = message.headers(recipient)
    for name in ("From", "To", "Subject", "Date", "Reply-To"):
        headers.pop(name, None)
    return headers


@dataclass(frozen=True)
class StoredTemplate:
    """An issue's body as a provider-side template: ``{{name}}`` (HTML-escaped by the
    provider) in the HTML, ``{{{name}}}`` (as is) in the text, the same subject."""

    key: str
    subject: str
    html: str
    text: str


_MUSTACHE = re.compile(r"\{\{|\}\}")


def stored_template(message: IssueMessage) -> StoredTemplate | None:
    """The message as a Mustache/Handlebars template, or None when it cannot be one
    (no per-recipient values, or its content holds braces a template would read)."""
    names = list(message.values(Recipient(0, "probe@example.com", "")))
    if names != list(PER_RECIPIENT):
        return None
    html, text, subject = message.html, message.text, message.subject
    if any(_MUSTACHE.search(part) for part in (html, text, subject)):
        return None
    for name in names:
        html = html.replace(placeholder(name), "{{" + name + "}}")
        text = text.replace(placeholder(name), "{{{" + name + "}}}")
    digest = hashlib.sha256("\x1f".join((subject, html, text)).encode("utf-8")).hexdigest()
    return StoredTemplate(f"digest-{message.issue_id}-{digest[:16]}", subject, html, text)
