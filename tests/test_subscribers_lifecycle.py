"""The lifecycle in the store: suppression list, consent log, import, forget
(on SQLite, and on PostgreSQL when DIGEST_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from subscriber_support import Store, write

from digest.exceptions import SubscriberError
from digest.notices.subscribers import confirm_url
from digest.store.engine import session_scope
from digest.store.models import Delivery
from digest.store.subscriber_models import ConsentEvent, Subscriber, SubscriberStatus, Suppression
from subscribers.consent import email_hash, suppression_of
from subscribers.lifecycle import suppress
from subscribers.optin import Requester, confirm, request_subscription
from subscribers.privacy import export_csv, forget, show
from subscribers.service import add_subscriber, import_csv

pytestmark = pytest.mark.clock  # consent times

S = Subscriber.__table__  # type: ignore[attr-defined]
WHO = Requester(source="test", ip="203.0.113.9", user_agent="pytest")


def _add(store: Store, email: str, name: str = "") -> int:
    with session_scope(store.engine) as session:
        sub, _ = add_subscriber(session, email, name)
        assert sub.id is not None
        return sub.id


def _status(store: Store, email: str) -> str | None:
    with store.engine.connect() as conn:
        return conn.execute(select(S.c.status).where(S.c.email == email)).scalar()


def test_suppress_lists_logs_and_keeps_first_reason(store: Store) -> None:
    a, b = _add(store, "a@example.com"), _add(store, "b@example.com")
    with store.engine.begin() as conn:
        assert (
            suppress(
                conn, [a, b, a], SubscriberStatus.BOUNCED, source="smtp", detail="550 no such user"
            )
            == 2
        )
        # Already suppressed: a complaint later does not change the first reason.
        assert suppress(conn, [a], SubscriberStatus.COMPLAINED, source="webhook") == 0
        assert suppression_of(conn, "a@example.com") == "bounced"
    assert _status(store, "a@example.com") == "bounced"
    events = show(store.engine, "a@example.com")["events"]
    assert [(e["action"], e["source"], e["detail"]) for e in events][-1] == (
        "bounce",
        "smtp",
        "550 no such user",
    )


def test_csv_import_respects_suppression_and_logs_consent_source(
    store: Store, tmp_path: Path
) -> None:
    gone = _add(store, "gone@example.com")
    with store.engine.begin() as conn:
        suppress(conn, [gone], SubscriberStatus.UNSUBSCRIBED, source="test")
    _add(store, "forgotten@example.com")
    forget(store.engine, "forgotten@example.com")
    csv_path = write(
        tmp_path / "people.csv",
        "email,name\nnew@example.com,New Person\nGONE@example.com,\n"
        "forgotten@example.com,Back Again\n",
    )
    report = import_csv(store.engine, csv_path, source="signup sheet, meetup 12")
    assert report.added == 1
    assert sorted(report.suppressed) == ["forgotten@example.com", "gone@example.com"]
    assert _status(store, "gone@example.com") == "unsubscribed"
    assert _status(store, "forgotten@example.com") is None
    info = show(store.engine, "new@example.com")
    assert info["status"] == "active" and info["confirmed_at"]
    [event] = info["events"]
    assert event["action"] == "import" and event["source"] == "signup sheet, meetup 12"
    assert event["detail"] == "people.csv line 2"


def test_cli_add_refuses_a_forgotten_address(store: Store) -> None:
    _add(store, "ada@example.com", "Ada")
    forget(store.engine, "ada@example.com")
    with (
        pytest.raises(SubscriberError, match="suppression list"),
        session_scope(store.engine) as session,
    ):
        add_subscriber(session, "Ada@Example.com")


def test_forget_erases_everything_but_a_hash(store: Store) -> None:
    sid = _add(store, "ada@example.com", "Ada Lovelace")
    request_subscription(store.engine, "ada@example.com", None, WHO)
    result = forget(store.engine, "ada@example.com")
    assert result.erased and result.suppressed_as == "unsubscribed"
    with store.engine.connect() as conn:
        assert conn.execute(select(S).where(S.c.id == sid)).first() is None
        hashes = conn.execute(select(Suppression.email_hash)).scalars().all()  # type: ignore[call-overload]
        for table in (ConsentEvent.__table__, Delivery.__table__):  # type: ignore[attr-defined]
            assert (
                conn.execute(select(func.count()).where(table.c.subscriber_id == sid)).scalar() == 0
            )
    assert hashes == [email_hash("ada@example.com")]
    assert "ada" not in "".join(hashes)
    info = show(store.engine, "ada@example.com")
    assert info == {
        "email": "ada@example.com",
        "status": None,
        "known": False,
        "suppressed": "unsubscribed",
        "events": [],
    }
    # Forgetting twice is harmless.
    assert not forget(store.engine, "ada@example.com").erased


def test_new_double_opt_in_brings_a_suppressed_address_back(store: Store) -> None:
    sid = _add(store, "ada@example.com")
    with store.engine.begin() as conn:
        suppress(conn, [sid], SubscriberStatus.COMPLAINED, source="webhook")
    outcome = request_subscription(store.engine, "ada@example.com", "Ada", WHO)
    # Asking is not enough: the state stays suppressed until the link is clicked.
    assert _status(store, "ada@example.com") == "complained"
    assert outcome.recipient is not None and outcome.nonce is not None
    token = confirm_url(store.settings, sid, outcome.nonce).rsplit("/", 1)[1]
    confirm(store.engine, store.settings, token, WHO)
    assert _status(store, "ada@example.com") == "active"
    with store.engine.connect() as conn:
        assert suppression_of(conn, "ada@example.com") is None
    actions = [e["action"] for e in show(store.engine, "ada@example.com")["events"]]
    assert actions == ["add", "complaint", "subscribe", "confirm"]


def test_export_writes_state_and_consent_time(store: Store, tmp_path: Path) -> None:
    _add(store, "ada@example.com", '=HYPERLINK("http://evil")')
    request_subscription(store.engine, "bob@example.com", "Bob", WHO)
    target = tmp_path / "out" / "subs.csv"
    assert export_csv(store.engine, target) == 2
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "email,name,status,consent_at,consent_source,created_at,unsubscribed_at,"
        "topics,frequency,timezone"
    )
    ada, bob = lines[1], lines[2]
    assert ada.startswith("ada@example.com,\"'=HYPERLINK") and ",active,20" in ada
    assert bob.startswith("bob@example.com,Bob,pending,,test,")
    assert not list(target.parent.glob(".export-*"))
