"""One-click unsubscribes committed in groups (subscribers/oneclick.py, issue 28): each
subscriber is moved and logged once however often a group names them, a link made for
another address moves nobody (and the rest of its group still goes through), and the
answer waits for the commit."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from sqlalchemy import func, insert, select
from subscriber_support import Store, store  # noqa: F401

from digest.core.clock import utcnow
from digest.core.tokens import TokenMinter, read_claims
from digest.store.subscriber_models import ConsentEvent, Subscriber
from subscribers.oneclick import UnsubscribeWriter, _Request
from subscribers.optin import Requester

pytestmark = pytest.mark.clock

S = Subscriber.__table__  # type: ignore[attr-defined]
C = ConsentEvent.__table__  # type: ignore[attr-defined]
WHO = Requester(source="List-Unsubscribe one-click (RFC 8058)", ip="198.51.100.7", user_agent="x")


def _readers(rig: Store, n: int) -> list[tuple[int, str]]:
    now = utcnow()
    with rig.engine.begin() as conn:
        conn.execute(
            insert(S),
            [
                {
                    "email": f"one{i}@example.com",
                    "status": "active",
                    "source": "test",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n)
            ],
        )
        return [(int(r.id), str(r.email)) for r in conn.execute(select(S.c.id, S.c.email))]


def _state(rig: Store) -> tuple[dict[str, str], dict[int, int]]:
    with rig.engine.connect() as conn:
        status = {str(r.email): str(r.status) for r in conn.execute(select(S.c.email, S.c.status))}
        logged = dict(
            conn.execute(
                select(C.c.subscriber_id, func.count())
                .where(C.c.action == "unsubscribe")
                .group_by(C.c.subscriber_id)
            ).all()
        )
    return status, {int(k): int(v) for k, v in logged.items()}


def test_a_group_moves_each_subscriber_once_and_skips_a_foreign_link(
    store: Store,  # noqa: F811
) -> None:
    readers = _readers(store, 3)
    minter = TokenMinter(store.settings, "unsubscribe")
    good = [minter.for_address(sid, email) for sid, email in readers]
    # A link for the second reader's id made for another address (its id reused).
    foreign = minter.for_address(readers[1][0], "someone-else@example.com")
    writer = UnsubscribeWriter(store.engine, store.settings)
    tokens = [good[0], good[0], foreign, good[2], good[0]]
    group = [_Request(read_claims(store.settings, "unsubscribe", t), WHO, Future()) for t in tokens]
    assert writer._write(group) == 2
    status, logged = _state(store)
    assert [status[email] for _, email in readers] == ["unsubscribed", "active", "unsubscribed"]
    assert logged == {readers[0][0]: 1, readers[2][0]: 1}
    # Through the thread: the futures finish once committed; repeats change nothing.
    done = [writer.submit(t, WHO) for t in [*good, *good]]
    for future in done:
        assert future.result(timeout=60) is None
    writer.stop()
    status, logged = _state(store)
    assert set(status.values()) == {"unsubscribed"}
    assert logged == {sid: 1 for sid, _ in readers}
