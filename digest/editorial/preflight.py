"""The preflight report: what would embarrass a real send, checked before it starts.

``digest preflight`` and the console show it; :func:`digest.jobs.weekly.weekly_job` runs it
before every real send (SMTP or an email API) and refuses on any error. The Maildir
demo and the in-memory transport are exempt. ``DIGEST_ALLOW_UNSAFE_SEND=true`` turns
the errors a local test rig cannot avoid (an http base URL, a test From domain, the
sample postal address) into warnings, which every send then prints.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import requests

from digest.core.recipient import Recipient
from digest.core.settings import SAMPLE_POSTAL_ADDRESS, TEST_DOMAIN_SUFFIXES, TEST_DOMAINS, Settings
from digest.core.wording import plural
from digest.issue.render import GMAIL_CLIP_BYTES
from digest.mail.message import IssueMessage

logger = logging.getLogger(__name__)

OK, WARNING, ERROR = "ok", "warning", "error"
#: Transports that deliver to nobody real: exempt from blocking errors.
EXEMPT_TRANSPORTS = frozenset({"maildir", "memory"})
SUBJECT_WARN_CHARS = 70
SUBJECT_MAX_CHARS = 150
PREHEADER_WARN_CHARS = 140
PROBE = Recipient(subscriber_id=0, email="preflight@example.com", name="Preflight Reader")
_LEFTOVER = re.compile(r"\[\[%|\{\{|\}\}|\{%|%\}")
_TEXT_URL = re.compile(r"https?://\S+")

HealthProbe = Callable[[str, float], tuple[int, Any]]


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():<7} {self.name}: {self.detail}"


@dataclass
class PreflightReport:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.status == ERROR]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARNING]

    @property
    def passed(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }

    def summary(self) -> str:
        return (
            f"preflight: {plural(len(self.errors), 'error')}, "
            f"{plural(len(self.warnings), 'warning')}, "
            f"{plural(sum(1 for c in self.checks if c.status == OK), 'check')} passed"
        )


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.in_style = False
        self.text: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("href") is not None:
            self.links.append(str(values["href"]))
        if tag == "img":
            self.images.append(values)
        if tag in ("style", "script"):
            self.in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if not self.in_style:
            self.text.append(data)


#: What each check's result means for the readers of this send (the console's send
#: page shows it beside the result); whether it blocks is said by :func:`consequence`.
_MEANING: dict[str, dict[str, str]] = {
    "html size": {
        OK: "Gmail shows the whole email, footer and unsubscribe link included",
        WARNING: "Gmail still shows it whole, but a longer edit could get it clipped",
        ERROR: "Gmail would cut it off, hiding the footer and the unsubscribe link",
    },
    "links": {
        OK: "every link opens, over https",
        WARNING: "links go out over plain http: their tokens can be read on the way",
        ERROR: "some links lead nowhere",
    },
    "template fields": {
        OK: "readers see no template markers",
        ERROR: "readers would see raw template markers",
    },
    "images": {
        OK: "screen readers and clients that block images get a description",
        WARNING: "an image says nothing to screen readers or with images off",
        ERROR: "an image has no text for screen readers or with images off",
    },
    "subject": {
        OK: "inboxes show it in full",
        WARNING: "inboxes cut it short",
        ERROR: "the subject is empty or far too long",
    },
    "preheader": {
        OK: "the inbox preview shows the line you wrote",
        WARNING: "inboxes cut the preview line short",
        ERROR: "inboxes show the email's first words as the preview instead",
    },
    "from domain": {
        OK: "replies and bounces reach a real domain",
        WARNING: "the sender's domain takes no replies and fails SPF/DMARC at real inboxes",
        ERROR: "the sender's domain takes no replies and fails SPF/DMARC at real inboxes",
    },
    "postal address": {
        OK: "the footer carries the postal address CAN-SPAM requires",
        WARNING: "the footer shows the sample postal address",
        ERROR: "the footer lacks the postal address CAN-SPAM requires",
    },
    "base url": {
        OK: "unsubscribe and archive links use https",
        WARNING: "unsubscribe and archive links are plain http",
        ERROR: "unsubscribe and archive links are plain http",
    },
    "unsubscribe host": {
        OK: "readers can unsubscribe and change preferences the moment the issue lands",
        WARNING: "it can go, but readers' unsubscribe and preference links fail until "
        "`digest serve` answers at DIGEST_BASE_URL",
        ERROR: "unsubscribe links would reach something other than this app: readers "
        "could not unsubscribe",
    },
}


def consequence(check: Check, *, real: bool) -> str:
    """What ``check``'s result means for the send at hand: what readers get, and
    whether it stops the send (an error does, when the transport reaches real people)."""
    what = _MEANING.get(check.name, {}).get(check.status, "")
    if check.status == ERROR:
        stop = (
            "Blocks this send until it is fixed."
            if real
            else "Would block a real send; this transport reaches nobody, so it does not "
            "block this one."
        )
    elif check.status == WARNING:
        stop = "Does not block this send."
    else:
        stop = ""
    sentence = f"{what[:1].upper()}{what[1:]}." if what else ""
    return f"{sentence} {stop}".strip()


def fetch_health(url: str, timeout: float) -> tuple[int, Any]:
    response = requests.get(url, timeout=timeout, allow_redirects=False)
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def is_test_domain(domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    return domain in TEST_DOMAINS or domain.endswith(TEST_DOMAIN_SUFFIXES) or "." not in domain


def preflight(
    message: IssueMessage,
    settings: Settings,
    *,
    preheader: str,
    real: bool = True,
    health: HealthProbe | None = fetch_health,
) -> PreflightReport:
    """Check one issue's message as a subscriber would get it. ``real`` marks a send to
    real people (SMTP or an API): then an insecure link or a test sender is an error
    unless ``DIGEST_ALLOW_UNSAFE_SEND``. ``health`` fetches a URL (None skips the probe
    of the unsubscribe host)."""
    report = PreflightReport()
    html = message.html_for(PROBE)
    text = message.text_for(PROBE)
    rig = WARNING if settings.allow_unsafe_send or not real else ERROR

    size = len(html.encode("utf-8"))
    percent = round(100 * size / GMAIL_CLIP_BYTES)
    if size > GMAIL_CLIP_BYTES:
        report.add("html size", ERROR, f"{size:,} bytes: Gmail clips the email past 102 KB")
    elif size > 0.8 * GMAIL_CLIP_BYTES:
        report.add("html size", WARNING, f"{size:,} bytes, {percent}% of Gmail's 102 KB clip")
    else:
        report.add("html size", OK, f"{size:,} bytes, {percent}% of Gmail's 102 KB clip")

    parsed = _Links()
    parsed.feed(html)
    links = parsed.links + _TEXT_URL.findall(text)
    # "#c-…": the week at a glance jumps to a card in the same message.
    bad = [u for u in links if not (_well_formed(u) or (u[1:] in parsed.ids and u[:1] == "#"))]
    insecure = sorted({u for u in links if u.startswith("http://")})
    if bad:
        report.add("links", ERROR, f"{len(bad)} malformed: {', '.join(sorted(set(bad))[:3])}")
    elif insecure:
        report.add(
            "links",
            rig,
            f"{len(insecure)} not https (e.g. {insecure[0]})"
            + ("; allowed by DIGEST_ALLOW_UNSAFE_SEND" if settings.allow_unsafe_send else ""),
        )
    else:
        report.add("links", OK, f"{plural(len(links), 'link')}, all absolute https or mailto")

    leftovers = sorted({m.group() for m in _LEFTOVER.finditer(" ".join(parsed.text) + text)})
    if leftovers:
        report.add("template fields", ERROR, f"unresolved markers in the email: {leftovers}")
    else:
        report.add("template fields", OK, "every field filled in")

    missing = [i.get("src") or "?" for i in parsed.images if i.get("alt") is None]
    empty = [i.get("src") or "?" for i in parsed.images if i.get("alt") == ""]
    if missing:
        report.add("images", ERROR, f"{len(missing)} without alt text: {missing[0]}")
    elif empty:
        report.add("images", WARNING, f"{len(empty)} with empty alt text: {empty[0]}")
    else:
        report.add("images", OK, f"{len(parsed.images)} images, all with alt text")

    subject = message.subject.strip()
    if not subject:
        report.add("subject", ERROR, "the subject is empty")
    elif len(subject) > SUBJECT_MAX_CHARS:
        report.add(
            "subject", ERROR, f"{len(subject)} characters; keep it under {SUBJECT_MAX_CHARS}"
        )
    elif len(subject) > SUBJECT_WARN_CHARS:
        report.add(
            "subject",
            WARNING,
            f"{len(subject)} characters; inboxes cut at about {SUBJECT_WARN_CHARS}",
        )
    else:
        report.add("subject", OK, f"{len(subject)} characters")
    if not preheader.strip():
        report.add("preheader", ERROR, "the preheader (inbox preview text) is empty")
    elif len(preheader) > PREHEADER_WARN_CHARS:
        report.add(
            "preheader", WARNING, f"{len(preheader)} characters; inboxes show up to about 140"
        )
    else:
        report.add("preheader", OK, f"{len(preheader)} characters")

    domain = settings.from_domain
    if is_test_domain(domain):
        report.add(
            "from domain",
            rig,
            f"DIGEST_FROM uses {domain!r}, which no real mailbox accepts replies from",
        )
    else:
        report.add("from domain", OK, domain)

    postal = settings.postal_address.strip()
    if not postal:
        report.add("postal address", ERROR, "DIGEST_POSTAL_ADDRESS is empty (CAN-SPAM needs one)")
    elif postal == SAMPLE_POSTAL_ADDRESS:
        report.add("postal address", rig, "DIGEST_POSTAL_ADDRESS is still the sample address")
    else:
        report.add("postal address", OK, postal)

    base_host = urlsplit(settings.base_url).hostname or ""
    if is_test_domain(base_host):
        report.add(
            "base url",
            rig,
            f"DIGEST_BASE_URL {settings.base_url} is a sample or local address: "
            "no reader can open its unsubscribe and archive links",
        )
    elif not settings.base_url.startswith("https://"):
        report.add(
            "base url", rig, f"DIGEST_BASE_URL {settings.base_url} is not https: links leak tokens"
        )
    else:
        report.add("base url", OK, settings.base_url)

    site_host = urlsplit(settings.site_url).hostname or ""
    if is_test_domain(site_host):
        report.add(
            "site url",
            rig,
            f"DIGEST_SITE_URL {settings.site_url} is a sample address: every footer and "
            "comparison link would name it",
        )
    else:
        report.add("site url", OK, settings.site_url)

    if health is not None and settings.preflight_health_timeout > 0:
        _probe(report, settings, health)
    return report


def _well_formed(url: str) -> bool:
    if url.startswith("mailto:"):
        return "@" in url
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in url


def _probe(report: PreflightReport, settings: Settings, health: HealthProbe) -> None:
    url = f"{settings.base_url}/healthz"
    try:
        status, body = health(url, settings.preflight_health_timeout)
    except requests.RequestException as exc:
        report.add(
            "unsubscribe host",
            WARNING,
            f"{url} did not answer from here ({type(exc).__name__}); unsubscribe links "
            "only work while `digest serve` runs there",
        )
        return
    if status == 200 and isinstance(body, dict) and body.get("status") == "ok":
        report.add("unsubscribe host", OK, f"{url} answers")
    else:
        report.add(
            "unsubscribe host",
            ERROR,
            f"{url} answered {status} but not as this app: unsubscribe links would break",
        )
