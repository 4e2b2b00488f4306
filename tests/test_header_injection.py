"""No input can add a header or start the body (issue 13, item 1).

Python 3.11.7's ``email`` package (before the CVE-2024-6923 fix) decodes RFC 2047
encoded words in names, quoted strings and unstructured headers and writes the decoded
CR/LF raw. Every entry point that feeds a header — POST /subscribe, CSV import, CLI
add, comparison import, ``digest edit --subject``, the settings — is driven here with
encoded words, CR/LF and non-ASCII, and the produced bytes are parsed back: both
message paths (the stdlib ``build`` and the compiled skeleton) and the confirmation
email. A hypothesis test fuzzes the same fields.
"""

from __future__ import annotations

import csv
import itertools
import mailbox
from pathlib import Path

import pytest
from cli_support import DigestCLI
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from injection_support import ATTACKS, CONFIRM_HEADERS, DIGEST_HEADERS, assert_clean, encoded
from sqlalchemy.engine import Engine
from sqlmodel import select
from store_support import WEEK, dated, sample_items, write_json
from subscriber_support import WebApp

from digest.core.mailsafe import fit_display_name, header_text
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import IssueStateError
from digest.issue.editing import Edit, edit_issue
from digest.issue.freeze import freeze_issue, issue_message
from digest.issue.render import render_issue
from digest.mail.message import IssueMessage
from digest.store.engine import session_scope
from digest.store.importer import import_comparisons
from digest.store.models import Comparison
from subscribers.service import add_subscriber, import_csv


def _issue(engine: Engine, settings: Settings, tmp_path: Path, title: str) -> IssueMessage:
    items = dated(sample_items()[:2], settings)
    items[-1]["title"] = title  # the newest: its pick leads the subject (issue 26)
    attack = title.removeprefix("Tool A vs Tool B").strip()
    items[-1]["tools"][0]["name"] = "Tool A"
    items[-1]["tools"][1]["name"] = f"Tool B {attack}".strip()  # the pick: 100% vs 50%
    import_comparisons(engine, [write_json(tmp_path / "c.json", items)])
    with session_scope(engine) as session:
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None
        return issue_message(issue, settings)


def _both_paths(message: IssueMessage, recipient: Recipient) -> bytes:
    fast = message.as_bytes(recipient)
    assert fast == message.as_bytes_slow(recipient)
    return fast


@pytest.mark.parametrize("attack", ATTACKS)
def test_comparison_title_and_names_cannot_inject_in_either_path(
    attack: str, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    # (a literal line break in a title is refused at import; encoded ones are the threat)
    title = f"Tool A vs Tool B {attack}".replace("\r\n", " ")
    message = _issue(engine, settings, tmp_path, title)
    assert message._compiled() is not None  # the fast path is really in use
    recipient = Recipient(subscriber_id=7, email="reader@example.com", name=attack)
    msg = assert_clean(_both_paths(message, recipient), DIGEST_HEADERS)
    subject = str(msg["Subject"]).strip()
    assert "=?" not in subject and subject.startswith("Ship Tool B")
    [to] = msg["To"].addresses
    # (the stdlib's own RFC 2047 round trip may double a space next to an encoded word)
    assert " ".join(to.display_name.split()) == header_text(attack, 100)
    assert to.addr_spec == "reader@example.com"


@pytest.mark.parametrize("attack", ATTACKS[:4])
def test_settings_values_cannot_inject(
    attack: str, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    hostile = Settings(
        **{
            **settings.model_dump(),
            "from_address": f"{attack} <digest@verdicts.test>",
            "reply_to": f"{attack} <editors@verdicts.test>",
            "list_name": attack,
        }
    )
    message = _issue(engine, hostile, tmp_path, "Tool A vs Tool B")
    # The message does not rely on the settings' own check: the same values, unchecked.
    unchecked = Settings.model_construct(
        **{
            **settings.model_dump(),
            "from_address": f"{attack} <digest@verdicts.test>",
            "reply_to": f"{attack} <editors@verdicts.test>",
            "list_name": attack,
        }
    )
    raw = _both_paths(
        IssueMessage(
            issue_id=message.issue_id,
            week=message.week,
            subject=attack,
            html=message.html,
            text=message.text,
            settings=unchecked,
        ),
        Recipient(3, "reader@example.com", attack),
    )
    assert_clean(raw, DIGEST_HEADERS)
    msg = assert_clean(message.as_bytes(Recipient(4, "r@example.com", "")), DIGEST_HEADERS)
    assert msg["From"].addresses[0].addr_spec == "digest@verdicts.test"
    assert msg["Reply-To"].addresses[0].addr_spec == "editors@verdicts.test"


def test_the_reported_subscribe_attack(sqlite_web: WebApp) -> None:
    """The exact request of the report: the confirmation email keeps its own subject."""
    name = "=?utf-8?b?eA0KU3ViamVjdDogUmVzZXQgeW91ciBwYXNzd29yZA0KWC1JbmplY3RlZDogeWVzDQo=?="
    answer = sqlite_web.client.post(
        "/subscribe", json={"email": "victim@example.com", "name": name}
    )
    assert answer.status_code == 202
    [stored] = sqlite_web.outbox.outbox
    msg = assert_clean(stored.raw, CONFIRM_HEADERS)
    assert str(msg["Subject"]).startswith("Confirm your subscription")
    assert msg["X-Injected"] is None


def test_cli_csv_import_and_edit_cannot_inject(
    digest_cli: DigestCLI, settings: Settings, tmp_path: Path
) -> None:
    items = dated(sample_items()[:2], settings)
    items[-1]["title"] = "A vs B " + ATTACKS[0]
    digest_cli.ok("import", write_json(tmp_path / "c.json", items))
    digest_cli.ok("subscribers", "add", "cli@example.com", "--name", ATTACKS[1])
    csv_path = tmp_path / "people.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "name"])
        out.writerows([f"n{i}@example.com", a] for i, a in enumerate(ATTACKS))
    digest_cli.ok("subscribers", "import", csv_path)
    digest_cli.ok("edit", "--week", WEEK, "--subject", "Edited " + ATTACKS[2])
    digest_cli.ok("send", "--week", WEEK, "--yes")
    box = mailbox.Maildir(settings.outbox, create=False)
    raws = [box.get_bytes(key) for key in box.iterkeys()]
    assert len(raws) == 1 + len(ATTACKS)
    for raw in raws:
        msg = assert_clean(raw, DIGEST_HEADERS)
        subject = str(msg["Subject"]).strip()
        assert subject.startswith("Edited ") and "=?" not in subject


# ---------------------------------------------------------------- fuzz

_FRAGMENTS = st.sampled_from(
    [
        "=?",
        "?=",
        "=?utf-8?b?",
        "=?utf-8?q?",
        "\r\n",
        "\n",
        "\r",
        "\r\n\r\n",
        "X-Injected: y",
        " ",
        "é",
        "李",
        "🎉",
        '"',
        "<",
        ">",
        ",",
        ";",
        ":",
        "\\",
        "\x00",
        "\u2028",
        "=0D=0A",
        "_",
    ]
)
_PAYLOAD = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_ENCODED = st.builds(encoded, _PAYLOAD.map(lambda t: t + "\r\nX-Injected: y\r\n"))
HOSTILE = st.lists(st.one_of(_FRAGMENTS, _ENCODED, _PAYLOAD), min_size=1, max_size=8).map("".join)
_serial = itertools.count()


@hsettings(
    max_examples=40,
    phases=[Phase.explicit, Phase.generate],  # shrinking a failure takes minutes
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=HOSTILE, subject=HOSTILE, title=HOSTILE)
def test_fuzz_every_header_bound_field(
    name: str,
    subject: str,
    title: str,
    sqlite_web: WebApp,
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
) -> None:
    n = next(_serial)
    # POST /subscribe (JSON and form) → the confirmation email.
    before = len(sqlite_web.outbox.outbox)
    sqlite_web.client.post("/subscribe", json={"email": f"web{n}@example.com", "name": name})
    sqlite_web.client.post("/subscribe", data={"email": f"form{n}@example.com", "name": name})
    for stored in sqlite_web.outbox.outbox[before:]:
        assert_clean(stored.raw, CONFIRM_HEADERS)
    # CLI add and CSV import store the name neutralised (or refuse it: 200+ characters).
    with session_scope(engine) as session:
        try:
            sub, _ = add_subscriber(session, f"cli{n}@example.com", name)
            assert "=?" not in sub.name and "\n" not in sub.name
        except Exception as exc:  # only the documented refusal
            assert "longer than" in str(exc)
    csv_path = tmp_path / f"fuzz{n}.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "name"])
        out.writerow([f"csv{n}@example.com", name.replace("\x00", "")])
    try:
        import_csv(engine, csv_path)
    except Exception as exc:
        assert "longer than" in str(exc) or "line" in str(exc)
    # Comparison import and edit → a digest, through both message paths.
    items = dated(sample_items()[:1], settings)
    items[0]["title"] = ("A vs B " + title.replace("\r", " ").replace("\n", " "))[:290]
    items[0]["title"] = "".join(ch for ch in items[0]["title"] if ch >= " " or ch == "\t")
    items[0]["slug"] = f"fuzz-{n}"
    try:
        import_comparisons(engine, [write_json(tmp_path / f"c{n}.json", items)])
    except Exception as exc:
        assert "title" in str(exc)
    with session_scope(engine) as session:
        comparison = session.exec(select(Comparison).where(Comparison.slug == f"fuzz-{n}")).first()
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None
        try:
            edit_issue(session, issue, settings, Edit(subject=subject or None))
        except IssueStateError as exc:  # the documented refusal: the editors' text checks
            assert "the subject" in str(exc)
        messages = [issue_message(issue, settings)]
        if comparison is not None:
            # The title path: the default subject of an issue led by this comparison.
            rendered = render_issue(week=WEEK, full=[comparison], links=[], settings=settings)
            assert "=?" not in rendered.subject
            messages.append(
                IssueMessage(
                    issue_id=10_000 + n,
                    week=WEEK,
                    subject=rendered.subject,
                    html=rendered.html,
                    text=rendered.text,
                    settings=settings,
                )
            )
    for message in messages:
        raw = _both_paths(message, Recipient(n + 1, f"reader{n}@example.com", name))
        msg = assert_clean(raw, DIGEST_HEADERS)
        [to] = msg["To"].addresses
        assert to.addr_spec == f"reader{n}@example.com"
        # Spacing aside (the stdlib's RFC 2047 round trip moves spaces around encoded
        # words), the name arrives as written, neutralised — and cut to fit one line
        # when it needs quoting (the stdlib unquotes a longer one, and a ':' or ','
        # in it would then read as a group or a second address).
        expected = fit_display_name(header_text(name, 100), to.addr_spec)
        assert "".join(to.display_name.split()) == "".join(expected.split())
