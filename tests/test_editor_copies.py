"""Every copy previewed, every copy true: the variants a send will produce, each with
its readers' count, its own subject (the lead it carries), the editor's per-variant
words, and a preflight that catches words about a comparison a copy does not carry."""

from __future__ import annotations

import html
from email import message_from_bytes, policy

import pytest
from cli_support import DigestCLI
from console_support import EDITOR, Console
from readers_support import add_reader
from sqlmodel import select

from digest.issue.freeze import find_issue, issue_rows
from digest.issue.render import default_subject
from digest.jobs.schedule import prepare_draft
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope
from digest.store.models import Comparison

pytestmark = pytest.mark.clock  # freezing: the comparisons new since the last issue

SHEETS = "tessellate-vs-gridsage"  # the spreadsheet comparison (Data & Analytics)
WORDS = ["Productivity", "Writing"]  # a two-topic reader: Cadence Notes, Inkwell Studio
CADENCE, INKWELL = "cadence-notes-vs-murmur-minutes", "inkwell-studio-vs-paperkite"


def _draft(console: Console) -> list[str]:
    with session_scope(console.engine) as session:
        issue = prepare_draft(session, console.settings).issue
        assert issue is not None
        return [c.slug for c, _ in issue_rows(session, issue)]


def _draft_order(console: Console) -> list[str]:
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        return [c.slug for c, _ in issue_rows(session, issue)]


def _form(csrf: str, slugs: list[str], subject: str, **extra: object) -> dict[str, object]:
    return {
        "csrf": csrf,
        "subject": subject,
        "preheader": extra.pop("preheader", ""),
        "intro": extra.pop("intro", ""),
        "slug": slugs,
        "position": [str(i + 1) for i in range(len(slugs))],
        "layout": ["full"] * len(slugs),
        **extra,
    }


def _automatic(console: Console, slugs: list[str]) -> str:
    """The automatic subject of a copy carrying ``slugs``, in that order."""
    with session_scope(console.engine) as session:
        found = {c.slug: c for c in session.exec(select(Comparison)).all()}
        return default_subject([found[s] for s in slugs])


def _subjects(console: Console) -> dict[str, str]:
    out = {}
    for stored in console.outbox.outbox:
        msg = message_from_bytes(stored.raw, policy=policy.default)
        out[stored.recipient.email] = str(msg["Subject"])
    return out


def test_a_two_topic_reader_gets_a_subject_naming_their_own_lead(console: Console) -> None:
    """The bug: the editor moved the spreadsheet comparison to the top in the console
    and saved (the subject field as it was); a reader of two other topics received a
    subject naming a comparison their copy did not contain."""
    slugs = _draft(console)
    add_reader(console.engine, "words@example.com", WORDS)
    editor, csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1").text
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        shown_subject = issue.subject
    assert shown_subject in page
    order = [SHEETS] + [s for s in slugs if s != SHEETS]
    form = _form(csrf, slugs, shown_subject)
    form["position"] = [str(order.index(s)) for s in slugs]
    answer = editor.post("/console/issues/1/edit", data=form, follow_redirects=False)
    assert answer.status_code == 303
    result = weekly_job(console.settings, engine=console.engine, transport=console.outbox)
    assert result.report is not None and result.report.sent > 1
    subjects = _subjects(console)
    theirs = [s for s in order if s in (CADENCE, INKWELL)]
    assert subjects["words@example.com"] == _automatic(console, theirs)
    assert "Tessellate" not in subjects["words@example.com"]
    # Readers of every topic get the issue itself, now led by the spreadsheet comparison.
    everyone = {s for e, s in subjects.items() if e != "words@example.com"}
    assert everyone == {_automatic(console, order)} and "Tessellate" in everyone.pop()


def _copies_on_page(page: str) -> dict[str, str]:
    """Each copy's row on the issue page: ident → the row's text."""
    import re

    rows = re.findall(r'<tr data-copy="([0-9a-f]+)">(.*?)</tr>', page, re.S)
    return {ident: re.sub(r"<[^>]+>", " ", body) for ident, body in rows}


def test_every_copy_is_previewed_with_its_readers_two_side_by_side(console: Console) -> None:
    _draft(console)
    for n in range(3):
        add_reader(console.engine, f"words{n}@example.com", WORDS)
    add_reader(console.engine, "sheets@example.com", ["Data & Analytics"])
    add_reader(console.engine, "robots@example.com", ["Robotics"])
    editor, _csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1").text
    rows = _copies_on_page(page)
    assert len(rows) == 4  # the issue itself, two topic sets, and one that gets nothing
    words = next(r for r in rows.values() if "Weekly · Productivity, Writing" in r)
    slugs = _draft_order(console)
    subject = _automatic(console, [s for s in slugs if s in (CADENCE, INKWELL)])
    assert " 3 " in words and html.escape(subject, quote=False) in words
    sheets_ident = next(i for i, r in rows.items() if "Data &amp; Analytics" in r)
    assert "Tessellate" in rows[sheets_ident]
    robots = next(r for r in rows.values() if "Robotics" in r)
    assert "no email: nothing in your topics" in robots
    # Two previews side by side: by default the issue and the first other copy; any
    # two on request.
    assert page.count('<figure tabindex="0" data-copy=') == 2
    words_ident = next(i for i, r in rows.items() if "Productivity, Writing" in r)
    chosen = editor.get(f"/console/issues/1?a={words_ident}&b={sheets_ident}").text
    frames = [
        f"/console/issues/1/copies/{words_ident}/preview",
        f"/console/issues/1/copies/{sheets_ident}/preview",
    ]
    assert chosen.index(frames[0]) < chosen.index(frames[1])
    left = editor.get(frames[0])
    assert (
        left.status_code == 200
        and "frame-ancestors 'self'" in left.headers["content-security-policy"]
    )
    assert "Cadence Notes vs Murmur Minutes" in left.text and "Inkwell Studio" in left.text
    assert "Tessellate" not in left.text and "QuillCode" not in left.text
    right = editor.get(frames[1]).text
    assert "Tessellate vs GridSage" in right and "Cadence Notes" not in right
    assert editor.get("/console/issues/1/copies/000000000000/preview").status_code == 404


def test_preflight_warns_when_a_copy_names_what_it_does_not_carry(console: Console) -> None:
    _draft(console)
    add_reader(console.engine, "words@example.com", WORDS)
    editor, csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1").text
    assert "each names only what it carries" in page
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        subject = issue.subject
        slugs = [c.slug for c, _ in issue_rows(session, issue)]
    intro = "Tessellate and GridSage fight over your spreadsheets this week."
    answer = editor.post("/console/issues/1/edit", data=_form(csrf, slugs, subject, intro=intro))
    assert answer.status_code == 200
    page = answer.text
    assert "Weekly · Productivity, Writing (1 reader): the intro names Tessellate vs GridSage" in (
        page
    )
    # The editor gives that copy its own intro: the warning goes, the history says so,
    # and the reader gets those words.
    ident = next(i for i, r in _copies_on_page(page).items() if "Productivity, Writing" in r)
    own = "Two tools for notes and words this week."
    saved = editor.post(
        f"/console/issues/1/copies/{ident}/words",
        data={"csrf": csrf, "intro": own, "subject": ""},
    )
    assert saved.status_code == 200 and own in saved.text
    page = editor.get("/console/issues/1").text
    assert "the intro names" not in page and "copy words" in page
    assert own in editor.get(f"/console/issues/1/copies/{ident}/preview").text
    weekly_job(console.settings, engine=console.engine, transport=console.outbox)
    mine = next(m for m in console.outbox.outbox if m.recipient.email == "words@example.com")
    body = message_from_bytes(mine.raw, policy=policy.default).get_body(("plain",))
    assert body is not None and own in body.get_content()
    assert "Tessellate" not in body.get_content()


def test_status_json_lists_every_copy_with_its_subject(
    console: Console, digest_cli: DigestCLI
) -> None:
    _draft(console)
    add_reader(console.engine, "words@example.com", WORDS)
    add_reader(console.engine, "sheets@example.com", ["Data & Analytics"])
    status = digest_cli.json("status", "--json")
    subjects = {tuple(v["topics"] or ["*"]): v["subject"] for v in status["variants"]}
    sheets = _automatic(console, [SHEETS])
    assert subjects[("Data & Analytics",)] == sheets and "Tessellate" in sheets
    slugs = _draft_order(console)
    assert subjects[tuple(WORDS)] == _automatic(
        console, [s for s in slugs if s in (CADENCE, INKWELL)]
    )
    assert subjects[("*",)] == status["subject"]
    text = digest_cli("status")
    assert f"copy Weekly · Data & Analytics (1 reader): {sheets}" in text.output


def test_upgrading_keeps_a_subject_an_editor_wrote_as_theirs(console: Console) -> None:
    """Migration 0018: a draft whose history shows an edited subject keeps it (not
    automatic); its untouched preheader stays automatic."""
    from alembic import command

    from digest.issue.editing import Edit, edit_issue
    from digest.issue.history import history
    from digest.store.engine import alembic_config, migrate

    _draft(console)
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        edit_issue(session, issue, console.settings, Edit(subject="Our own words"))
    command.downgrade(alembic_config(console.engine), "0017")
    with session_scope(console.engine) as session:  # the downgrade kept the history
        assert [e["action"] for e in history(session, 1)] == ["frozen", "edited"]
    migrate(console.engine)
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        assert issue.subject == "Our own words"
        assert (issue.subject_auto, issue.preheader_auto) == (False, True)


def test_a_copys_own_words_meet_the_same_text_checks(console: Console) -> None:
    _draft(console)
    add_reader(console.engine, "words@example.com", WORDS)
    editor, csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1").text
    ident = next(i for i, r in _copies_on_page(page).items() if "Productivity, Writing" in r)
    for field in ("subject", "intro", "note"):
        refused = editor.post(
            f"/console/issues/1/copies/{ident}/words",
            data={"csrf": csrf, field: "Fine words\x00 and a NUL"},
        )
        assert refused.status_code == 409 and f"the {field} contains" in refused.text, field
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None and issue.variant_words == "{}"
