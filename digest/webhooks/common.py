"""What every provider's webhook module shares: the checks on secrets and timestamps,
the replay guard for signatures that do not cover the body, and the payload readers.

Every check raises :class:`~digest.exceptions.WebhookVerificationError` — 403 when the
webhook has no secret configured (nothing can be verified, so nothing is accepted),
401 when the request is unsigned, forged, signed with another key or too old. All
comparisons of secrets are constant-time. Malformed payloads raise
:class:`~digest.exceptions.WebhookError` (400) so the provider shows the failure
instead of it vanishing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from digest.core import jsonsafe
from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import WebhookError, WebhookVerificationError
from digest.store.models import WebhookNonce

logger = logging.getLogger(__name__)
N = WebhookNonce.__table__  # type: ignore[attr-defined]

#: Fetches a URL's body (SNS certificates, subscription confirmations); injectable.
Fetcher = Callable[[str], bytes]


# ---------------------------------------------------------------- verifying


def configured_secret(value: SecretStr | str | None, setting: str) -> str:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not raw:
        raise WebhookVerificationError(f"webhook not configured: set {setting}", status=403)
    return raw


def fresh(timestamp: str, settings: Settings, now: float | None = None) -> None:
    """Refuse timestamps outside the allowed age: a captured request cannot be replayed
    later, and one replayed sooner is caught by its event id."""
    try:
        ts = float(timestamp)
    except (TypeError, ValueError):
        raise WebhookVerificationError("missing or malformed timestamp") from None
    if not math.isfinite(ts):  # "nan" compares false with everything: it passed the age check
        raise WebhookVerificationError("missing or malformed timestamp")
    now = time.time() if now is None else now
    if abs(now - ts) > settings.webhook_max_age_seconds:
        raise WebhookVerificationError("timestamp too old or in the future")


def claim_nonce(engine: Engine, provider: str, nonce: str, body: bytes, settings: Settings) -> None:
    """Record a signature's nonce with the body it came with; WebhookVerificationError
    if it was used before with a different body.

    Mailgun signs only timestamp + token, not the body: a captured signature would
    verify with any other body. Tokens are kept for twice the age window (older
    signatures fail the timestamp check anyway), so a token goes with one body only;
    the identical request again (a provider retry) passes, and its events are
    recognised by their ids."""
    digest = hashlib.sha256(body).hexdigest()
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            delete(N).where(
                N.c.seen_at < now - timedelta(seconds=2 * settings.webhook_max_age_seconds)
            )
        )
        dialect = conn.dialect.name
        row = {"provider": provider, "nonce": nonce[:200], "body_sha256": digest, "seen_at": now}
        if dialect in ("sqlite", "postgresql"):
            ins = sqlite_insert(N) if dialect == "sqlite" else postgresql_insert(N)
            added = conn.execute(
                ins.values(**row).on_conflict_do_nothing(index_elements=["provider", "nonce"])
            ).rowcount
        else:
            try:
                with conn.begin_nested():
                    added = conn.execute(insert(N).values(**row)).rowcount
            except IntegrityError:
                added = 0
        if not added:
            first = conn.execute(
                select(N.c.body_sha256).where(N.c.provider == provider, N.c.nonce == nonce[:200])
            ).scalar()
            if first != digest:
                raise WebhookVerificationError(
                    f"{provider} signature already used with another body (replay)"
                )


# ---------------------------------------------------------------- parsing

HINT_KEYS = ("digest_issue", "digest_delivery")


def when(value: Any) -> datetime:
    """A provider timestamp (unix seconds or ISO 8601) as aware UTC; now if unreadable."""
    try:
        if isinstance(value, int | float) or (
            isinstance(value, str) and value.replace(".", "", 1).isdigit()
        ):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return utcnow()


def hints(source: Any) -> dict[str, str]:
    if not isinstance(source, dict):
        return {}
    out = {}
    for key in HINT_KEYS:
        value = source.get(key)
        if isinstance(value, list) and value:  # SES tags are lists of values
            value = value[0]
        if isinstance(value, str | int):
            out[key] = str(value)
    return out


def load_json(body: bytes) -> Any:
    try:
        return jsonsafe.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError("body is not JSON", status=400) from None


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
