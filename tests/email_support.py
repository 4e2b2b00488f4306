"""Email checks with real tools: headless Chromium (Playwright, Debian's /usr/bin/chromium),
the official Node ``mjml`` validator and axe-core (npm, installed outside the repository
by tests/node/install.sh), and Debian's SpamAssassin. Each helper skips the test with
the reason when its tool is absent.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_SECRET
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from store_support import WEEK, dated, sample_items, write_json

from digest.core.resources import TEMPLATES_DIR
from digest.core.settings import Settings
from digest.issue.render import RenderedIssue, render_issue
from digest.store.importer import import_comparisons
from digest.store.models import Comparison

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where tests/node/install.sh puts the npm packages (outside the repository).
NODE_HOME = Path(
    os.environ.get(
        "DIGEST_TEST_NODE_HOME",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "weekly-verdict-digest"
        / "node",
    )
)
NODE_MODULES = NODE_HOME / "node_modules"


# ---------------------------------------------------------------- content


def email_settings_in(folder: Path) -> Settings:
    """Settings as a real list would have them (https links, a real-looking address)."""
    return Settings(
        database_url=f"sqlite:///{folder / 'digest.db'}",
        secret_key=TEST_SECRET,
        base_url="https://digest.example.org",
        site_url="https://verdicts.example.org",
        from_address="Weekly AI Tool Verdicts <digest@example.org>",
        postal_address="Verdicts Ltd, 9 Quay Road, Cork T12 X8Y2, Ireland",
        timezone="UTC",
    )


def comparisons(engine: Engine, settings: Settings, tmp_path: Path, count: int) -> list[Comparison]:
    """``count`` comparisons in the store (the samples, then copies with new titles)."""
    items = sample_items()
    while len(items) < count:
        extra = copy.deepcopy(items[len(items) % 7])
        extra["slug"] = f"{extra['slug']}-{len(items)}"
        extra["title"] = f"{extra['title']} (round {len(items) // 7 + 1})"
        items.append(extra)
    source = write_json(tmp_path / f"email-{count}.json", dated(items[:count], settings))
    import_comparisons(engine, [source])
    with Session(engine) as session:
        rows = session.exec(select(Comparison).order_by(col(Comparison.published_at).desc())).all()
        for comparison in rows:  # load relationships before the session closes
            for tool in comparison.tools:
                _ = tool.reviews
        return list(rows)


def issue(found: list[Comparison], settings: Settings, full: int = 5) -> RenderedIssue:
    return render_issue(week=WEEK, full=found[:full], links=found[full:], settings=settings)


def expand_includes(source: str) -> str:
    """Inline ``mj-include`` partials (what MRML does through its include loader) so
    the validator sees the whole document, head partial included."""
    return re.sub(
        r'<mj-include path="([^"]+)" */>',
        lambda m: (TEMPLATES_DIR / "email" / m.group(1)).read_text(encoding="utf-8"),
        source,
    )


# ---------------------------------------------------------------- node tools


def node_tool(package: str) -> Path:
    """The installed npm package's folder; skips with the reason when missing."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (apt-get install nodejs npm)")
    folder = NODE_MODULES / package
    if not (folder / "package.json").exists():
        pytest.skip(
            f"npm package {package} is not installed in {NODE_HOME}: run tests/node/install.sh"
        )
    return folder


_VALIDATE = """
const mjml = require(process.argv[1]);
const source = require('fs').readFileSync(0, 'utf8');
const report = (errors) => console.log(JSON.stringify(errors || []));
Promise.resolve()
  .then(() => mjml(source, { validationLevel: 'strict' }))
  .then((r) => report(r.errors))
  .catch((e) => report(e.errors && e.errors.length ? e.errors : [{ message: String(e.message) }]));
"""


def mjml_errors(source: str) -> list[str]:
    """The official validator's complaints about ``source`` in strict mode."""
    package = node_tool("mjml")
    run = subprocess.run(
        ["node", "-e", _VALIDATE, str(package)],
        input=expand_includes(source),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [e.get("formattedMessage") or e.get("message", "") for e in json.loads(run.stdout)]


# ---------------------------------------------------------------- chromium


class Chromium:
    """One headless Chromium driven from a thread of its own: Playwright's sync API
    refuses to run where an asyncio loop is running, which other tests' servers may
    leave behind in the main thread."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="chromium")

        def start() -> Any:
            self._playwright = sync_playwright().start()
            return self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )

        self._browser = self._pool.submit(start).result()

    def run(self, html: str, width: int, scheme: str, work: Callable[[Any], Any]) -> Any:
        """``work(page)`` on a page showing ``html`` (no network: remote images fail)."""

        def job() -> Any:
            page = self._browser.new_page(
                viewport={"width": width, "height": 900}, color_scheme=scheme
            )
            try:
                page.route("http*://**/*", lambda route: route.abort())
                page.set_content(html, wait_until="load")
                return work(page)
            finally:
                page.close()

        return self._pool.submit(job).result()

    def close(self) -> None:
        def stop() -> None:
            self._browser.close()
            self._playwright.stop()

        self._pool.submit(stop).result()
        self._pool.shutdown()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """Headless Chromium for the session; skips when Playwright or Chromium is absent."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install '.[dev]')")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    browser = Chromium()
    try:
        yield browser
    finally:
        browser.close()


#: Contrast of every visible text run against the background painted behind it.
CONTRAST_JS = (REPO / "tests" / "node" / "contrast.js").read_text(encoding="utf-8")


def luminance(rgb: list[float]) -> float:
    def channel(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])


def axe_violations(browser: Chromium, html: str, width: int = 600, scheme: str = "light") -> Any:
    """axe-core's serious and critical violations on ``html``."""
    source = (node_tool("axe-core") / "axe.min.js").read_text(encoding="utf-8")

    def audit(page: Any) -> Any:
        page.add_script_tag(content=source)
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        return [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]

    return browser.run(html, width, scheme, audit)


# ---------------------------------------------------------------- spamassassin


def spam_score(raw: bytes) -> tuple[float, str]:
    """SpamAssassin's score with local tests only (no network), and its report."""
    binary = shutil.which("spamassassin")
    if binary is None:
        pytest.skip("SpamAssassin is not installed (apt-get install spamassassin)")
    run = subprocess.run(
        [binary, "-t", "-L"], input=raw, capture_output=True, timeout=120, check=False
    )
    out = run.stdout.decode("utf-8", "replace")
    found = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", out, re.MULTILINE)
    assert found is not None, out[-2000:] + run.stderr.decode("utf-8", "replace")[-2000:]
    report = out.split("Content analysis details:", 1)[-1][:3000]
    return float(found.group(1)), report
