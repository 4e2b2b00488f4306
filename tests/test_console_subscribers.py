"""Subscribers in the console (search, one person, add, unsubscribe, forget, CSV
import all-or-nothing with an error report by line) and the charts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from console_support import EDITOR, OPERATOR, Console
from sqlalchemy import func, select
from store_support import dump_store, sample_emails

from digest.console.charts import issue_rates, subscribers_by_week
from digest.core.clock import utcnow
from digest.jobs.schedule import prepare_draft
from digest.store.engine import session_scope
from digest.store.subscriber_models import ConsentEvent, Subscriber
from subscribers.privacy import unsubscribe_address

pytestmark = pytest.mark.clock  # subscribers week by week


def _id_of(console: Console, email: str) -> int:
    with console.engine.connect() as conn:
        found = conn.execute(
            select(Subscriber.__table__.c.id).where(Subscriber.__table__.c.email == email)  # type: ignore[attr-defined]
        ).scalar()
    assert found is not None
    return int(found)


def test_search_and_one_subscribers_page(console: Console) -> None:
    operator, _ = console.login(OPERATOR)
    everyone = operator.get("/console/subscribers")
    assert "<strong>12</strong> active" in everyone.text
    first = sample_emails()[0]
    found = operator.get("/console/subscribers", params={"q": first[:6].upper()})
    assert first in found.text
    assert "1 found" in operator.get("/console/subscribers", params={"q": first}).text
    # LIKE wildcards are searched as text, not as patterns.
    assert "0 found" in operator.get("/console/subscribers", params={"q": "%"}).text
    assert operator.get("/console/subscribers", params={"status": "x"}).status_code == 422
    page = operator.get(f"/console/subscribers/{_id_of(console, first)}")
    assert page.status_code == 200 and "Consent log" in page.text and ">import<" in page.text
    assert "No issue was sent to this address yet" in page.text
    assert operator.get("/console/subscribers/9999").status_code == 404


def test_add_unsubscribe_and_forget(console: Console) -> None:
    operator, csrf = console.login(OPERATOR)
    refused = operator.post(
        "/console/subscribers/add", data={"csrf": csrf, "email": "new@example.com"}
    )
    assert refused.status_code == 422 and "consent source" in refused.text
    added = operator.post(
        "/console/subscribers/add",
        data={"csrf": csrf, "email": "New@Example.com", "name": "Nova", "consent": "booth"},
    )
    assert added.status_code == 200 and "Subscriber added as active" in added.text
    assert f"booth (added by {OPERATOR})" in added.text
    sid = _id_of(console, "new@example.com")
    bad = operator.post(
        "/console/subscribers/add", data={"csrf": csrf, "email": "no", "consent": "x"}
    )
    assert bad.status_code == 422 and "not added" in bad.text
    gone = operator.post(f"/console/subscribers/{sid}/unsubscribe", data={"csrf": csrf})
    assert "Unsubscribed" in gone.text and ">unsubscribed<" in gone.text
    assert f"unsubscribed by {OPERATOR}" in gone.text
    # Suppressed: adding it again is refused.
    again = operator.post(
        "/console/subscribers/add", data={"csrf": csrf, "email": "new@example.com", "consent": "x"}
    )
    assert again.status_code == 422 and "double opt-in" in again.text
    assert (
        operator.post(f"/console/subscribers/{sid}/forget", data={"csrf": csrf}).status_code == 422
    )
    forgotten = operator.post(
        f"/console/subscribers/{sid}/forget", data={"csrf": csrf, "sure": "yes"}
    )
    assert forgotten.status_code == 200 and "Erased" in forgotten.text
    assert operator.get(f"/console/subscribers/{sid}").status_code == 404


def test_csv_import_reports_bad_lines_and_writes_nothing(console: Console, tmp_path) -> None:  # type: ignore[no-untyped-def]
    operator, csrf = console.login(OPERATOR)
    before = dump_store(console.engine)
    bad = "email,name\nok@example.com,Ok\nnot-an-address,Bad\nalso@example.com,Fine\n@x,Worse\n"
    answer = operator.post(
        "/console/subscribers/import/new",
        data={"csrf": csrf, "consent": "fair"},
        files={"file": ("readers.csv", bad.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    job = console.app.state.import_runner.get(job_id)
    job.thread.join(timeout=60)
    page = operator.get(answer.headers["location"])
    assert "Nothing was imported: 2 problems" in page.text
    assert re.search(r"<li>line 3: invalid address &#39;not-an-address&#39;", page.text)
    assert "<li>line 5:" in page.text and "/tmp" not in page.text
    assert dump_store(console.engine) == before
    assert 'http-equiv="refresh"' not in page.text


def test_csv_import_adds_with_progress_and_consent(console: Console) -> None:
    operator, csrf = console.login(OPERATOR)
    rows = "email,name\n" + "".join(f"r{i}@example.com,R {i}\n" for i in range(30))
    rows += f"{sample_emails()[0]},Known\n"
    answer = operator.post(
        "/console/subscribers/import/new",
        data={"csrf": csrf, "consent": "signup sheet"},
        files={"file": ("../../etc/readers.csv", rows.encode(), "text/csv")},
        follow_redirects=False,
    )
    job = console.app.state.import_runner.get(answer.headers["location"].rsplit("/", 1)[1])
    assert job.filename == "readers.csv" and job.rows == 31
    job.thread.join(timeout=60)
    page = operator.get(answer.headers["location"])
    assert "Imported: 30 added, 1 already subscribed, 0 suppressed" in page.text
    assert 'value="100"' in page.text
    with console.engine.connect() as conn:
        sources = set(conn.execute(select(ConsentEvent.__table__.c.source)).scalars())  # type: ignore[attr-defined]
    assert f"signup sheet (imported by {OPERATOR})" in sources
    missing = operator.post("/console/subscribers/import/new", data={"csrf": csrf, "consent": "x"})
    assert missing.status_code == 422


def test_charts_are_svg_with_text_alternatives(console: Console) -> None:
    with session_scope(console.engine) as session:
        prepare_draft(session, console.settings)
    operator, csrf = console.login(OPERATOR)
    operator.post("/console/issues/1/send", data={"csrf": csrf})
    console.wait_for_send()
    unsubscribe_address(console.engine, sample_emails()[0], source="test")
    with console.engine.connect() as conn:
        [rates] = issue_rates(conn, 5)
    assert (rates.number, rates.recipients, rates.delivered, rates.bounced) == (1, 12, 12, 0)
    assert rates.pct(rates.delivered) == 100.0
    editor, _ = console.login(EDITOR)  # aggregates only: editors see them too
    page = editor.get("/console/charts")
    assert page.status_code == 200
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 4
    assert 'role="img"' in page.text and "<title id=" in page.text and "<desc id=" in page.text
    assert "style=" not in page.text  # the CSP forbids inline styles
    assert '<th scope="row"><a href="/console/issues/1">#1</a>' in page.text


def test_chart_figures(console: Console) -> None:
    tz = console.settings.tz
    with console.engine.connect() as conn:
        weeks = subscribers_by_week(conn, tz, utcnow(), 4)
        assert [w.active for w in weeks][-1] == 12 and sum(w.joined for w in weeks) == 12
        assert issue_rates(conn, 5) == []
    unsubscribe_address(console.engine, sample_emails()[1], source="test")
    with console.engine.connect() as conn:
        weeks = subscribers_by_week(conn, tz, utcnow(), 4)
        next_week = subscribers_by_week(conn, tz, utcnow() + timedelta(days=7), 4)
        total = conn.execute(select(func.count()).select_from(Subscriber.__table__)).scalar()  # type: ignore[attr-defined]
    assert weeks[-1].active == 11 and weeks[-1].unsubscribed == 1 and total == 12
    # A week later, nobody new: the 11 carry over, nobody joined or left that week.
    assert (next_week[-1].active, next_week[-1].joined, next_week[-1].unsubscribed) == (11, 0, 0)
