"""Prometheus metrics at ``GET /metrics``, read from the database at scrape time.

The send loop, the scheduler, the CLI and the web app are separate processes; counting
in memory would show only what the scraped process did. Every value here is a query on
the store, so any ``digest serve`` reports the whole system, a restart loses nothing,
and several web processes agree. The queries use the delivery table's indexes and
count rows, so a scrape stays cheap next to a send.

Counters are totals of rows (``sent`` deliveries, bounce events …): they only grow,
except when ``digest subscribers forget`` erases a person's rows, which Prometheus
reads as a counter reset. ``DIGEST_METRICS_TOKEN``, when set, is required as
``Authorization: Bearer TOKEN`` (Prometheus: ``authorization: {credentials: …}``).

The one thing counted in memory is the web server's own traffic
(``digest_web_requests_total`` by status). With ``digest serve --workers N`` each
worker writes its counts to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) and any worker's ``/metrics`` adds up all of them.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Column, ColumnElement, func, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.core.clock import utcnow
from digest.delivery.progress import send_progress
from digest.delivery.queue import OPEN_STATES
from digest.issue.freeze import target_issue
from digest.store.models import Delivery, DeliveryState, Issue, IssueState, MailEventRecord
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from digest.webhooks.events import EventKind

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

D = Delivery.__table__  # type: ignore[attr-defined]
E = MailEventRecord.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
S = Subscriber.__table__  # type: ignore[attr-defined]

OPEN = tuple(state.value for state in OPEN_STATES)
#: The send rate is the messages accepted over this many seconds before the scrape.
RATE_WINDOW_SECONDS = 60


def _by(
    conn: Connection, column: Column[str], keys: list[str], *where: ColumnElement[bool]
) -> dict[str, int]:
    """Row counts by ``column``: every key in ``keys`` (0 if absent), then any other."""
    query = select(column, func.count()).select_from(column.table).where(*where)
    found: dict[str, int] = {k: int(n) for k, n in conn.execute(query.group_by(column))}
    return {key: found.get(key, 0) for key in dict.fromkeys([*keys, *found])}


def _gauge(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class StoreCollector(Collector):
    """Everything an operator watches during a send, counted in the store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("digest_store_up", "1 when the database answered this scrape.")
        try:
            with self.engine.connect() as conn:
                families = list(self._families(conn))
        except SQLAlchemyError as exc:
            logger.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, conn: Connection) -> Iterator[Metric]:
        deliveries = _by(conn, D.c.state, [s.value for s in DeliveryState])
        yield _gauge(
            "digest_deliveries", "Delivery rows by state, all issues.", "state", deliveries
        )
        yield GaugeMetricFamily(
            "digest_queue_depth",
            "Deliveries still to send (queued, retry, sending), all issues.",
            value=sum(deliveries[s] for s in OPEN),
        )
        yield CounterMetricFamily(
            "digest_messages_sent",
            "Messages the mail server or provider accepted, all issues.",
            value=deliveries[DeliveryState.SENT.value],
        )
        yield CounterMetricFamily(
            "digest_messages_failed",
            "Deliveries that failed for good (permanent refusal or attempts exhausted).",
            value=deliveries[DeliveryState.FAILED.value],
        )
        yield GaugeMetricFamily(
            "digest_send_rate",
            f"Messages accepted per second over the last {RATE_WINDOW_SECONDS} s.",
            value=self._rate(conn),
        )
        yield from self._current_issue(conn)
        yield from self._events(conn)
        yield _gauge(
            "digest_issues",
            "Issues by state.",
            "state",
            _by(conn, I.c.state, [s.value for s in IssueState]),
        )
        yield _gauge(
            "digest_subscribers",
            "Subscribers by status.",
            "status",
            _by(conn, S.c.status, [s.value for s in SubscriberStatus]),
        )

    def _rate(self, conn: Connection) -> float:
        since = utcnow() - timedelta(seconds=RATE_WINDOW_SECONDS)
        # Only issues that can have sent something in the window: the (issue, state)
        # index answers, instead of a scan of every delivery ever made.
        recent = select(I.c.id).where(or_(I.c.finished_at.is_(None), I.c.finished_at >= since))
        sent = conn.execute(
            select(func.count()).where(
                D.c.issue_id.in_(recent),
                D.c.state == DeliveryState.SENT.value,
                D.c.sent_at >= since,
            )
        ).scalar_one()
        return round(int(sent) / RATE_WINDOW_SECONDS, 3)

    def _current_issue(self, conn: Connection) -> Iterator[Metric]:
        """The issue ``digest status`` and the console show by default (the open one,
        else the newest), with the very figures they show (digest/delivery/progress.py)."""
        family = GaugeMetricFamily(
            "digest_current_issue_deliveries",
            "The current issue's deliveries by state (the open issue, else the newest).",
            labels=["week", "state"],
        )
        with Session(bind=conn) as session:
            issue = target_issue(session)
        progress = None
        if issue is not None and issue.id is not None:
            progress = send_progress(conn, issue.id, str(issue.state), issue.started_at)
            for state, n in progress.counts.items():
                family.add_metric([issue.week, state], n)
        yield family
        if progress is None:
            return
        yield GaugeMetricFamily(
            "digest_current_issue_remaining",
            "The current issue's deliveries still to send (queued, retry, waiting, sending).",
            value=progress.remaining,
        )
        yield GaugeMetricFamily(
            "digest_current_issue_send_rate",
            "The current issue's messages accepted per second over the last minute, since "
            "it last started or resumed; 0 when it is not sending.",
            value=progress.rate or 0.0,
        )
        if progress.eta_seconds is not None:
            yield GaugeMetricFamily(
                "digest_current_issue_eta_seconds",
                "Seconds until the current issue's deliveries due now are sent, at that rate.",
                value=progress.eta_seconds,
            )

    def _events(self, conn: Connection) -> Iterator[Metric]:
        rows = conn.execute(
            select(E.c.provider, E.c.kind, func.count()).group_by(E.c.provider, E.c.kind)
        ).all()
        by_kind: dict[str, int] = {kind.value: 0 for kind in EventKind}
        webhook = CounterMetricFamily(
            "digest_webhook_events",
            "Provider webhook events recorded (replays excluded), by provider and kind.",
            labels=["provider", "kind"],
        )
        for provider, kind, n in rows:
            webhook.add_metric([provider, kind], int(n))
            by_kind[kind] = by_kind.get(kind, 0) + int(n)
        yield webhook
        bounces = CounterMetricFamily(
            "digest_bounces", "Bounces reported by providers.", labels=["type"]
        )
        bounces.add_metric(["hard"], by_kind[EventKind.BOUNCED_HARD.value])
        bounces.add_metric(["soft"], by_kind[EventKind.BOUNCED_SOFT.value])
        yield bounces
        yield CounterMetricFamily(
            "digest_complaints",
            "Spam complaints reported by providers.",
            value=by_kind[EventKind.COMPLAINED.value],
        )


#: prometheus-client's own variable: where each server process keeps its counters
#: when ``digest serve --workers N`` runs several (set before the workers start).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "digest_web_requests",
    "HTTP requests answered by the web server, all processes together, by status.",
    ["status"],
    registry=None,
)


class RequestCounter:
    """Pure ASGI middleware: counts every answer in :data:`REQUESTS`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                REQUESTS.labels(str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


def metrics_registry(engine: Engine) -> CollectorRegistry:
    """A registry with the store's metrics and the web server's own counters: of this
    process, or of every worker process when ``PROMETHEUS_MULTIPROC_DIR`` is set
    (``digest serve --workers N``; then without per-process CPU and memory, which
    cannot be added up)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine))
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        ProcessCollector(registry=registry)
    return registry


@contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """A folder for the workers' counters in ``PROMETHEUS_MULTIPROC_DIR``: the one
    given (emptied: the counts of a previous run must not be added), else a fresh
    temporary folder, removed afterwards."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.db"):
            old.unlink()
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix="digest-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    settings = request.app.state.settings
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise HTTPException(401, "metrics need Authorization: Bearer DIGEST_METRICS_TOKEN")
    registry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
