"""An editor imports a comparison from the console in headless Chromium against a real
``digest serve``: upload, preview (nothing written yet), confirm, and it is listed with
who brought it in; axe-core finds nothing serious on the pages.

``python tests/test_console_comparisons_browser.py [OUT_DIR]`` takes the README's
screenshots of the same walk (docs/screenshots/console-comparisons-*.png).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: F401  (run as a script: conftest first, as pytest loads them)
from console_rig import (
    EDITOR,
    Rig,
    axe_source,
    axe_violations,
    browser,
    console_rig,
    log_in,
)
from servers import recording_smtp
from sqlmodel import Session, select

from digest.core.clock import utcnow
from digest.store.engine import make_engine
from digest.store.models import Comparison

pytestmark = pytest.mark.slow

TITLE = "Quillpad vs Inkwell"
SLUG = "quillpad-vs-inkwell"


def comparison() -> dict[str, Any]:
    """A comparison of our own making (never the seeds' sentences)."""
    quotes = {
        "dx": ("One keystroke from idea to note.", "Markdown in, markdown out, no lock-in."),
        "competition": ("Crowded field; sync is its edge.", "Obsidian owns this buyer already."),
        "thesis": ("Notes become the agent's memory.", "Plain files outlive every app."),
        "business": ("Teams pay for shared spaces.", "Hard to charge for a text editor."),
    }
    tools = []
    for side, (name, tagline) in enumerate(
        (("Quillpad", "Notes that file themselves"), ("Inkwell", "A writing desk for Markdown"))
    ):
        tools.append(
            {
                "name": name,
                "tagline": tagline,
                "category": "Productivity",
                "description": f"{name} keeps notes and drafts in one place.",
                "panel_ship_pct": 75 if side == 0 else 50,
                "community_pct": None,
                "entry": "Free",
                "reviews": [
                    {"lens": lens, "quote": pair[side], "verdict": None}
                    for lens, pair in quotes.items()
                ],
            }
        )
    return {
        "title": TITLE,
        "standfirst": "Two note tools, one verdict.",
        "published_at": utcnow().replace(microsecond=0).isoformat(),
        "tools": tools,
    }


def walk(page: Any, base: str, upload: Path, shots: Path | None = None) -> None:
    """Comparisons → Import → upload → Preview → Import: the editor's way."""
    from playwright.sync_api import expect

    page.get_by_role("link", name="Comparisons", exact=True).click()
    page.wait_for_url(f"{base}/console/comparisons")
    page.get_by_role("link", name="Import comparisons").click()
    page.wait_for_url(f"{base}/console/comparisons/import")
    page.get_by_label("A file (.json or .txt)").set_input_files(str(upload))
    page.get_by_role("button", name="Preview the import").click()
    plan = page.locator("#plan")
    expect(plan).to_contain_text(TITLE)
    expect(plan.locator("tr", has_text=TITLE)).to_contain_text("new")
    if shots is not None:
        page.screenshot(path=str(shots / "console-comparisons-import.png"), full_page=True)
    page.get_by_role("button", name=re.compile(r"^Import 1 comparison")).click()
    page.wait_for_url(f"{base}/console/comparisons?done=imported")
    row = page.locator("tr", has_text=TITLE)
    expect(row).to_contain_text(f"console:{EDITOR}")
    expect(row).to_contain_text("not featured yet")
    if shots is not None:
        page.screenshot(path=str(shots / "console-comparisons.png"), full_page=True)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with recording_smtp() as smtp, console_rig(tmp_path, smtp) as running:
        yield running


def test_an_editor_imports_a_comparison_from_the_console(rig: Rig, chrome: Any) -> None:
    upload = rig.tmp / "quillpad.json"
    upload.write_text(json.dumps(comparison()), encoding="utf-8")
    engine = make_engine(rig.settings.database_url)
    context = chrome.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, rig.base, EDITOR)

    seen: list[int] = []

    def count_on_preview(response: Any) -> None:
        # Whatever the preview page shows, the store has not got the comparison yet.
        if (
            response.url.endswith("/console/comparisons/import")
            and response.request.method == "POST"
        ):
            with Session(engine) as session:
                seen.append(
                    len(session.exec(select(Comparison).where(Comparison.slug == SLUG)).all())
                )

    page.on("response", count_on_preview)
    walk(page, rig.base, upload)
    assert seen == [0]
    with Session(engine) as session:
        stored = session.exec(select(Comparison).where(Comparison.slug == SLUG)).one()
        assert stored.imported_by == f"console:{EDITOR}"
    engine.dispose()
    context.close()


def test_the_comparison_pages_pass_axe(rig: Rig, chrome: Any) -> None:
    source = axe_source()
    context = chrome.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, rig.base, EDITOR)
    problems = {}
    for path in ("/console/comparisons", "/console/comparisons/import"):
        page.goto(f"{rig.base}{path}")
        problems[path] = axe_violations(page, source)
    page.get_by_label("… or paste it here").fill(json.dumps(comparison()))
    page.get_by_role("button", name="Preview the import").click()
    page.locator("#plan").wait_for()
    problems["the preview"] = axe_violations(page, source)
    assert {k: v for k, v in problems.items() if v} == {}
    context.close()


def screenshots(out: Path) -> None:
    """The README's screenshots of the walk above."""
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        recording_smtp() as smtp,
        console_rig(Path(tmp), smtp) as running,
        browser() as chrome,
    ):
        upload = Path(tmp) / "quillpad.json"
        upload.write_text(json.dumps(comparison()), encoding="utf-8")
        page = chrome.new_page(viewport={"width": 1100, "height": 800})
        log_in(page, running.base, EDITOR)
        walk(page, running.base, upload, shots=out)


if __name__ == "__main__":
    screenshots(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
