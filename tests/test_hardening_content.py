"""Issue 22 item 5: one comparison can no longer stop the newsletter.

Import refuses text that MJML, PostgreSQL or an XML feed cannot carry (every
importer goes through digest/store/schema.py); a comparison stored before that
check is skipped by name when an issue is frozen (CLI send, draft, the console's
Freeze), and the archive page and the Atom feed stay well-formed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from cli_support import DigestCLI
from console_support import Console, make_console
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from store_support import WEEK, dated, dump_store, sample_items, seed_store, write_json
from subscriber_support import Store, make_web

from digest.core.settings import Settings
from digest.exceptions import ImportValidationError
from digest.issue.freeze import find_issue, issue_rows
from digest.issue.history import history
from digest.issue.screen import render_screened
from digest.store.importer import import_comparisons
from digest.store.models import Comparison, Issue, IssueState

pytestmark = pytest.mark.clock

#: (where in the canonical JSON, what is put in or set, what the problem must say)
POISON = [
    ("title", "\uffff", "noncharacter (U+FFFF)"),
    ("title", "\ufffe", "noncharacter (U+FFFE)"),
    ("standfirst", "\x9f", "C1 control"),
    ("url", "https://example.com/a\x01b", "control character (U+0001)"),
    ("url", "https://example.com/\x00", "NUL"),
    ("tools.0.name", "\x85", "C1 control"),
    ("tools.0.description", "\ufdd0", "noncharacter (U+FDD0)"),
    ("tools.1.reviews.0.quote", "\x00", "NUL"),
    ("tools.1.entry", "\U0001ffff", "noncharacter (U+1FFFF)"),
]


def _poisoned(settings: Settings, where: str, bad: str) -> list[dict[str, Any]]:
    items = dated(sample_items()[:2], settings)
    *path, last = where.split(".")
    node: Any = items[0]
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    # In the middle: white space at either end (U+0085 is) is stripped on import.
    node[key] = bad if where == "url" else f"{node[key][:3]}{bad}{node[key][3:]}"
    return items


@pytest.mark.parametrize(("where", "bad", "said"), POISON)
def test_import_refuses_text_no_renderer_can_carry(
    store: Store, tmp_path: Path, where: str, bad: str, said: str
) -> None:
    source = write_json(tmp_path / "c.json", _poisoned(store.settings, where, bad))
    before = dump_store(store.engine)
    with pytest.raises(ImportValidationError) as refused:
        import_comparisons(store.engine, [source])
    [problem] = refused.value.problems
    assert said in problem and where.split(".")[-1] in problem, problem
    assert dump_store(store.engine) == before  # all or nothing, on PostgreSQL too


def test_the_cli_import_names_the_field_and_the_character(
    digest_cli: DigestCLI, settings: Settings, tmp_path: Path
) -> None:
    source = write_json(tmp_path / "c.json", _poisoned(settings, "title", "\uffff"))
    result = digest_cli("import", source)
    assert result.exit_code == 1
    assert "field title: Value error, contains a Unicode noncharacter (U+FFFF)" in result.output
    assert "Traceback" not in result.output
    page = (Path(__file__).parent / "data" / "pages").glob("*.txt")
    first = next(iter(sorted(page)))
    lines = first.read_text(encoding="utf-8").splitlines()
    lines[1] += "\ufffe"
    bad_page = tmp_path / "page.txt"
    bad_page.write_text("\n".join(lines), encoding="utf-8")
    result = digest_cli("import", bad_page)
    assert result.exit_code == 1 and "noncharacter (U+FFFE)" in result.output


def _poison_stored(engine: Engine, slug: str) -> None:
    """A row written before import checked its text (or by hand)."""
    with engine.begin() as conn:
        conn.execute(
            update(Comparison)
            .where(Comparison.slug == slug)  # type: ignore[arg-type]
            .values(title=Comparison.title + "\uffff")  # type: ignore[operator]
        )


def test_send_skips_a_stored_comparison_that_cannot_be_rendered(
    digest_cli: DigestCLI,
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_store(engine, settings, tmp_path)
    newest = dated(sample_items(), settings)[-1]["slug"]
    _poison_stored(engine, newest)
    with caplog.at_level(logging.WARNING):
        digest_cli.ok("send", "--week", WEEK, "--yes")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"comparison {newest!r} skipped: title contains a Unicode noncharacter" in said
    with Session(engine) as session:
        issue = find_issue(session, week=WEEK)
        assert issue is not None and issue.state == IssueState.SENT
        slugs = [c.slug for c, _full in issue_rows(session, issue)]
        assert newest not in slugs and len(slugs) == len(sample_items()) - 1
        [frozen] = [e for e in history(session, issue.id or 0) if e["action"] == "frozen"]
        assert any(newest in line for line in frozen["skipped"])


def test_draft_names_the_comparison_when_it_is_the_only_new_one(
    digest_cli: DigestCLI, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    items = dated(sample_items()[:1], settings)
    import_comparisons(engine, [write_json(tmp_path / "one.json", items)])
    _poison_stored(engine, items[0]["slug"])
    result = digest_cli("send", "--week", WEEK, "--yes")
    assert result.exit_code == 0, result.output
    assert f"comparison {items[0]['slug']!r} skipped" in result.output
    with Session(engine) as session:
        assert session.exec(select(Issue)).first() is None


def test_the_console_freeze_skips_it_too(console: Console) -> None:
    with Session(console.engine) as session:
        slug = session.exec(select(Comparison.slug).order_by(Comparison.id)).first()
    assert slug is not None
    _poison_stored(console.engine, slug)
    client, csrf = console.login("ed@example.com")
    answer = client.post("/console/draft", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["location"])
    assert page.status_code == 200 and "skipped" in page.text and slug in page.text


def test_a_render_failure_names_the_comparison_and_the_rest_renders(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    # Past the text checks (say, a cause nobody foresaw): MJML itself fails on it.
    seed_store(engine, settings, tmp_path)
    with Session(engine) as session:
        good, bad = session.exec(select(Comparison).order_by(Comparison.id).limit(2)).all()
        bad.title += "\uffff"
        done = render_screened(week=WEEK, number=1, full=[good, bad], links=[], settings=settings)
    assert done.rendered is not None and [c.slug for c in done.full] == [good.slug]
    [skipped] = done.skipped
    assert skipped.slug == bad.slug and "cannot be rendered" in str(skipped)
    assert "MJML" in str(skipped)


def test_archive_and_feed_stay_well_formed_with_an_older_bad_row(
    settings: Settings, engine: Engine, tmp_path: Path, digest_cli: DigestCLI
) -> None:
    seed_store(engine, settings, tmp_path)
    digest_cli.ok("send", "--week", WEEK, "--yes")
    # Rows frozen and sent before import checked text: a control character in a URL,
    # a noncharacter in a title, and a subject edited by hand.
    with engine.begin() as conn:
        conn.execute(text("UPDATE comparison SET url = 'https://example.com/a' || char(1)"))
        conn.execute(text("UPDATE issue SET subject = subject || char(2)"))
    web = make_web(settings, engine)
    page = web.client.get("/archive/1")
    assert page.status_code == 200
    feed = web.client.get("/archive/feed.atom")
    assert feed.status_code == 200
    ElementTree.fromstring(feed.content)  # noqa: S314 (our own feed): well-formed XML
    assert "\x01" not in feed.text and "\x02" not in feed.text


def test_an_issue_whose_every_comparison_is_bad_still_has_a_page(
    settings: Settings, engine: Engine, tmp_path: Path, digest_cli: DigestCLI
) -> None:
    seed_store(engine, settings, tmp_path)
    digest_cli.ok("send", "--week", WEEK, "--yes")
    with engine.begin() as conn:
        conn.execute(text("UPDATE comparison SET title = title || char(1)"))
    web = make_web(settings, engine)
    assert web.client.get("/archive/1").status_code == 200
    ElementTree.fromstring(web.client.get("/archive/feed.atom").content)  # noqa: S314


def test_the_ingest_api_and_the_console_import_refuse_it_too(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    token = "ingest-token-0123456789abcdef"
    console = make_console(settings, engine, tmp_path, ingest_tokens=SecretStr(f"site={token}"))
    before = dump_store(engine)["comparison"]
    body = _poisoned(settings, "title", "\uffff")
    api = TestClient(console.app).post(
        "/api/comparisons", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 422 and "noncharacter (U+FFFF)" in api.text
    client, csrf = console.login("ed@example.com")
    page = client.post(
        "/console/comparisons/import",
        data={"csrf": csrf, "text": json.dumps(body, ensure_ascii=False)},
    )
    assert "noncharacter (U+FFFF)" in page.text
    assert dump_store(engine)["comparison"] == before


def test_an_editors_words_are_held_to_the_same_checks(store: Store, tmp_path: Path) -> None:
    console = make_console(store.settings, store.engine, tmp_path)
    client, csrf = console.login("ed@example.com")
    drafted = client.post("/console/draft", data={"csrf": csrf}, follow_redirects=False)
    assert drafted.status_code == 303
    number = drafted.headers["location"].split("/")[3].split("?")[0]
    with Session(store.engine) as session:
        slugs = [c.slug for c, _f in issue_rows(session, find_issue(session, number=int(number)))]  # type: ignore[arg-type]
    rows = {
        "slug": slugs,
        "position": [str(i) for i in range(len(slugs))],
        "layout": ["full"] * len(slugs),
    }
    for field, bad, said in (
        ("subject", "Two tools \uffff", "the subject contains a Unicode noncharacter (U+FFFF)"),
        ("intro", "A note\x00 with a NUL", "the intro contains a NUL character"),
        ("preheader", "pre\x85header", "the preheader contains a C1 control"),
    ):
        form = {"csrf": csrf, "subject": "A subject", field: bad, **rows}
        answer = client.post(f"/console/issues/{number}/edit", data=form)
        assert answer.status_code == 409 and said in answer.text, (field, answer.status_code)
