"""Take the README's console screenshots (docs/screenshots/console-*.png).

    .venv/bin/python tests/console_screenshots.py [OUT_DIR]

Builds a store with three months of history (subscribers joining and leaving, four
past issues with a few provider bounces and complaints), a draft for this week that
an editor has touched, starts ``digest serve`` with an aiosmtpd server as its SMTP
transport and photographs the pages in headless Chromium. Not a test: pytest does not
collect it, and nothing in it asserts.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# conftest first: it imports the rig, whose helpers import conftest's secret back (run as a
# script, importing the rig first would meet that circle half-way).
import conftest  # noqa: F401
from console_rig import (
    EDITOR,
    OPERATOR,
    browser,
    log_in,
    rig_env,
    seed,
)
from servers import digest_serve, free_port, recording_smtp, wait_for
from sqlalchemy import insert, select, update
from store_support import sample_items, write_json

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.issue.editing import Edit, edit_issue
from digest.jobs.schedule import prepare_draft
from digest.jobs.weekly import weekly_job
from digest.store.engine import make_engine, session_scope
from digest.store.importer import import_comparisons
from digest.store.models import ClickCount, Delivery, IssueLink, MailEventRecord
from digest.store.subscriber_models import ConsentEvent, Subscriber, SubscriberStatus
from digest.transports.memory import MemoryTransport
from subscribers.lifecycle import suppress

S = Subscriber.__table__  # type: ignore[attr-defined]
C = ConsentEvent.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]
E = MailEventRecord.__table__  # type: ignore[attr-defined]
L = IssueLink.__table__  # type: ignore[attr-defined]
K = ClickCount.__table__  # type: ignore[attr-defined]
READERS = 420
ZONES = [None, None, "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Europe/London"]


def preferences(rng: random.Random) -> dict[str, Any]:
    """What a reader might have chosen: most take everything every week at home."""
    roll = rng.random()
    topics = (
        json.dumps(["Developer Tools"])
        if roll < 0.3
        else json.dumps(["Productivity", "Writing"])
        if roll < 0.4
        else None
    )
    return {
        "topics": topics,
        "frequency": "monthly" if rng.random() < 0.06 else "weekly",
        "timezone": rng.choice(ZONES),
    }


def history(settings: Settings, tmp: Path) -> None:
    """Back-date the subscribers over twelve weeks, let some leave, send four issues."""
    rng = random.Random(8)
    engine = make_engine(settings.database_url)
    now = utcnow()
    with engine.begin() as conn:
        ids = list(conn.execute(select(S.c.id).order_by(S.c.id)).scalars())
        # More people join as the list gets known: skewed towards recent weeks.
        times = sorted(now - timedelta(days=84 * rng.random() ** 1.6) for _ in ids)
        for sid, joined in zip(ids, times, strict=True):
            conn.execute(
                update(S).where(S.c.id == sid).values(created_at=joined, confirmed_at=joined)
            )
            conn.execute(update(C).where(C.c.subscriber_id == sid).values(created_at=joined))
            conn.execute(update(S).where(S.c.id == sid).values(**preferences(rng)))
    # The past issues went out at 09:00 in each reader's zone, and readers clicked.
    local = settings.model_copy(update={"send_local_time": "09:00"})
    # Before the sample comparisons (dated into last week): they are the draft's.
    for weeks_ago in (5, 4, 3, 2):
        moment = now - timedelta(weeks=weeks_ago, hours=2)
        items = sample_items()[:3]
        for i, item in enumerate(items):
            item["slug"] = f"{item['slug']}-{weeks_ago}w"
            item["title"] = f"{item['title']} ({weeks_ago} weeks ago)"
            item["published_at"] = (moment - timedelta(days=2, hours=i)).isoformat()
        import_comparisons(engine, [write_json(tmp / f"past-{weeks_ago}.json", items)])
        result = weekly_job(
            local,
            engine=engine,
            transport=MemoryTransport(),
            now=moment,
            clock=lambda moment=moment: moment + timedelta(days=2),
            max_wait=0,
            actor="scheduler",
        )
        with engine.begin() as conn:
            deliveries = conn.execute(
                select(D.c.id, D.c.subscriber_id).where(D.c.issue_id == result.issue_id)
            ).all()
            events = []
            for n, (did, sid) in enumerate(rng.sample(deliveries, 9)):
                kind = "complained" if n < 2 else "bounced_hard" if n < 6 else "bounced_soft"
                events.append(
                    {
                        "provider": "postmark",
                        "event_id": f"shot-{weeks_ago}-{did}",
                        "kind": kind,
                        "email": "",
                        "subscriber_id": sid,
                        "issue_id": result.issue_id,
                        "delivery_id": did,
                        "detail": "",
                        "occurred_at": moment + timedelta(hours=3),
                        "received_at": moment + timedelta(hours=3),
                    }
                )
            conn.execute(insert(E), events)
            links = conn.execute(select(L.c.id).where(L.c.issue_id == result.issue_id)).scalars()
            conn.execute(
                insert(K),
                [
                    {"link_id": link, "clicks": rng.randint(3, 60), "last_at": moment}
                    for link in links
                ],
            )
    with engine.begin() as conn:
        ids = list(conn.execute(select(S.c.id).order_by(S.c.id)).scalars())
        leaving = rng.sample(ids, 40)
        for n, sid in enumerate(leaving):
            status = SubscriberStatus.UNSUBSCRIBED if n < 28 else SubscriberStatus.BOUNCED
            suppress(conn, [sid], status, source="web" if n < 28 else "webhook postmark")
            when = now - timedelta(days=80 * rng.random() ** 1.3)
            joined = conn.execute(select(S.c.confirmed_at).where(S.c.id == sid)).scalar_one()
            when = max(when, joined + timedelta(days=3))
            conn.execute(
                update(C)
                .where(C.c.subscriber_id == sid, C.c.action.in_(["unsubscribe", "bounce"]))
                .values(created_at=when)
            )
    with session_scope(engine) as session:
        draft = prepare_draft(session, settings, actor="scheduler").issue
        assert draft is not None
        edit_issue(
            session,
            draft,
            settings,
            Edit(intro="Voice agents were the busiest category this week: two head-to-heads."),
            actor=EDITOR,
        )
    engine.dispose()


def shoot(page: Any, out: Path, name: str, *, full: bool = True) -> None:
    page.screenshot(path=str(out / f"console-{name}.png"), full_page=full)
    print(f"wrote {out / f'console-{name}.png'}")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="console-shots-"))
    with recording_smtp() as smtp:
        port = free_port()
        env = rig_env(
            tmp,
            smtp,
            port,
            DIGEST_RATE_LIMIT="40",
            DIGEST_FROM="Weekly AI Tool Verdicts <digest@weeklyverdicts.net>",
            DIGEST_POSTAL_ADDRESS="Weekly Verdicts Ltd, 12 Harbour Road, Bristol BS1 4RN, UK",
        )
        settings = Settings(
            database_url=env["DIGEST_DATABASE_URL"],
            secret_key=env["DIGEST_SECRET_KEY"],
            timezone=env["DIGEST_TIMEZONE"],
            base_url=env["DIGEST_BASE_URL"],
        )
        seed(settings, tmp, READERS)
        history(settings, tmp)
        with digest_serve(env, tmp, port) as base, browser() as chrome:
            wide = chrome.new_context(viewport={"width": 1280, "height": 900})
            page = wide.new_page()
            page.goto(f"{base}/console/login")
            shoot(page, out, "login", full=False)
            log_in(page, base, EDITOR)
            page.goto(f"{base}/console/issues/5")
            page.get_by_label("Send a [TEST] copy to").fill("proofreader@weeklyverdicts.net")
            page.get_by_role("button", name="Send test").click()
            page.get_by_role("button", name="Approve").click()
            page.wait_for_url("**/issues/5?done=approved")
            # Chromium paints only the iframes inside the viewport: make it the page.
            page.set_viewport_size(
                {"width": 1280, "height": page.evaluate("document.documentElement.scrollHeight")}
            )
            page.wait_for_timeout(500)
            shoot(page, out, "issue", full=False)
            phone = chrome.new_context(viewport={"width": 375, "height": 812})
            small = phone.new_page()
            log_in(small, base, EDITOR)
            small.goto(f"{base}/console/issues/5")
            shoot(small, out, "issue-phone", full=False)
            wide.close()
            operator = chrome.new_context(viewport={"width": 1280, "height": 900})
            page = operator.new_page()
            log_in(page, base, OPERATOR)
            shoot(page, out, "issues")
            page.goto(f"{base}/console/charts")
            shoot(page, out, "charts")
            page.goto(f"{base}/console/subscribers")
            shoot(page, out, "subscribers", full=False)
            sheet = tmp / "meetup-sheet.csv"
            sheet.write_text(
                "email,name\nmina@weeklyverdicts.net,Mina\nnot an address,Typo\n"
                "ola@weeklyverdicts.net,Ola\nrui@@weeklyverdicts.net,Rui\n",
                encoding="utf-8",
            )
            page.goto(f"{base}/console/subscribers/import/new")
            page.get_by_label("CSV file").set_input_files(str(sheet))
            page.get_by_label("Where and how these people agreed").fill("meetup sign-up sheet")
            page.get_by_label("Skip bad rows: import the valid ones").check()
            page.get_by_role("button", name="Import").click()
            page.get_by_role("status").filter(has_text="Imported").wait_for()
            shoot(page, out, "import")
            page.goto(f"{base}/console/issues/5/send")
            shoot(page, out, "send")
            page.get_by_role("button", name="subscribers now").click()
            engine = make_engine(settings.database_url)

            def under_way() -> bool:
                with engine.connect() as conn:
                    sent = conn.execute(
                        select(D.c.id).where(D.c.issue_id == 5, D.c.state == "sent").limit(150)
                    ).all()
                return len(sent) >= 150

            wait_for(under_way, "the send to be under way")
            page.goto(f"{base}/console/issues/5")
            shoot(page, out, "progress", full=False)
            engine.dispose()
            page.goto(f"{base}/console/issues/4/deliveries?show=bounced")
            shoot(page, out, "deliveries")
            page.goto(f"{base}/console/issues/4#readers")
            page.locator("#readers").screenshot(path=str(out / "console-readers.png"))
            print(f"wrote {out / 'console-readers.png'}")
            page.goto(f"{base}/console/subscribers/31")
            page.locator("#preferences summary").click()
            shoot(page, out, "subscriber")
    print(f"work folder: {tmp}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
