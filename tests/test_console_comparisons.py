"""The console's Comparisons pages: the list, and the import with its preview step
(docs/ingest.md). The browser's walk through it is in test_console_comparisons_browser."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from console_support import EDITOR, OPERATOR, Console, make_console
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from store_support import PAGES_DIR, dump_store, sample_items

from digest.core.settings import Settings
from digest.issue.editing import Edit, edit_issue
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope
from digest.store.models import Comparison, Issue, IssueEvent

pytestmark = pytest.mark.clock

PAGE = PAGES_DIR / "orbit-cache-vs-relaycache.txt"
PAGE_SLUG = "orbit-cache-vs-relaycache-edge"


def _hidden(page: Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert found, page.text[:3000]
    return html.unescape(found.group(1))


def _preview(
    client: TestClient, csrf: str, text: str = "", upload: bytes | None = None
) -> Response:
    files = {"file": ("comparisons.json", upload, "application/json")} if upload else None
    return client.post(
        "/console/comparisons/import", data={"csrf": csrf, "text": text}, files=files
    )


def _confirm(client: TestClient, csrf: str, preview: Response) -> Response:
    return client.post(
        "/console/comparisons/import/confirm",
        data={
            "csrf": csrf,
            "payload": _hidden(preview, "payload"),
            "plan": _hidden(preview, "plan"),
        },
        follow_redirects=False,
    )


def _by_slug(console: Console) -> dict[str, Comparison]:
    with Session(console.engine) as session:
        return {c.slug: c for c in session.exec(select(Comparison)).all()}


def test_a_pasted_page_is_previewed_then_written_on_confirm(console: Console) -> None:
    client, csrf = console.login(EDITOR)
    assert 'href="/console/comparisons"' in client.get("/console").text  # in the menu
    form = client.get("/console/comparisons/import")
    assert form.status_code == 200 and 'name="csrf"' in form.text

    before = dump_store(console.engine)
    preview = _preview(client, csrf, text=PAGE.read_text(encoding="utf-8"))
    assert preview.status_code == 200, preview.text
    assert "Orbit Cache vs RelayCache (Edge)" in preview.text
    assert '<span class="state ok">new</span>' in preview.text
    assert "Import 1 comparison (1 new, 0 updated)" in preview.text
    assert dump_store(console.engine) == before  # the preview wrote nothing

    done = _confirm(client, csrf, preview)
    assert done.status_code == 303
    assert done.headers["location"] == "/console/comparisons?done=imported"
    stored = _by_slug(console)[PAGE_SLUG]
    assert stored.imported_by == f"console:{EDITOR}"
    listing = client.get("/console/comparisons?done=imported")
    assert "Imported." in listing.text
    row = re.search(
        r"<tr>\s*<th scope=\"row\"[^>]*>Orbit Cache vs RelayCache \(Edge\).*?</tr>",
        listing.text,
        re.S,
    )
    assert row is not None
    assert f"console:{EDITOR}" in row.group(0) and ">not featured yet</span>" in row.group(0)

    # The same page again: nothing to do, no button.
    again = _preview(client, csrf, text=PAGE.read_text(encoding="utf-8"))
    assert "unchanged" in again.text and "Nothing to import" in again.text
    assert "/import/confirm" not in again.text


def test_an_uploaded_json_update_names_the_fields_that_change(console: Console) -> None:
    client, csrf = console.login(OPERATOR)
    item = sample_items()[0]
    stored = _by_slug(console)[item["slug"]]
    item["published_at"] = stored.published_at.isoformat()
    item["standfirst"] = "A corrected standfirst."
    item["tools"][1]["entry"] = "$9/mo"
    preview = _preview(client, csrf, upload=json.dumps([item]).encode())
    assert preview.status_code == 200, preview.text
    assert "comparisons.json" in preview.text
    assert "changes: standfirst, tool B (" in preview.text
    assert _by_slug(console)[item["slug"]].standfirst != "A corrected standfirst."
    assert _confirm(client, csrf, preview).status_code == 303
    assert _by_slug(console)[item["slug"]].standfirst == "A corrected standfirst."


def test_bad_input_lists_every_problem_as_the_cli_does_and_writes_nothing(
    console: Console, tmp_path: Path
) -> None:
    client, csrf = console.login(EDITOR)
    before = dump_store(console.engine)
    truncated = "\n".join(PAGE.read_text(encoding="utf-8").splitlines()[:12])
    answer = _preview(client, csrf, text=truncated)
    assert answer.status_code == 422
    assert "Nothing was imported" in answer.text
    assert "pasted text:" in answer.text and "page ends early" in answer.text
    assert truncated.splitlines()[1] in answer.text  # the text stays in the box to fix

    bad = sample_items()[:2]
    bad[1]["tools"] = bad[1]["tools"][:1]
    bad[0]["rating"] = 5
    answer = _preview(client, csrf, upload=json.dumps(bad).encode())
    assert answer.status_code == 422
    assert "comparisons.json[0]: field rating: unknown field" in answer.text
    assert "comparisons.json[1]: field tools: Value error, needs exactly two tools" in answer.text
    assert dump_store(console.engine) == before

    assert _preview(client, csrf).status_code == 422  # neither a file nor text


def test_the_forms_need_a_login_and_the_session_csrf_token(console: Console) -> None:
    anonymous = console.client()
    page = anonymous.get("/console/comparisons/import", follow_redirects=False)
    assert page.status_code == 303 and "/console/login" in page.headers["location"]
    client, csrf = console.login(EDITOR)
    before = dump_store(console.engine)
    forged = client.post(
        "/console/comparisons/import/confirm",
        data={"csrf": "not-the-token", "payload": json.dumps(sample_items()[:1]), "plan": "x"},
    )
    assert forged.status_code == 403
    elsewhere = client.post(
        "/console/comparisons/import",
        data={"csrf": csrf, "text": PAGE.read_text(encoding="utf-8")},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    assert dump_store(console.engine) == before


def test_a_comparison_that_went_out_is_refused_and_blocks_the_import(console: Console) -> None:
    client, csrf = console.login(EDITOR)
    result = weekly_job(console.settings, engine=console.engine, transport=console.outbox)
    assert result.report is not None
    item = sample_items()[0]
    item["standfirst"] = "Changed after it was sent."
    preview = _preview(client, csrf, text=json.dumps([item, json.loads(PAGE_JSON)]))
    assert preview.status_code == 200
    assert "refused" in preview.text and "went out in issue #1" in preview.text
    assert "/import/confirm" not in preview.text

    # A confirm forged from another preview's payload is refused as well.
    before = dump_store(console.engine)
    forced = client.post(
        "/console/comparisons/import/confirm",
        data={"csrf": csrf, "payload": json.dumps([item]), "plan": "0" * 32},
    )
    assert forced.status_code == 409 and "went out in issue #1" in forced.text
    assert dump_store(console.engine) == before


def test_the_confirm_writes_nothing_when_the_store_moved_on(console: Console) -> None:
    client, csrf = console.login(EDITOR)
    item = sample_items()[1]
    item["standfirst"] = "First correction."
    preview = _preview(client, csrf, text=json.dumps(item))
    assert "update" in preview.text
    other = dict(item, standfirst="Someone else's correction, in between.")
    second = _preview(client, csrf, text=json.dumps(other))
    assert _confirm(client, csrf, second).status_code == 303

    stale = _confirm(client, csrf, preview)
    assert stale.status_code == 409 and "changed since the preview" in stale.text
    assert _by_slug(console)[item["slug"]].standfirst == "Someone else's correction, in between."


def test_an_update_re_compiles_the_draft_that_features_it(console: Console) -> None:
    client, csrf = console.login(EDITOR)
    drafted = client.post("/console/draft", data={"csrf": csrf}, follow_redirects=False)
    assert drafted.status_code == 303, drafted.text
    with session_scope(console.engine) as session:  # an editor wants no intro
        issue = session.exec(select(Issue)).one()
        edit = Edit(intro="", note="Our *Zephyrine* pick this week.")
        edit_issue(session, issue, console.settings, edit, actor=EDITOR)
    with Session(console.engine) as session:
        issue = session.exec(select(Issue)).one()
        old_html = issue.html
    item = sample_items()[0]
    item["title"] = item["title"].replace(" vs ", " versus ")
    preview = _preview(client, csrf, text=json.dumps(item))
    assert "draft #1 is re-compiled" in preview.text
    assert _confirm(client, csrf, preview).status_code == 303
    with Session(console.engine) as session:
        issue = session.exec(select(Issue)).one()
        assert issue.html != old_html and item["title"] in issue.html
        assert "Zephyrine" in issue.html and "Zephyrine" in issue.text  # the note stays
        event = session.exec(select(IssueEvent).order_by(col(IssueEvent.id).desc())).first()
        assert event is not None and event.action == "recompiled"
        assert event.actor == f"console:{EDITOR}"
        recompiled, subject = issue.html, issue.subject
    # The re-compile renders what an editor's own edit renders: edit the subject away
    # and back, and the issue is byte for byte what the import left.
    for words in ("A subject for a moment", subject):
        with session_scope(console.engine) as session:
            draft = session.exec(select(Issue)).one()
            assert edit_issue(session, draft, console.settings, Edit(subject=words), actor="t")
    with Session(console.engine) as session:
        assert session.exec(select(Issue)).one().html == recompiled


PAGE_JSON = json.dumps(
    {
        "title": "Quillpad vs Inkwell",
        "standfirst": "Two note tools, one verdict.",
        "tools": [
            {
                "name": name,
                "reviews": [
                    {"lens": lens, "quote": f"{name} through {lens}."}
                    for lens in ("dx", "competition", "thesis", "business")
                ],
            }
            for name in ("Quillpad", "Inkwell")
        ],
    }
)


def _seed_pages() -> list[Path]:
    from conftest import SEEDS

    return sorted(SEEDS.glob("*.txt")) if SEEDS.is_dir() else []


@pytest.mark.skipif(not _seed_pages(), reason="../shared/seeds is not here")
def test_saved_review_site_pages_upload_as_the_cli_reads_them(console: Console) -> None:
    client, csrf = console.login(EDITOR)
    for path in _seed_pages():
        page = client.post(
            "/console/comparisons/import",
            data={"csrf": csrf},
            files={"file": (path.name, path.read_bytes(), "text/plain")},
        )
        assert page.status_code == 200, (path.name, page.text[:2000])
        title = path.read_text(encoding="utf-8").splitlines()[1].strip()
        assert html.escape(title, quote=False) in page.text or title in html.unescape(page.text)
        assert '<span class="state ok">new</span>' in page.text
        assert _confirm(client, csrf, page).status_code == 303


def test_an_import_over_the_ingest_limit_gets_413(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    small = make_console(settings, engine, tmp_path, ingest_max_bytes=64 * 1024)
    client, csrf = small.login(EDITOR)
    before = dump_store(engine)
    items = [dict(sample_items()[0], slug=f"copy-{i}") for i in range(40)]
    body = json.dumps(items).encode()
    assert len(body) > 64 * 1024
    answer = _preview(client, csrf, upload=body)
    assert answer.status_code == 413
    assert "65536" in answer.text
    assert dump_store(engine) == before
