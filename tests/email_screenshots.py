"""Screenshots of the demo digest, the confirmation email and the digest's page in the
web archive, in headless Chromium, at
phone (375 px) and desktop (600 px) widths, light and dark: docs/screenshots/*.png.

    .venv/bin/python tests/email_screenshots.py            # rewrites docs/screenshots/
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: F401  (first: email_support and the console rig import each other through it)
from email_support import CHROMIUM, CHROMIUM_ARGS, REPO, comparisons, email_settings_in, issue
from playwright.sync_api import sync_playwright
from store_support import WEEK

from digest.core.recipient import Recipient
from digest.issue.freeze import freeze_issue
from digest.mail.message import IssueMessage
from digest.notices.subscribers import ConfirmationMessage
from digest.store.engine import make_engine, migrate, session_scope
from digest.web.issue_page import web_page

OUT = REPO / "docs" / "screenshots"
READER = Recipient(7, "ada@example.com", "Ada Lovelace")


def pages() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = email_settings_in(Path(tmp))
        engine = make_engine(settings.database_url)
        migrate(engine)
        rendered = issue(comparisons(engine, settings, Path(tmp), 7), settings, settings.full_cards)
        with session_scope(engine) as session:
            frozen = freeze_issue(session, WEEK, settings)
            assert frozen is not None
            archive = web_page(session, frozen, settings)
        engine.dispose()
    message = IssueMessage(
        issue_id=1,
        week=WEEK,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        settings=settings,
    )
    confirm = ConfirmationMessage(settings, READER, f"{settings.base_url}/confirm/{'Q' * 50}")
    return {"digest": message.html_for(READER), "confirm": confirm.html, "archive": archive}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for name, html in pages().items():
            for width in (375, 600):
                for scheme in ("light", "dark"):
                    page = browser.new_page(
                        viewport={"width": width, "height": 800}, color_scheme=scheme
                    )
                    page.set_content(html, wait_until="load")
                    path = OUT / f"{name}-{width}-{scheme}.png"
                    page.screenshot(path=str(path), full_page=True)
                    page.close()
                    print(path.relative_to(REPO))
        browser.close()


if __name__ == "__main__":
    main()
