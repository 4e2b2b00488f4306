"""Each reader's own digest: one compile per preference set, no empty emails, the
monthly round-up, delivery at 09:00 local in waves, and click counts that name nobody."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cli_support import DigestCLI
from fastapi.testclient import TestClient
from readers_support import add_reader, published_samples
from sqlalchemy import MetaData, func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session
from store_support import sample_items, write_json

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.delivery.controls import cancel_issue, pause_issue, resume_issue
from digest.delivery.send_loop import deliver
from digest.issue.freeze import issue_message
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job
from digest.store.importer import import_comparisons
from digest.store.models import ClickCount, Delivery, Issue, IssueLink, IssueVariant
from digest.store.subscriber_models import Subscriber
from digest.transports.memory import MemoryTransport
from digest.web.app import create_app

pytestmark = pytest.mark.clock  # local-time waves

S = Subscriber.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]


def _received(outbox: MemoryTransport) -> dict[str, EmailMessage]:
    out = {}
    for stored in outbox.outbox:
        msg = message_from_bytes(stored.raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out[stored.recipient.email] = msg
    return out


def _titles(msg: EmailMessage) -> set[str]:
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return {t for t in TITLES if t in text}


TITLES = [item["title"] for item in sample_items()]
BY_TOPIC = {
    "Developer Tools": {TITLES[0], TITLES[1], TITLES[4]},
    "Productivity": {TITLES[2]},
    "Data & Analytics": {TITLES[3]},
    "Writing": {TITLES[5]},
    "Voice & Audio": {TITLES[6]},
}


def test_one_compile_per_preference_set_and_no_empty_emails(
    settings: Settings, engine: Engine, tmp_path: Path, digest_cli: DigestCLI
) -> None:
    published_samples(engine, tmp_path, now=utcnow())
    sets = {
        "all": None,
        "dev": ["Developer Tools"],
        "words": ["Productivity", "Writing"],
        "robots": ["Robotics"],  # a topic with nothing this week
        "dev-voice": ["Developer Tools", "Voice & Audio"],
    }
    for name, topics in sets.items():
        for n in range(2):
            add_reader(engine, f"{name}{n}@example.com", topics)
    outbox = MemoryTransport()
    result = weekly_job(settings, engine=engine, transport=outbox)
    assert result.report is not None and result.report.sent == 8
    got = _received(outbox)
    assert set(got) == {f"{n}{i}@example.com" for n in sets if n != "robots" for i in range(2)}
    for name, topics in sets.items():
        if topics is None or name == "robots":
            continue
        wanted = set().union(*(BY_TOPIC.get(t, set()) for t in topics))
        for i in range(2):
            assert _titles(got[f"{name}{i}@example.com"]) == wanted, name
    assert _titles(got["all0@example.com"]) == set(TITLES)
    with Session(engine) as session:
        variants = session.exec(select(IssueVariant)).scalars().all()  # type: ignore[call-overload]
    # One compile per set that gets something other than the issue itself — never per reader.
    assert sorted(json.loads(v.topics) for v in variants) == sorted(
        [["Developer Tools"], ["Productivity", "Writing"], ["Developer Tools", "Voice & Audio"]]
    )
    with engine.connect() as conn:
        skipped = conn.execute(
            select(S.c.email, D.c.last_error)
            .join(S, S.c.id == D.c.subscriber_id)
            .where(D.c.state == "skipped")
        ).all()
    assert {e for e, _ in skipped} == {"robots0@example.com", "robots1@example.com"}
    assert all("nothing in your topics" in why for _, why in skipped)
    # A second run (a resumed or joined send) compiles nothing again and sends nothing.
    again = weekly_job(settings, engine=engine, transport=outbox, issue=result.number)
    assert again.outcome == "already-sent" and len(outbox.outbox) == 8
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(IssueVariant)).one()[0] == 3  # type: ignore[call-overload]
    status = digest_cli.json("status", "--json")
    shares = {tuple(v["topics"] or ["*"]): v["recipients"] for v in status["variants"]}
    assert shares == {
        ("*",): 2,
        ("Developer Tools",): 2,
        ("Productivity", "Writing"): 2,
        ("Developer Tools", "Voice & Audio"): 2,
    }


def test_monthly_readers_get_the_round_up_only(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    berlin = settings.model_copy(update={"timezone": "Europe/Berlin"})
    november = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    items = sample_items()[:3]
    for i, item in enumerate(items):
        item["published_at"] = (november - timedelta(days=1, hours=i)).isoformat()
    import_comparisons(engine, [write_json(tmp_path / "nov.json", items)])
    add_reader(engine, "weekly@example.com")
    add_reader(engine, "monthly@example.com", frequency="monthly")
    add_reader(engine, "monthly-dev@example.com", ["Developer Tools"], frequency="monthly")
    first = MemoryTransport()
    weekly_job(berlin, engine=engine, transport=first, now=november)
    # November's issue rounds up October, which had none: only weekly readers get mail.
    assert {m.recipient.email for m in first.outbox} == {"weekly@example.com"}
    december = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    later = sample_items()[3:5]
    for i, item in enumerate(later):
        item["published_at"] = (december - timedelta(hours=3 + i)).isoformat()
    import_comparisons(engine, [write_json(tmp_path / "dec.json", later)])
    second = MemoryTransport()
    weekly_job(berlin, engine=engine, transport=second, now=december)
    got = _received(second)
    assert set(got) == {"weekly@example.com", "monthly@example.com", "monthly-dev@example.com"}
    assert _titles(got["weekly@example.com"]) == {later[0]["title"], later[1]["title"]}
    # The round-up: November's comparisons (all of them, or the reader's topics).
    assert _titles(got["monthly@example.com"]) == {i["title"] for i in items}
    assert _titles(got["monthly-dev@example.com"]) == {items[0]["title"], items[1]["title"]}
    subject = str(got["monthly@example.com"]["Subject"])
    assert subject.startswith("The month in verdicts: November 2026")
    # One dash at most and within an inbox's width (it once carried the weekly subject
    # whole after a second dash).
    assert subject.count("—") <= 1 and len(subject) <= 60, subject


def test_each_reader_gets_it_at_nine_local_in_waves(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    local = settings.model_copy(update={"send_local_time": "09:00", "timezone": "UTC"})
    zones = {
        "kiwi@example.com": "Pacific/Auckland",
        "berliner@example.com": "Europe/Berlin",
        "angeleno@example.com": "America/Los_Angeles",
        "nozone@example.com": None,  # the list's own zone (UTC here)
    }
    start = datetime(2026, 12, 6, 19, 0, tzinfo=UTC)  # Sunday evening in UTC
    published_samples(engine, tmp_path, now=start, old_topic=None)
    for email, zone in zones.items():
        add_reader(engine, email, timezone=zone)
    clock = [start]
    outbox = MemoryTransport()
    first = weekly_job(
        local, engine=engine, transport=outbox, now=start, clock=lambda: clock[0], max_wait=0
    )
    assert first.report is not None and first.report.sent == 0  # nobody's 09:00 yet
    with engine.connect() as conn:
        waves = dict(
            conn.execute(
                select(S.c.email, D.c.next_attempt_at).join(S, S.c.id == D.c.subscriber_id)
            ).all()
        )
    assert {e: w.replace(tzinfo=UTC) for e, w in waves.items()} == {
        "kiwi@example.com": datetime(2026, 12, 6, 20, 0, tzinfo=UTC),
        "berliner@example.com": datetime(2026, 12, 7, 8, 0, tzinfo=UTC),
        "nozone@example.com": datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
        "angeleno@example.com": datetime(2026, 12, 7, 17, 0, tzinfo=UTC),
    }
    with Session(engine) as session:
        issue = session.exec(select(Issue)).scalars().one()  # type: ignore[call-overload]
        message = issue_message(issue, local)
    info = issue_status(engine, number=issue.number)
    assert info is not None and len(info["waves"]) == 4
    order = []
    for hour in range(19, 19 + 24):
        clock[0] = start.replace(hour=0) + timedelta(hours=hour)
        if clock[0] == datetime(2026, 12, 7, 8, 0, tzinfo=UTC):
            # Paused before the Berlin wave: the waves still to come wait…
            pause_issue(engine, number=issue.number)
            report = deliver(
                engine, issue.id or 0, message, outbox, local, clock=lambda: clock[0], max_wait=0
            )
            assert report.sent == 0
            resume_issue(engine, number=issue.number)
        report = deliver(
            engine, issue.id or 0, message, outbox, local, clock=lambda: clock[0], max_wait=0
        )
        order += [m.recipient.email for m in outbox.outbox[len(order) :]]
    assert order == [
        "kiwi@example.com",
        "berliner@example.com",
        "nozone@example.com",
        "angeleno@example.com",
    ]
    with engine.connect() as conn:
        sent_at = dict(
            conn.execute(select(S.c.email, D.c.sent_at).join(S, S.c.id == D.c.subscriber_id)).all()
        )
    for email, zone in zones.items():
        at = sent_at[email].replace(tzinfo=UTC).astimezone(ZoneInfo(zone or "UTC"))
        assert (at.hour, at.minute) == (9, 0), email
    assert issue_status(engine, number=issue.number)["state"] == "sent"  # type: ignore[index]


def test_cancel_skips_the_waves_still_to_come(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    local = settings.model_copy(update={"send_local_time": "09:00"})
    start = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)  # 09:00 in Auckland
    published_samples(engine, tmp_path, now=start, old_topic=None)
    add_reader(engine, "kiwi@example.com", timezone="Pacific/Auckland")
    add_reader(engine, "angeleno@example.com", timezone="America/Los_Angeles")
    outbox = MemoryTransport()
    weekly_job(local, engine=engine, transport=outbox, now=start, clock=lambda: start, max_wait=0)
    assert [m.recipient.email for m in outbox.outbox] == ["kiwi@example.com"]
    result = cancel_issue(engine)
    assert "1 unsent deliveries skipped" in result.summary()
    with engine.connect() as conn:
        states = sorted(conn.execute(select(D.c.state)).scalars())
    assert states == ["sent", "skipped"]


def _counted_links(engine: Engine) -> list[IssueLink]:
    with Session(engine) as session:
        return list(session.exec(select(IssueLink)).scalars())  # type: ignore[call-overload]


def test_click_counts_name_nobody_and_lead_only_where_the_issue_does(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    published_samples(engine, tmp_path, now=utcnow(), old_topic=None)
    add_reader(engine, "ada@example.com")
    add_reader(engine, "bo@example.com")
    outbox = MemoryTransport()
    weekly_job(settings, engine=engine, transport=outbox)
    bodies = {
        m.recipient.email: message_from_bytes(m.raw, policy=policy.default)
        .get_body(("plain",))
        .get_content()  # type: ignore[union-attr]
        for m in outbox.outbox
    }
    links = {e: re.findall(r"http://digest\.test/r/([A-Za-z0-9_-]+)", b) for e, b in bodies.items()}
    # The same counted links for every reader: a token cannot name one of them.
    assert links["ada@example.com"] == links["bo@example.com"] and links["ada@example.com"]
    client = TestClient(create_app(settings, engine=engine), base_url="http://digest.test")
    token = links["ada@example.com"][0]
    for _ in range(3):
        answer = client.get(f"/r/{token}", follow_redirects=False)
        assert answer.status_code == 302
    assert client.head(f"/r/{token}", follow_redirects=False).status_code == 302  # not counted
    stored = {link.url for link in _counted_links(engine)}
    assert answer.headers["location"] in stored
    assert answer.headers["location"].startswith("https://verdicts.example.com/compare/")
    # An edited token is refused, and so is one minted for another purpose.
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert client.get(f"/r/{forged}", follow_redirects=False).status_code == 404
    client.app.state.clicks.flush()  # type: ignore[attr-defined]
    with Session(engine) as session:
        counts = {
            c.link_id: c.clicks
            for c in session.exec(select(ClickCount)).scalars()  # type: ignore[call-overload]
        }
    # One client, one link, one hour: one click (issue 22 item 11).
    assert sorted(counts.values()) == [1]
    # Nothing in the store can say which reader clicked: no click table names one.
    meta = MetaData()
    meta.reflect(bind=engine)
    for name in ("issue_link", "click_count"):
        columns = set(meta.tables[name].columns.keys())
        assert not columns & {"subscriber_id", "email", "delivery_id", "ip", "user_agent"}


def test_click_counts_off_link_straight_to_the_target(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    direct = settings.model_copy(update={"click_counts": False})
    published_samples(engine, tmp_path, now=utcnow(), old_topic=None)
    add_reader(engine, "ada@example.com")
    outbox = MemoryTransport()
    weekly_job(direct, engine=engine, transport=outbox)
    text = (
        message_from_bytes(outbox.outbox[0].raw, policy=policy.default)
        .get_body(("plain",))
        .get_content()  # type: ignore[union-attr]
    )
    assert "/r/" not in text and "https://verdicts.example.com/compare/" in text
    assert _counted_links(engine) == []


def test_the_preference_page_is_reached_from_every_email(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    published_samples(engine, tmp_path, now=utcnow())
    add_reader(engine, "ada@example.com")
    outbox = MemoryTransport()
    weekly_job(settings, engine=engine, transport=outbox)
    msg = message_from_bytes(outbox.outbox[0].raw, policy=policy.default)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    [path] = set(re.findall(r"http://digest\.test(/preferences/[A-Za-z0-9_-]+)", html))
    client = TestClient(create_app(settings, engine=engine), base_url="http://digest.test")
    page = client.get(path)
    assert page.status_code == 200 and 'value="Robotics"' in page.text
    saved = client.post(
        path,
        data={
            "topics": ["Writing", "Productivity"],
            "frequency": "monthly",
            "timezone": "Europe/Berlin",
        },
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    with engine.connect() as conn:
        row = conn.execute(
            select(S.c.topics, S.c.frequency, S.c.timezone).where(S.c.email == "ada@example.com")
        ).one()
    assert (json.loads(row.topics), row.frequency, row.timezone) == (
        ["Productivity", "Writing"],
        "monthly",
        "Europe/Berlin",
    )
    bad = client.post(path, data={"topics": ["Astrology"], "frequency": "weekly"})
    assert bad.status_code == 422 and "unknown topic" in bad.text
    assert client.post(path, data={"timezone": "Mars/Olympus"}).status_code == 422
    # Choosing every topic is "every topic" (one preference set, not another).
    everything = [
        "Data & Analytics",
        "Developer Tools",
        "Productivity",
        "Robotics",
        "Voice & Audio",
        "Writing",
    ]
    client.post(path, data={"topics": everything, "frequency": "weekly"})
    with engine.connect() as conn:
        assert (
            conn.execute(select(S.c.topics).where(S.c.email == "ada@example.com")).scalar() is None
        )
    assert client.get(path[:-3] + "xyz").status_code == 400
    with engine.begin() as conn:
        conn.execute(update(S).values(status="unsubscribed"))
    gone = client.get(path)  # no longer a reader: no form, and no contradiction
    assert gone.status_code == 410 and "You're not subscribed" in gone.text
    assert "Nothing was changed" not in gone.text and "does not work" not in gone.text
    assert 'name="frequency"' not in gone.text  # no preferences form for a non-reader


def test_sign_up_can_choose_topics_frequency_and_zone(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    published_samples(engine, tmp_path, now=utcnow())
    outbox = MemoryTransport()
    client = TestClient(
        create_app(settings, engine=engine, transport_factory=lambda _s: outbox),
        base_url="http://digest.test",
    )
    form = client.get("/subscribe").text
    assert 'name="topics" value="Developer Tools"' in form and 'id="timezone"' in form
    assert client.get("/static/timezone.js").status_code == 200
    answer = client.post(
        "/subscribe",
        data={
            "email": "new@example.com",
            "topics": ["Developer Tools"],
            "frequency": "monthly",
            "timezone": "Asia/Kolkata",
        },
    )
    assert answer.status_code == 200
    api = client.post(
        "/subscribe",
        json={"email": "api@example.com", "topics": ["Writing"], "frequency": "weekly"},
    )
    assert api.status_code == 202
    refused = client.post("/subscribe", json={"email": "x@example.com", "topics": "Writing"})
    assert refused.status_code == 422
    with engine.connect() as conn:
        rows = {
            r.email: (r.topics, r.frequency, r.timezone)
            for r in conn.execute(select(S.c.email, S.c.topics, S.c.frequency, S.c.timezone))
        }
    assert rows["new@example.com"] == ('["Developer Tools"]', "monthly", "Asia/Kolkata")
    assert rows["api@example.com"] == ('["Writing"]', "weekly", None)
    assert "x@example.com" not in rows


@pytest.mark.parametrize("zone", ["Pacific/Auckland", "America/Los_Angeles"])
def test_a_wave_skipped_by_a_dst_jump_still_happens(zone: str) -> None:
    from digest.readers.waves import wave_time

    tz = ZoneInfo(zone)
    # 02:30 does not exist on the spring-forward night; the wave moves an hour later.
    night = {
        "Pacific/Auckland": datetime(2026, 9, 26, 12, 0, tzinfo=UTC),
        "America/Los_Angeles": datetime(2026, 3, 8, 8, 0, tzinfo=UTC),
    }[zone]
    from datetime import time as clock_time

    at = wave_time(night, tz, clock_time(2, 30))
    assert at > night and at - night < timedelta(days=2)
