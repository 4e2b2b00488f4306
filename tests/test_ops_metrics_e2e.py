"""``curl /metrics`` during a real send: ``digest serve`` runs as its own process while
this process sends over SMTP to an aiosmtpd server, which holds one message until the
test has scraped. The counters the web process reports come from the database, so they
show the other process's send as it happens."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from metrics_support import Scrape
from servers import RecordingHandler, digest_serve, free_port
from sqlalchemy.engine import Engine
from store_support import WEEK, seed_store

from digest.core.settings import Settings
from digest.jobs.weekly import JobResult, weekly_job

pytestmark = pytest.mark.slow

BATCH = 4
HOLD_AT = 2 * BATCH + 1  # the first message of the third batch


@dataclass
class HoldingHandler(RecordingHandler):
    """Accepts everything, but holds message number ``HOLD_AT`` until released."""

    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    seen: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen += 1
        if self.seen == HOLD_AT:
            self.reached.set()
            self.release.wait(timeout=60)  # blocks this server only; the test releases it
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def holding_smtp() -> Iterator[tuple[HoldingHandler, int]]:
    handler = HoldingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield handler, port
    finally:
        handler.release.set()
        controller.stop()


def test_metrics_move_while_another_process_sends(
    tmp_path: Path, settings: Settings, engine: Engine, holding_smtp: tuple[HoldingHandler, int]
) -> None:
    handler, smtp_port = holding_smtp
    _count, emails = seed_store(engine, settings, tmp_path)
    assert len(emails) > HOLD_AT
    sender = settings.model_copy(
        update={
            "transport": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_timeout": 60.0,
            "batch_size": BATCH,
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATABASE_URL": settings.database_url,
            "DIGEST_SECRET_KEY": settings.signing_key(),
            "DIGEST_BASE_URL": "http://127.0.0.1",
        }
    )
    port = free_port()
    with digest_serve(env, tmp_path, port) as base:

        def scrape() -> Scrape:
            response = httpx.get(f"{base}/metrics", timeout=10)
            assert response.status_code == 200, response.text
            return Scrape.parse(response.text)

        before = scrape()
        assert before.value("digest_messages_sent_total") == 0

        outcome: list[JobResult | BaseException] = []

        def send() -> None:
            try:
                outcome.append(weekly_job(sender, engine=engine, week=WEEK))
            except BaseException as exc:  # reported by the main thread
                outcome.append(exc)

        thread = threading.Thread(target=send, name="sender")
        thread.start()
        try:
            assert handler.reached.wait(timeout=60), "the send never reached the third batch"
            during = scrape()
        finally:
            handler.release.set()
            thread.join(timeout=120)
        after = scrape()

    assert not thread.is_alive()
    (result,) = outcome
    assert isinstance(result, JobResult) and result.report is not None, result
    assert result.report.sent == len(emails)

    # Only one batch is ever in flight: the first two are recorded as sent, the third
    # is claimed (sending), the rest wait in the queue.
    assert during.value("digest_messages_sent_total") == 2 * BATCH
    assert during.value("digest_deliveries", state="sending") == BATCH
    assert during.value("digest_queue_depth") == len(emails) - 2 * BATCH
    assert during.value("digest_issues", state="sending") == 1
    assert during.value("digest_current_issue_deliveries", week=WEEK, state="sent") == 2 * BATCH
    assert during.value("digest_send_rate") > 0

    assert after.value("digest_messages_sent_total") == len(emails)
    assert after.value("digest_queue_depth") == 0
    assert after.value("digest_issues", state="sent") == 1
