"""One confirmation per address per 10 minutes, however many requests at once, and
also after the recipient said "I never asked for this" (issue 13, item 6)."""

from __future__ import annotations

import re
import threading

import pytest
from subscriber_support import Store, WebApp, parse

from subscribers.optin import Requester, SubscribeOutcome, request_subscription

pytestmark = pytest.mark.clock  # throttle windows


def _race(store: Store, address: str, n: int = 20) -> list[SubscribeOutcome]:
    barrier = threading.Barrier(n)
    outcomes: list[SubscribeOutcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        barrier.wait()
        try:
            got = request_subscription(
                store.engine, address, f"R{i}", Requester("web api", f"198.51.100.{i}")
            )
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            outcomes.append(got)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return outcomes


def test_parallel_requests_send_one_confirmation(store: Store) -> None:
    # a new address (rows race on insert) and a pending one (rows race on update)
    first = _race(store, "new@example.com")
    assert sum(o.recipient is not None for o in first) == 1
    again = _race(store, "new@example.com")
    assert sum(o.recipient is not None for o in again) == 0


def test_throttle_survives_unsubscribing_from_the_confirmation(web: WebApp) -> None:
    assert web.client.post("/subscribe", json={"email": "who@example.com"}).status_code == 202
    [stored] = web.outbox.outbox
    header = str(parse(stored.raw)["List-Unsubscribe"])
    found = re.search(r"<(https?://[^>]+/unsubscribe/[^>]+)>", header)
    assert found is not None
    answer = web.client.post(
        web.path(found.group(1)),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert web.client.post("/subscribe", json={"email": "who@example.com"}).status_code == 202
    assert len(web.outbox.outbox) == 1  # not mailed again at once
