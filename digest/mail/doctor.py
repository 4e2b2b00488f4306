"""``digest doctor``: will receivers trust mail from the From domain? The SPF, DKIM and
DMARC records in DNS, looked up with dnspython.

- **SPF**: one ``v=spf1`` TXT record at the From domain; ``+all`` (anyone may send) is
  a failure, ``?all`` a warning.
- **DKIM**: the TXT record at ``selector._domainkey.domain`` (``DIGEST_DKIM_SELECTOR``,
  ``DIGEST_DKIM_DOMAIN``) carries exactly the public half of
  ``DIGEST_DKIM_PRIVATE_KEY_FILE``, with the matching key type, and a test message
  signed as a send would be verifies with dkimpy against that record.
- **DMARC**: a ``v=DMARC1`` TXT record at ``_dmarc.<From domain>`` (or the
  organisational domain); ``p=none`` is a warning, and the DKIM domain must align with
  the From domain.

- **Bounces** (SMTP sends only): what comes back by mail must have a way in — the
  VERP domain's MX names the MTA that hands its mail to ``digest inbound``
  (``DIGEST_INBOUND_MX_HOST``, else ``DIGEST_SMTP_HOST``), or a bounce mailbox is
  polled; with neither, DSNs and complaints go unread (a warning).

``DIGEST_DNS_SERVER`` points the lookups at one server (``host`` or ``host:port``),
e.g. an internal resolver or the tests' loopback server.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import dkim
import dns.exception
import dns.resolver

from digest.core.settings import Settings
from digest.exceptions import ConfigError
from digest.mail.dkim import DkimSigner
from digest.mail.verp import verp_config

logger = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok / warn / fail
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolver(settings: Settings, timeout: float = 5.0) -> dns.resolver.Resolver:
    if not settings.dns_server:
        found = dns.resolver.Resolver()
    else:
        found = dns.resolver.Resolver(configure=False)
        host, _, port = settings.dns_server.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            host, port = settings.dns_server, "53"
        found.nameservers = [host.strip("[]")]
        found.port = int(port)
    found.lifetime = timeout
    return found


def txt_records(res: dns.resolver.Resolver, name: str) -> list[str]:
    """Every TXT record at ``name`` (strings of one record joined); [] when none."""
    try:
        answer = res.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def tags(record: str) -> dict[str, str]:
    """``k=v; k=v`` tag lists (DKIM and DMARC records) with whitespace removed."""
    out = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = "".join(value.split())
    return out


def check_spf(res: dns.resolver.Resolver, domain: str) -> Check:
    spf = [r for r in txt_records(res, domain) if r.lower().startswith("v=spf1")]
    if not spf:
        return Check("SPF", FAIL, f"no v=spf1 TXT record at {domain}")
    if len(spf) > 1:
        return Check("SPF", FAIL, f"{len(spf)} SPF records at {domain}; receivers need one")
    record = spf[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        return Check("SPF", FAIL, f"{domain}: {record!r} lets any server send as you")
    if "?all" in terms:
        return Check("SPF", WARN, f"{domain}: {record!r} ends in ?all (neutral)")
    return Check("SPF", OK, f"{domain}: {record}")


def check_dkim(res: dns.resolver.Resolver, settings: Settings) -> Check:
    try:
        signer = DkimSigner.from_settings(settings)
    except ConfigError as exc:
        return Check("DKIM", FAIL, str(exc))
    if signer is None:
        return Check(
            "DKIM",
            WARN,
            "not configured (DIGEST_DKIM_SELECTOR, DIGEST_DKIM_PRIVATE_KEY_FILE): "
            "SMTP sends go out unsigned",
        )
    name = f"{signer.selector}._domainkey.{signer.domain}"
    records = [tags(r) for r in txt_records(res, name)]
    keys = [r for r in records if "p" in r]
    if not keys:
        return Check(
            "DKIM", FAIL, f"no DKIM key record at {name}; publish: {signer.public_record()}"
        )
    expected = tags(signer.public_record())
    for record in keys:
        if record["p"] == expected["p"]:
            if record.get("k", "rsa") != expected["k"]:
                return Check(
                    "DKIM", FAIL, f"{name}: k={record.get('k', 'rsa')}, the key is {expected['k']}"
                )
            if not _verifies(signer, res, settings):
                return Check("DKIM", FAIL, f"{name}: a test message signed now does not verify")
            return Check(
                "DKIM",
                OK,
                f"{name}: {signer.algorithm} key matches the private key; "
                "a test message signed now verifies",
            )
    return Check(
        "DKIM",
        FAIL,
        f"{name}: the published key is not the public half of DIGEST_DKIM_PRIVATE_KEY_FILE; "
        f"publish: {signer.public_record()}",
    )


def _verifies(signer: DkimSigner, res: dns.resolver.Resolver, settings: Settings) -> bool:
    """Sign a small message as a send would and verify it the way receivers do
    (dkimpy, fetching the key from DNS through ``res``)."""
    message = (
        f"From: {settings.from_address}\r\nTo: doctor@{settings.from_domain}\r\n"
        f"Subject: digest doctor\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"Message-ID: <doctor@{settings.from_domain}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nDKIM self-test.\r\n"
    ).encode()

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        found = txt_records(res, name.decode("ascii").rstrip("."))
        return found[0].encode("utf-8") if found else b""

    try:
        return bool(dkim.verify(signer.sign(message), dnsfunc=lookup))
    except dkim.DKIMException as exc:
        logger.warning("DKIM self-test: %s", exc)
        return False


def check_dmarc(res: dns.resolver.Resolver, settings: Settings) -> Check:
    domain = settings.from_domain
    candidates = [domain]
    labels = domain.split(".")
    if len(labels) > 2:  # the organisational domain's policy covers subdomains
        candidates.append(".".join(labels[-2:]))
    for where in candidates:
        records = [
            r for r in txt_records(res, f"_dmarc.{where}") if r.lower().startswith("v=dmarc1")
        ]
        if not records:
            continue
        policy = tags(records[0]).get("p", "")
        if policy not in ("none", "quarantine", "reject"):
            return Check("DMARC", FAIL, f"_dmarc.{where}: no valid p= policy in {records[0]!r}")
        dkim_domain = settings.effective_dkim_domain
        if settings.dkim_selector and not (
            dkim_domain in (domain, where) or dkim_domain.endswith("." + where)
        ):
            return Check(
                "DMARC", FAIL, f"DKIM domain {dkim_domain} does not align with From {domain}"
            )
        if policy == "none":
            return Check("DMARC", WARN, f"_dmarc.{where}: p=none (monitoring only)")
        return Check("DMARC", OK, f"_dmarc.{where}: p={policy}")
    return Check("DMARC", FAIL, f"no v=DMARC1 TXT record at _dmarc.{domain}")


def mx_hosts(res: dns.resolver.Resolver, name: str) -> list[str]:
    """The MX targets of ``name``, most preferred first, lower case; [] when none."""
    try:
        answer = res.resolve(name, "MX")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    records = sorted(answer, key=lambda r: r.preference)
    return [r.exchange.to_text().rstrip(".").lower() for r in records]


def check_bounces(res: dns.resolver.Resolver, settings: Settings) -> Check:
    config = verp_config(settings)
    mailbox = settings.bounce_mailbox
    if config is None:
        if mailbox:
            return Check("Bounces", OK, "no VERP; the bounce mailbox is polled (digest mailbox)")
        return Check(
            "Bounces",
            WARN,
            "neither way in is configured: DSNs and complaints that come back by mail go "
            "unread (set DIGEST_VERP_DOMAIN and run digest inbound, or DIGEST_BOUNCE_MAILBOX)",
        )
    expected = (settings.inbound_mx_host or settings.smtp_host).rstrip(".").lower()
    hosts = mx_hosts(res, config.domain)
    if expected in hosts:
        return Check(
            "Bounces",
            OK,
            f"MX of {config.domain} names {expected}, which hands it to digest inbound",
        )
    said = f"MX of {config.domain} is {', '.join(hosts)}" if hosts else f"no MX at {config.domain}"
    if mailbox:
        return Check("Bounces", WARN, f"{said}, not {expected}; relying on the bounce mailbox")
    return Check(
        "Bounces",
        FAIL,
        f"{said}, not {expected} (DIGEST_INBOUND_MX_HOST): DSNs to the VERP addresses will "
        "not reach digest inbound",
    )


def run_checks(settings: Settings) -> list[Check]:
    """SPF, DKIM and DMARC for the From domain, and for SMTP sends the way bounces come
    back; a DNS failure is a failed check."""
    res = resolver(settings)
    checks = []
    runs = [
        ("SPF", lambda: check_spf(res, settings.from_domain)),
        ("DKIM", lambda: check_dkim(res, settings)),
        ("DMARC", lambda: check_dmarc(res, settings)),
    ]
    if settings.transport == "smtp":
        runs.append(("Bounces", lambda: check_bounces(res, settings)))
    unreachable = ""
    for name, run in runs:
        if unreachable:
            # Each lookup would wait out its own timeout again for the same answer.
            checks.append(Check(name, FAIL, f"not checked: {unreachable}"))
            continue
        try:
            checks.append(run())
        except dns.exception.DNSException as exc:
            checks.append(Check(name, FAIL, f"DNS lookup failed: {exc}"))
            if isinstance(exc, (dns.resolver.NoNameservers, dns.exception.Timeout)):
                unreachable = f"the DNS server did not answer the {name} lookup"
    return checks
