"""``/metrics``: Prometheus text read from the store at scrape time, so any web process
reports what every sender did."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from metrics_support import Scrape
from pydantic import SecretStr
from store_support import WEEK, seed_store
from subscriber_support import Store, make_web

from digest.core.clock import utcnow
from digest.jobs.weekly import weekly_job
from digest.transports.memory import MemoryTransport
from digest.webhooks.events import EventKind, MailEvent, apply_events


def _scrape(store: Store, **overrides: object) -> Scrape:
    response = make_web(store.settings, store.engine, **overrides).client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape.parse(response.text)


def test_metrics_count_deliveries_subscribers_and_provider_events(
    store: Store, tmp_path: Path
) -> None:
    before = _scrape(store)
    assert before.value("digest_store_up") == 1
    assert before.value("digest_messages_sent_total") == 0
    assert before.value("digest_queue_depth") == 0
    assert before.value("digest_deliveries", state="queued") == 0

    _count, emails = seed_store(store.engine, store.settings, tmp_path)
    result = weekly_job(store.settings, engine=store.engine, transport=MemoryTransport(), week=WEEK)
    assert result.report is not None and result.report.sent == len(emails)

    now = utcnow()
    events = [
        MailEvent("postmark", "e1", EventKind.BOUNCED_HARD, emails[0], now),
        MailEvent("postmark", "e2", EventKind.BOUNCED_SOFT, emails[1], now),
        MailEvent("sendgrid", "e3", EventKind.COMPLAINED, emails[2], now),
        MailEvent("sendgrid", "e4", EventKind.DELIVERED, emails[3], now - timedelta(seconds=5)),
    ]
    apply_events(store.engine, events, store.settings)
    apply_events(store.engine, events[:1], store.settings)  # a replay counts once

    after = _scrape(store)
    assert after.value("digest_messages_sent_total") == len(emails)
    assert after.value("digest_deliveries", state="sent") == len(emails)
    assert after.value("digest_current_issue_deliveries", week=WEEK, state="sent") == len(emails)
    assert after.value("digest_queue_depth") == 0
    assert after.value("digest_messages_failed_total") == 0
    assert after.value("digest_send_rate") > 0  # all of it within the last minute
    assert after.value("digest_bounces_total", type="hard") == 1
    assert after.value("digest_bounces_total", type="soft") == 1
    assert after.value("digest_complaints_total") == 1
    assert after.value("digest_webhook_events_total", provider="postmark", kind="bounced_hard") == 1
    assert after.value("digest_webhook_events_total", provider="sendgrid", kind="delivered") == 1
    assert after.value("digest_issues", state="sent") == 1
    assert after.value("digest_subscribers", status="active") == len(emails) - 2
    assert after.value("digest_subscribers", status="bounced") == 1
    assert after.value("digest_subscribers", status="complained") == 1


def test_metrics_want_the_token_when_one_is_set(store: Store) -> None:
    app = make_web(store.settings, store.engine, metrics_token=SecretStr("scrape-token-0123456789"))
    assert app.client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert app.client.get("/metrics", headers=wrong).status_code == 401
    right = {"Authorization": "Bearer scrape-token-0123456789"}
    response = app.client.get("/metrics", headers=right)
    assert response.status_code == 200
    assert Scrape.parse(response.text).value("digest_store_up") == 1
