"""Pages that talk to the person (issue 26 item 5): the address typed, the welcome
email, an unsubscribe page that names the address and offers less mail, an undo, no
self-contradicting page, the time-zone picker, the feed in a browser. Through the ASGI
stack with a real SQLite store; mail captured by the in-memory transport."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from readers_support import published_samples
from sqlalchemy import select
from subscriber_support import WebApp, parse

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope
from digest.store.subscriber_models import ConsentEvent, Subscriber
from digest.transports.memory import MemoryTransport
from subscribers.preferences import ZONE_GROUPS, ZONES
from subscribers.service import mask_address

pytestmark = pytest.mark.clock  # sign-up and unsubscribe tokens

S = Subscriber.__table__  # type: ignore[attr-defined]
C = ConsentEvent.__table__  # type: ignore[attr-defined]


def _status(web: WebApp, email: str) -> str | None:
    with web.engine.connect() as conn:
        return conn.execute(select(S.c.status).where(S.c.email == email)).scalar()


def _confirmed(web: WebApp, email: str) -> None:
    web.client.post("/subscribe", data={"email": email, "name": "Ada Lovelace"})
    [link] = web.confirmation_links()[-1:]
    assert web.client.post(web.path(link)).status_code == 200
    assert _status(web, email) == "active"


def _unsubscribe_path(web: WebApp, email: str) -> str:
    """The unsubscribe link of a real digest sent to ``email``."""
    outbox = MemoryTransport()
    weekly_job(web.settings, engine=web.engine, transport=outbox)
    [sent] = [m for m in outbox.outbox if m.recipient.email == email]
    url = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", str(parse(sent.raw)["List-Unsubscribe"]))
    assert url is not None
    return web.path(url.group(1))


def test_check_your_inbox_names_the_address_and_how_to_fix_a_typo(sqlite_web: WebApp) -> None:
    r = sqlite_web.client.post("/subscribe", data={"email": "ada@exmaple.com"})
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert '<strong class="address">ada@exmaple.com</strong>' in r.text
    fix = re.search(r'href="(/subscribe\?email=[^"]+)">Correct it and sign up again', r.text)
    assert fix is not None and fix.group(1) == "/subscribe?email=ada%40exmaple.com"
    form = sqlite_web.client.get(fix.group(1))
    assert form.status_code == 200 and 'value="ada@exmaple.com"' in form.text
    # What is typed is shown escaped, never as markup.
    odd = sqlite_web.client.post("/subscribe", data={"email": '"<b>x</b>"@example.com'})
    assert "<b>x</b>" not in odd.text


def test_a_welcome_email_follows_the_confirmation(
    settings: Settings, sqlite_web: WebApp, tmp_path: Path
) -> None:
    web = sqlite_web
    published_samples(web.engine, tmp_path, now=utcnow())
    weekly_job(web.settings, engine=web.engine, transport=MemoryTransport())  # a latest issue
    _confirmed(web, "ada@example.com")
    [welcome] = [m for m in web.outbox.outbox if "Welcome" in str(parse(m.raw)["Subject"])]
    msg = parse(welcome.raw)
    assert str(msg["Subject"]) == f"Welcome to {web.settings.list_name}: what to expect"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert text.startswith(f"{web.settings.list_name}\n") and "Hi Ada," in text
    assert "One email a week" in text  # what to expect
    assert re.search(r"The next issue goes out on \w+day \d+ \w+ at 09:00 \(UTC\)\.", text)
    prefs = re.search(r"http\S+/preferences/[A-Za-z0-9_-]+", text)
    assert prefs is not None  # how to change topics: and the link works
    assert web.client.get(web.path(prefs.group(0))).status_code == 200
    assert f"{web.settings.base_url}/archive/1" in text and "Read the latest issue" in html
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # A second click on the confirmation link welcomes nobody twice.
    before = len(web.outbox.outbox)
    web.client.post(web.path(web.confirmation_links()[0]))
    assert len(web.outbox.outbox) == before


def test_unsubscribe_names_the_address_offers_less_mail_and_can_be_undone(
    settings: Settings, sqlite_web: WebApp, tmp_path: Path
) -> None:
    web = sqlite_web
    _confirmed(web, "ada.lovelace@example.com")
    published_samples(web.engine, tmp_path, now=utcnow())
    path = _unsubscribe_path(web, "ada.lovelace@example.com")
    token = path.rsplit("/", 1)[1]
    shown = web.client.get(path)
    assert shown.status_code == 200
    assert f'<strong class="address">{mask_address("ada.lovelace@example.com")}</strong>' in (
        shown.text
    )
    assert "ada.lovelace@" not in shown.text  # masked: the link may be forwarded
    assert f'href="/preferences/{token}">get the monthly round-up instead' in shown.text
    done = web.client.post(path, data={"List-Unsubscribe": "One-Click", "via": "page"})
    assert done.status_code == 200 and "You're unsubscribed" in done.text
    assert _status(web, "ada.lovelace@example.com") == "unsubscribed"
    assert f'action="/unsubscribe/{token}/undo"' in done.text
    # The preferences page of an unsubscribed reader says so, once, and offers the undo.
    prefs = web.client.get(f"/preferences/{token}")
    assert prefs.status_code == 410 and "You're not subscribed" in prefs.text
    assert "does not work" not in prefs.text and "Nothing was changed" not in prefs.text
    assert ".." not in prefs.text and f"/unsubscribe/{token}/undo" in prefs.text
    undone = web.client.post(f"/unsubscribe/{token}/undo")
    assert undone.status_code == 200 and "You're subscribed again" in undone.text
    assert _status(web, "ada.lovelace@example.com") == "active"
    with web.engine.connect() as conn:
        details = conn.execute(select(C.c.detail).order_by(C.c.id)).scalars().all()
    assert details[-1] == "unsubscribe undone with its link"
    # Undo twice changes nothing more; a bounced address is not brought back.
    assert web.client.post(f"/unsubscribe/{token}/undo").status_code == 200
    with session_scope(web.engine) as session:
        session.execute(S.update().values(status="bounced"))
    refused = web.client.post(f"/unsubscribe/{token}/undo")
    assert refused.status_code == 409 and _status(web, "ada.lovelace@example.com") == "bounced"
    assert web.client.post("/unsubscribe/forged-token/undo").status_code == 400


def test_mask_address() -> None:
    assert mask_address("ada.lovelace@example.com") == "a•••e@example.com"
    assert mask_address("al@example.com") == "a•••@example.com"
    assert mask_address("nobody") == "•••"


def test_time_zone_picker_lists_canonical_zones_by_region(
    settings: Settings, sqlite_web: WebApp, tmp_path: Path
) -> None:
    assert "Europe/Amsterdam" in ZONES and "America/New_York" in ZONES
    for alias in ("US/Eastern", "Asia/Calcutta", "Europe/Kiev", "Etc/GMT+5", "GB"):
        assert alias not in ZONES
    assert len(ZONES) < 450
    regions = [region for region, _ in ZONE_GROUPS]
    assert regions == sorted(regions) and "Europe" in regions and "Etc" not in regions
    web = sqlite_web
    _confirmed(web, "ada@example.com")
    published_samples(web.engine, tmp_path, now=utcnow())
    token = _unsubscribe_path(web, "ada@example.com").rsplit("/", 1)[1]
    page = web.client.get(f"/preferences/{token}").text
    assert '<optgroup label="Europe">' in page
    assert '<option value="America/Argentina/Buenos_Aires">Argentina / Buenos Aires</option>' in (
        page
    )
    assert page.count("<option value=") == len(ZONES) + 1  # and the list's own zone
    assert 'src="/static/timezone.js"' in page  # preselects the browser's zone
    # A zone stored earlier under an alias stays selected rather than vanishing.
    saved = web.client.post(f"/preferences/{token}", data={"timezone": "US/Eastern"})
    assert '<option value="US/Eastern" selected>' in saved.text


def test_the_feed_reads_as_a_page_in_a_browser_and_as_atom_in_a_reader(
    sqlite_web: WebApp, tmp_path: Path
) -> None:
    web = sqlite_web
    published_samples(web.engine, tmp_path, now=utcnow())
    weekly_job(web.settings, engine=web.engine, transport=MemoryTransport())
    for accept in ("application/atom+xml", "application/atom+xml,text/html;q=0.5", "*/*", ""):
        reader = web.client.get("/archive/feed.atom", headers={"Accept": accept})
        assert reader.headers["content-type"].startswith("application/atom+xml"), accept
        assert reader.text.startswith("<?xml")
    # Asked again once the feed is cached (answered before routing): still the page.
    browser = web.client.get(
        "/archive/feed.atom",
        headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
    )
    assert browser.headers["content-type"].startswith("text/html")
    assert "copy this address into your feed reader" in browser.text
    assert f"{web.settings.base_url}/archive/feed.atom" in browser.text
    assert 'href="/archive/1"' in browser.text and browser.headers["vary"] == "Accept"
