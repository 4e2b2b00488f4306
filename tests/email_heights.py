"""The demo digest's height in Chromium at 375 and 600 px, and its first screen as
screenshots (light and dark): how long the email is to scroll, and what a reader sees
before scrolling.

    .venv/bin/python tests/email_heights.py                 # prints the heights
    .venv/bin/python tests/email_heights.py --shots after   # + docs/screenshots/email-after-*.png

The demo issue is the one ``tests/email_screenshots.py`` draws: the seven sample
comparisons, five full cards and two links, as the reader Ada receives it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from email_screenshots import OUT, pages
from email_support import CHROMIUM, CHROMIUM_ARGS, REPO
from playwright.sync_api import sync_playwright

#: The first screen: a phone shows about 700 px of a message below the mail app's bars.
FIRST_SCREEN = {375: 700, 600: 800}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", help="also write docs/screenshots/email-SHOTS-*.png")
    args = parser.parse_args()
    html = pages()["digest"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for width, height in FIRST_SCREEN.items():
            for scheme in ("light", "dark"):
                page = browser.new_page(
                    viewport={"width": width, "height": height}, color_scheme=scheme
                )
                page.route("http*://**/*", lambda route: route.abort())
                page.set_content(html, wait_until="load")
                if scheme == "light":
                    full = page.evaluate("document.documentElement.scrollHeight")
                    print(f"width {width}px: {full}px tall")
                if args.shots:
                    OUT.mkdir(parents=True, exist_ok=True)
                    path = OUT / f"email-{args.shots}-{width}-{scheme}.png"
                    page.screenshot(path=str(path))
                    print(f"  {path.relative_to(REPO)}")
                page.close()
        browser.close()


if __name__ == "__main__":
    main()
