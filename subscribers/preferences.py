"""What a reader wants: topics (the comparisons' categories), a frequency (every week,
or the monthly round-up) and a time zone.

Stored on the subscriber: ``topics`` as a sorted JSON list (NULL = every topic, also
when every known topic is chosen), ``frequency`` ``weekly`` or ``monthly``, and
``timezone`` (NULL = ``DIGEST_TIMEZONE``). The normal form matters: the send groups
readers by it, and compiles the issue once per group.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from digest.core.clock import utcnow
from digest.exceptions import SubscriberError
from digest.store.models import Comparison, Tool
from digest.store.subscriber_models import Subscriber, SubscriberStatus

logger = logging.getLogger(__name__)

WEEKLY, MONTHLY = "weekly", "monthly"
FREQUENCIES = (WEEKLY, MONTHLY)
S = Subscriber.__table__  # type: ignore[attr-defined]
T = Tool.__table__  # type: ignore[attr-defined]
MAX_TOPICS = 50


def _canonical_zones() -> list[str]:
    """The zones of the tz database's zone.tab: one canonical Area/Location name per
    region of a country (Europe/Amsterdam, not the aliases Europe/Busingen or US/Eastern,
    nor the Etc/ and legacy names), about 420 rather than 600."""
    try:
        table = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # no tzdata package: the system's zones
        return sorted(
            z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
        )
    names = (line.split("\t")[2] for line in table.splitlines() if line and line[0] != "#")
    # One walk of the tz database, not one per name: every process that imports this
    # (each CLI command, worker and web process) paid ~1.3 s of start-up for it.
    known = available_timezones()
    return sorted(name for name in names if name in known)


#: Zones a reader may pick (canonical names; an alias stored earlier still works).
ZONES = _canonical_zones()


def _zone_label(zone: str) -> str:
    return zone.split("/", 1)[1].replace("_", " ").replace("/", " / ")


#: The picker's groups: (region, [(zone, label)]), by region, then by place name.
ZONE_GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        region,
        sorted(
            ((z, _zone_label(z)) for z in ZONES if z.split("/")[0] == region),
            key=lambda pair: pair[1],
        ),
    )
    for region in sorted({z.split("/")[0] for z in ZONES})
]


def catalog(conn: Connection) -> list[str]:
    """Every topic a reader can choose: the categories the comparisons' tools carry."""
    rows = conn.execute(select(T.c.category).where(T.c.category != "").distinct()).scalars()
    return sorted({str(r).strip() for r in rows if str(r).strip()})


def comparison_topics(comparison: Comparison) -> set[str]:
    return {t.category.strip() for t in comparison.tools if t.category and t.category.strip()}


def normal_topics(chosen: Iterable[str] | None, known: Iterable[str] | None = None) -> str | None:
    """The stored form: None for "every topic" (nothing chosen, or all of ``known``),
    else the sorted JSON list. SubscriberError for a topic ``known`` does not list."""
    picked = sorted({t.strip() for t in chosen or () if t and t.strip()})
    if not picked:
        return None
    if len(picked) > MAX_TOPICS or any(len(t) > 200 for t in picked):
        raise SubscriberError("too many or too long topics")
    if known is not None:
        catalogue = set(known)
        unknown = [t for t in picked if t not in catalogue]
        if unknown:
            raise SubscriberError(f"unknown topic {unknown[0]!r}; choose from {sorted(catalogue)}")
        if set(picked) == catalogue:
            return None
    return json.dumps(picked, ensure_ascii=False)


def topics_list(stored: str | None) -> list[str] | None:
    return None if stored is None else list(json.loads(stored))


def check_frequency(value: str | None) -> str:
    value = (value or WEEKLY).strip().lower()
    if value not in FREQUENCIES:
        raise SubscriberError(f"frequency must be weekly or monthly, not {value!r}")
    return value


def check_timezone(value: str | None) -> str | None:
    """An IANA zone name, or None; SubscriberError for anything else."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SubscriberError(f"unknown time zone {value[:60]!r}") from exc
    return value


@dataclass(frozen=True)
class Preferences:
    topics: list[str] | None
    frequency: str
    timezone: str | None


def preferences_of(conn: Connection, subscriber_id: int) -> Preferences | None:
    row = conn.execute(
        select(S.c.topics, S.c.frequency, S.c.timezone).where(S.c.id == subscriber_id)
    ).first()
    if row is None:
        return None
    return Preferences(topics_list(row.topics), row.frequency or WEEKLY, row.timezone)


def set_preferences(
    engine: Engine,
    subscriber_id: int,
    *,
    topics: Iterable[str] | None,
    frequency: str | None,
    timezone: str | None,
) -> Preferences:
    """Save a reader's choices (validated against the current topics)."""
    with engine.begin() as conn:
        stored = normal_topics(topics, catalog(conn))
        chosen = Preferences(
            topics_list(stored), check_frequency(frequency), check_timezone(timezone)
        )
        conn.execute(
            update(S)
            .where(S.c.id == subscriber_id)
            .values(
                topics=stored,
                frequency=chosen.frequency,
                timezone=chosen.timezone,
                updated_at=utcnow(),
            )
        )
    logger.info("subscriber %s changed their preferences", subscriber_id)
    return chosen


@dataclass(frozen=True)
class PreferenceSet:
    """One group of active readers who want the same thing."""

    topics: str | None
    frequency: str
    readers: int

    @property
    def key(self) -> str:
        return f"{self.frequency}|{self.topics or '*'}"


def preference_sets(conn: Connection) -> list[PreferenceSet]:
    """The distinct preference sets among active readers, with how many each."""
    rows = conn.execute(
        select(S.c.topics, S.c.frequency, func.count())
        .where(S.c.status == SubscriberStatus.ACTIVE.value)
        .group_by(S.c.topics, S.c.frequency)
    ).all()
    return [PreferenceSet(r[0], r[1] or WEEKLY, int(r[2])) for r in rows]
