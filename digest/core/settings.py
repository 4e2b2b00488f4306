"""The one settings class. Every tunable comes from the environment (prefix ``DIGEST_``)
or a ``.env`` file; nothing else in the package reads ``os.environ``."""

from __future__ import annotations

import logging
import re
from datetime import date, time
from email.utils import formataddr, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from digest.core.mailsafe import check_address, header_text
from digest.exceptions import AddressError, ConfigError

logger = logging.getLogger(__name__)

#: Secrets that must never protect a real list.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "please-change", "changethis", "demo", "test"}
)
#: The postal address a fresh install ships with: fine for the demo, never for a real send.
SAMPLE_POSTAL_ADDRESS = "Weekly Verdicts, 1 Example Street, Springfield, USA"
#: Sender domains that can never receive replies or pass DMARC (RFC 2606 / RFC 6761).
TEST_DOMAINS = ("localhost", "example.com", "example.net", "example.org")
TEST_DOMAIN_SUFFIXES = (
    ".localhost",
    ".test",
    ".example",
    ".invalid",
    ".local",
    ".example.com",
    ".example.net",
    ".example.org",
)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_LIMIT = re.compile(r"^\s*([A-Za-z0-9.-]+\.[A-Za-z0-9-]+)\s*=\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")


# ---------------------------------------------------------------- parsers of settings
# Here, beside the class that validates with them, so the ground floor imports nothing
# above it; digest.delivery.limits and digest.readers.waves read the values with them.


def parse_domain_limits(value: str | None) -> dict[str, float]:
    """``"gmail.com=20/s,yahoo.com=600/m"`` → ``{"gmail.com": 20.0, "yahoo.com": 10.0}``
    (messages per second); ValueError naming the bad entry."""
    limits: dict[str, float] = {}
    for entry in (value or "").split(","):
        if not entry.strip():
            continue
        match = _LIMIT.match(entry)
        if match is None or float(match.group(2)) <= 0:
            raise ValueError(f"{entry.strip()!r} is not DOMAIN=N/s (or /m, /h) with N > 0")
        limits[match.group(1).lower()] = float(match.group(2)) / _UNITS[match.group(3)]
    return limits


def parse_warmup(value: str | None) -> list[int]:
    """``"1000,2000,5000"`` → ``[1000, 2000, 5000]``; ValueError on anything else."""
    plan: list[int] = []
    for entry in (value or "").replace("…", "").split(","):
        entry = entry.strip().rstrip(".").replace("_", "")
        if not entry:
            continue
        if not entry.isdigit() or int(entry) <= 0:
            raise ValueError(f"{entry!r} is not a positive number of messages per day")
        plan.append(int(entry))
    return plan


def parse_local_time(value: str) -> time:
    """``"09:00"`` → 09:00; ValueError otherwise."""
    hours, sep, minutes = value.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(f"{value!r} is not HH:MM")
    return time(int(hours), int(minutes))


def parse_ingest_tokens(value: str | None) -> dict[str, str]:
    """``"site=TOKEN,backfill=TOKEN2"`` → ``{"site": "TOKEN", "backfill": "TOKEN2"}``;
    ValueError naming the bad entry (never the token itself)."""
    tokens: dict[str, str] = {}
    for entry in (value or "").split(","):
        if not entry.strip():
            continue
        name, sep, token = entry.strip().partition("=")
        name, token = name.strip(), token.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9._-]{1,40}", name):
            raise ValueError(
                f"entry {len(tokens) + 1} is not NAME=TOKEN (a name of letters, digits, . _ -)"
            )
        if name in tokens:
            raise ValueError(f"the name {name!r} appears twice")
        if token.lower() in PLACEHOLDER_SECRETS or len(token) < 16 or not token.isprintable():
            raise ValueError(
                f"the token of {name!r} is a placeholder or shorter than 16 characters"
            )
        tokens[name] = token
    return tokens


MiB = 1024 * 1024

#: Signs links only under ``digest demo`` (``signing_key`` refuses it otherwise).
DEMO_SECRET = "demo-only-secret-not-for-production-use-0000000000"  # noqa: S105


class Settings(BaseSettings):
    """Configuration of one deployment. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="DIGEST_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///digest.db"
    db_busy_timeout: float = Field(default=30.0, gt=0, le=3600)  # SQLite lock wait, seconds
    # How long a process waits for a database that went away (a restart, a failover, a
    # SQLite file locked past the busy timeout) before it stops (digest/db_outage.py).
    db_outage_grace_seconds: float = Field(default=60.0, ge=0, le=24 * 3600)
    transport: str = "maildir"
    outbox: Path = Path("outbox")

    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout: float = 30.0
    smtp_connections: int = Field(default=1, ge=1, le=64)
    smtp_ca_file: Path | None = None

    from_address: str = Field(
        default="Weekly AI Tool Verdicts <digest@localhost>",
        validation_alias=AliasChoices("DIGEST_FROM", "from_address"),
    )
    reply_to: str | None = None
    # DKIM signing of SMTP sends (digest/mail/dkim.py); off unless selector and key are set.
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key_file: Path | None = None
    # ``digest doctor``'s DNS server ("host" or "host:port"); the system resolver when unset.
    dns_server: str | None = None
    bounce_address: str | None = None
    # Bounces by mail (docs/delivery.md): VERP envelope senders per delivery, and the two
    # ways what comes back gets in (``digest inbound``, the bounce mailbox poller).
    verp_domain: str | None = None
    verp: bool = True  # false: SMTP sends use the bare bounce address
    reply_forward: str | None = None  # people's replies that reach the inbound go here
    inbound_host: str = "127.0.0.1"
    inbound_port: int = Field(default=2525, ge=1, le=65535)
    inbound_max_bytes: int = Field(default=5_000_000, ge=10_000)
    # The MTA the bounce domain's MX must name (``digest doctor``); DIGEST_SMTP_HOST if unset.
    inbound_mx_host: str | None = None
    # "imaps://user@host[:port]/FOLDER" or a Maildir path; unset: no polling.
    bounce_mailbox: str | None = None
    bounce_mailbox_password: SecretStr | None = None
    bounce_mailbox_ca_file: Path | None = None
    bounce_mailbox_done: str = "Processed"  # where read messages are moved
    bounce_mailbox_interval: int = Field(default=300, ge=10)  # seconds between polls
    base_url: str = "http://localhost:8000"
    site_url: str = "https://verdicts.example.com"
    secret_key: SecretStr | None = None
    # The secret before the last rotation: links it signed keep working (never signs).
    secret_key_previous: SecretStr | None = None
    admin_token: SecretStr | None = None
    postal_address: str = SAMPLE_POSTAL_ADDRESS
    list_name: str = "Weekly AI Tool Verdicts"
    # The email's masthead: an https image instead of the list name (alt text: the name).
    logo_url: str | None = None
    logo_alt: str | None = None
    logo_width: int = Field(default=180, ge=16, le=600)
    list_id: str | None = None
    unsubscribe_mailto: str | None = None
    timezone: str = "UTC"
    send_cron: str = "0 9 * * mon"
    misfire_grace_seconds: int = 3600

    # The editorial loop (docs/editorial.md).
    max_age_days: int = Field(default=14, ge=1, le=366)
    review_hours: float = Field(default=0, ge=0, le=24 * 14)
    require_approval: bool = False
    allow_unsafe_send: bool = False
    #: seconds to wait for DIGEST_BASE_URL/healthz in the preflight report; 0 skips it
    preflight_health_timeout: float = Field(default=3.0, ge=0, le=60)
    console_session_hours: float = Field(default=12, gt=0, le=24 * 90)
    #: console login attempts per client IP per window (docs/console.md)
    console_login_limit: int = Field(default=10, ge=1, le=100_000)
    console_login_window: int = Field(default=900, ge=1)  # seconds

    full_cards: int = Field(default=2, ge=0, le=50)  # issue 26: the rest compact, a third shorter
    max_comparisons: int = Field(default=20, ge=1, le=200)
    quote_max_chars: int = Field(default=280, ge=60, le=2000)

    batch_size: int = Field(default=200, ge=1, le=10_000)
    lease_seconds: int = Field(default=60, ge=2)
    max_attempts: int = Field(default=5, ge=1, le=50)
    rate_limit: float | None = Field(default=None, gt=0)
    # Each reader's own digest (digest/readers/).
    send_local_time: str | None = None
    click_counts: bool = True
    # Limits every worker shares (digest/delivery/limits.py).
    worker_name: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")
    redis_url: str | None = None
    domain_limits: str | None = None
    warmup: str | None = None
    warmup_start: date | None = None
    # Delivery engine (docs/delivery.md).
    smtp_max_per_connection: int = Field(default=1000, ge=1)
    pause_after_failures: int = Field(default=100, ge=1)
    # A transport-wide failure (no connection, Maildir not writable) lasting this long
    # pauses the send; its rows stay queued, no attempt is spent (docs/hardening.md).
    outage_grace_seconds: float = Field(default=60.0, ge=0)
    retry_base_seconds: float = Field(default=10.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)

    # Transactional email APIs (docs/providers.md). *_base_url: EU regions, local servers.
    http_timeout: float = Field(default=30.0, gt=0)
    postmark_token: SecretStr | None = None
    postmark_stream: str = "broadcast"
    postmark_base_url: str = "https://api.postmarkapp.com"
    postmark_templates: bool = True
    sendgrid_api_key: SecretStr | None = None
    sendgrid_base_url: str = "https://api.sendgrid.com"
    mailgun_api_key: SecretStr | None = None
    mailgun_domain: str | None = None
    mailgun_base_url: str = "https://api.mailgun.net"
    resend_api_key: SecretStr | None = None
    resend_base_url: str = "https://api.resend.com"
    ses_region: str = "us-east-1"
    ses_base_url: str | None = None
    ses_access_key_id: str | None = None
    ses_secret_access_key: SecretStr | None = None
    ses_configuration_set: str | None = None
    ses_bulk: bool = True
    # Provider webhooks (POST /webhooks/{provider}); unset secret = that webhook refuses all.
    postmark_webhook_user: str | None = None
    postmark_webhook_password: SecretStr | None = None
    sendgrid_webhook_public_key: str | None = None
    mailgun_webhook_signing_key: SecretStr | None = None
    resend_webhook_secret: SecretStr | None = None
    ses_sns_topic_arns: str | None = None  # comma-separated; only these topics are trusted
    webhook_max_age_seconds: int = Field(default=300, ge=30)
    soft_bounce_limit: int = Field(default=3, ge=1)
    soft_bounce_window_days: int = Field(default=30, ge=1)

    # Public subscriber web (docs/subscribers.md).
    confirm_link_hours: int = Field(default=72, ge=1, le=24 * 30)
    subscribe_rate_limit: int = Field(default=5, ge=1, le=100_000)  # per client IP per window
    subscribe_rate_window: int = Field(default=600, ge=1)  # seconds
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For uvicorn trusts
    api_docs: bool = True  # /docs: the API reference page (server-rendered, no script)
    # Request bodies, per route class (digest/http/bodies.py): bytes, then seconds for
    # the whole body. body_max_bytes covers public forms, JSON and any route not listed.
    body_max_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * MiB)
    webhook_body_max_bytes: int = Field(default=5 * MiB, ge=64 * 1024, le=100 * MiB)
    console_body_max_bytes: int = Field(default=1 * MiB, ge=64 * 1024, le=16 * MiB)
    # The CSV reader's own ceiling is 200 MB (subscribers.service.MAX_CSV_BYTES).
    console_import_max_bytes: int = Field(default=200 * MiB, ge=64 * 1024, le=200 * MiB)
    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    console_import_timeout: float = Field(default=300.0, gt=0, le=3600)

    # Operations (docs/operations.md).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    metrics_token: SecretStr | None = None  # when set, /metrics wants "Bearer <token>"

    # The ingest API (docs/ingest.md): POST /api/comparisons with "Bearer TOKEN", tokens
    # named "site=TOKEN,backfill=TOKEN2"; the name is recorded on what each brought in.
    ingest_tokens: SecretStr | None = None
    ingest_max_bytes: int = Field(default=5 * MiB, ge=64 * 1024, le=16 * MiB)

    demo: bool = False

    @field_validator("*")
    @classmethod
    def _unset_when_blank(cls, value: object) -> object:
        # Every secret: `DIGEST_X=` (an env file's empty line) means "not set". Read as a
        # value, an empty DIGEST_SECRET_KEY_PREVIOUS failed every link at request time
        # and an empty DIGEST_ADMIN_TOKEN let "Authorization: Bearer" in (issue 22).
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("domain_limits")
    @classmethod
    def _domain_limits(cls, value: str | None) -> str | None:
        parse_domain_limits(value)
        return value

    @field_validator("send_local_time")
    @classmethod
    def _local_time(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_local_time(value)
        return value.strip()

    @field_validator("click_counts", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("on", "off"):
            return value.strip().lower() == "on"
        return value

    @field_validator("warmup")
    @classmethod
    def _warmup(cls, value: str | None) -> str | None:
        parse_warmup(value)
        return value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return value.lower() if value.lower() in ("text", "json") else value.upper()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("from_address", "reply_to")
    @classmethod
    def _mailbox(cls, value: str | None) -> str | None:
        # Header-bound: the display name is neutralised (no line break, no RFC 2047
        # encoded word, see digest.core.mailsafe), the address must be writable as is.
        if value is None:
            return None
        name, addr = parseaddr(value)
        try:
            addr = check_address(addr)
        except AddressError as exc:
            raise ValueError(f"not a usable address: {exc}") from exc
        name = header_text(name, 100)
        return formataddr((name, addr)) if name else addr

    @field_validator("verp_domain")
    @classmethod
    def _verp_domain(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return check_address(f"bounces@{value.strip().lower()}").rpartition("@")[2]
        except AddressError as exc:
            raise ValueError(f"not a usable mail domain: {exc}") from exc

    @field_validator("bounce_mailbox_done")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not value or not value.isprintable() or '"' in value or "/" in value:
            raise ValueError("must be a folder name without quotes or slashes")
        return value

    @field_validator("bounce_address", "unsubscribe_mailto", "reply_forward")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_address(value.strip())
        except AddressError as exc:
            raise ValueError(f"not a usable address: {exc}") from exc

    @field_validator("list_name")
    @classmethod
    def _header_line(cls, value: str) -> str:
        return header_text(value, 100)

    @field_validator("base_url", "site_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("logo_url")
    @classmethod
    def _https_logo(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith("https://"):
            # Mail clients block or warn about plain-http images in a message.
            raise ValueError("must be an https:// URL")
        return value

    @field_validator(
        "postmark_base_url",
        "sendgrid_base_url",
        "mailgun_base_url",
        "resend_base_url",
        "ses_base_url",
    )
    @classmethod
    def _provider_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def from_domain(self) -> str:
        addr = parseaddr(self.from_address)[1]
        return addr.rpartition("@")[2] or "localhost"

    @property
    def effective_dkim_domain(self) -> str:
        return self.dkim_domain or self.from_domain

    @property
    def effective_list_id(self) -> str:
        return self.list_id or f"weekly-verdicts.{self.from_domain}"

    @property
    def effective_unsubscribe_mailto(self) -> str:
        return self.unsubscribe_mailto or f"unsubscribe@{self.from_domain}"

    def signing_key(self) -> str:
        """The secret that signs every token, refusing placeholders outside the demo."""
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if value.strip().lower() not in PLACEHOLDER_SECRETS and len(value) >= 16:
                return value
            if not self.demo:
                raise ConfigError(
                    "DIGEST_SECRET_KEY is a placeholder or shorter than 16 characters; "
                    'set a random value, e.g. python -c "import secrets; '
                    'print(secrets.token_urlsafe(32))"'
                )
        if self.demo:
            return DEMO_SECRET
        raise ConfigError(
            "DIGEST_SECRET_KEY is not set; it signs unsubscribe and confirmation links. "
            'Generate one: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )

    def ingest_token_map(self) -> dict[str, str]:
        """DIGEST_INGEST_TOKENS by name. Checked here, not by a validator: pydantic's
        error would quote the whole value, tokens and all."""
        if self.ingest_tokens is None:
            return {}
        try:
            return parse_ingest_tokens(self.ingest_tokens.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"DIGEST_INGEST_TOKENS: {exc}") from None

    def verification_keys(self) -> list[str]:
        """Every secret a link may have been signed with: the current one first, then
        ``DIGEST_SECRET_KEY_PREVIOUS`` (so links in old emails survive a rotation)."""
        keys = [self.signing_key()]
        if self.secret_key_previous is not None:
            previous = self.secret_key_previous.get_secret_value()
            if previous.strip().lower() in PLACEHOLDER_SECRETS or len(previous) < 16:
                raise ConfigError(
                    "DIGEST_SECRET_KEY_PREVIOUS is a placeholder or shorter than 16 characters"
                )
            if previous not in keys:
                keys.append(previous)
        return keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` instead)."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
