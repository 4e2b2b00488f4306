"""The fast message path gives exactly the stdlib path's bytes, for everyone."""

from __future__ import annotations

import random
from email import message_from_bytes, policy, quoprimime
from email.headerregistry import Address
from pathlib import Path

import pytest
from conftest import TEST_SECRET
from smtp_faults import seed_issue_store
from store_support import WEEK

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.issue.freeze import freeze_issue, issue_message
from digest.mail import mimefast
from digest.mail.message import IssueMessage
from digest.mail.parts import MAIL_POLICY
from digest.mail.placeholders import placeholder
from digest.store.engine import make_engine, migrate, session_scope

NAMES = [
    "",
    "Ada",
    "Ada Lovelace",
    "Zoë Ångström",
    'Zoë "Q" O\'Brien',
    "J. R. R. Tolkien",
    "Smith, John",
    "=?utf-8?q?not_an_encoded_word?=",
    "李小龙",
    "Ünïcödé " * 12,
    "x" * 95,
    "a-b_c 'quoted' name with several words that goes on and on past the fold",
    "   spaced\tout\nname  ",
    "<script>alert(1)</script> & co",
    "emoji 🎉 party",
    "trailing space ",
    "=3D tricky = equals =",
]


@pytest.fixture(scope="module")
def message(tmp_path_factory: pytest.TempPathFactory) -> IssueMessage:
    tmp = tmp_path_factory.mktemp("fastpath")
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'digest.db'}",
        secret_key=TEST_SECRET,
        base_url="https://digest.example.org/a/rather/long/base/path",
        from_address="Weekly AI Tool Verdicts <digest@verdicts.test>",
        reply_to="editors@verdicts.test",
    )
    engine = make_engine(settings.database_url)
    migrate(engine)
    seed_issue_store(engine, settings, tmp, 0)
    with session_scope(engine) as session:
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None
        built = issue_message(issue, settings)
    engine.dispose()
    return built


@pytest.mark.parametrize("name", NAMES)
def test_fast_bytes_equal_stdlib_bytes(message: IssueMessage, name: str) -> None:
    for sid, email in ((7, "reader@example.com"), (123456789, "o'brien+tag@mail.example.org")):
        recipient = Recipient(subscriber_id=sid, email=email, name=name)
        assert message.as_bytes(recipient) == message.as_bytes_slow(recipient)
    assert message._skeleton is not None, "the fast path must be in use"


def test_fast_path_across_many_recipients(message: IssueMessage) -> None:
    rng = random.Random(3)
    alphabet = "abcXYZ é'\"=.,-_ü李🎉"
    for sid in range(1, 50):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))
        recipient = Recipient(sid * 7919, f"r{sid}@example.com", name)
        assert message.as_bytes(recipient) == message.as_bytes_slow(recipient), name


def test_message_is_well_formed(message: IssueMessage) -> None:
    recipient = Recipient(42, "ada@example.com", 'Zoë&"Q" O\'Brien')
    raw = message.as_bytes(recipient)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["To"].addresses[0].display_name == 'Zoë&"Q" O\'Brien'
    unsubscribe = message.unsubscribe_url(recipient)
    # RFC 2369: the URL stays a URL (never an RFC 2047 encoded word).
    assert f"<{unsubscribe}>".encode() in raw
    assert str(parsed["List-Unsubscribe"]).startswith(f"<{unsubscribe}>")
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    assert 'Hi Zoë&"Q",' in text.get_content()  # the first name greets
    assert "Hi Zo\u00eb&amp;&#34;Q&#34;," in html.get_content()
    assert unsubscribe in html.get_content()
    assert parsed["Message-ID"] == message.message_id(recipient)


def test_same_recipient_same_bytes(message: IssueMessage) -> None:
    recipient = Recipient(5, "b@example.com", "B")
    assert message.as_bytes(recipient) == message.as_bytes(recipient)


@pytest.mark.parametrize("seed", range(40))
def test_qp_template_matches_quoprimime(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["a", "b ", "=", "é", "\t", " ", "€", "x" * 50, "[[%name%]]", "[[%url%]]"]
    lines = []
    for _ in range(rng.randint(1, 6)):
        lines.append("".join(rng.choice(pieces) for _ in range(rng.randint(0, 400))))
    body = "\n".join(lines) + rng.choice(["", "\n", " \n"])
    tokens = {"name": placeholder("name"), "url": placeholder("url")}
    template = mimefast.QPTemplate(body, tokens)
    for _ in range(5):
        values = {
            "name": "".join(rng.choice("ab= é\t") for _ in range(rng.randint(0, 120))),
            "url": "https://x.test/u/" + "Q" * rng.randint(0, 90),
        }
        filled = body.replace(tokens["name"], values["name"]).replace(tokens["url"], values["url"])
        lines_b = filled.encode("utf-8").splitlines()
        expected = quoprimime.body_encode(
            (b"\n".join(lines_b) + b"\n").decode("latin-1"), 78, eol="\r\n"
        )
        out: list[bytes] = []
        template.render({k: mimefast.qp_translate(v) for k, v in values.items()}, out)
        assert b"".join(out).decode("ascii") == expected


@pytest.mark.parametrize("seed", range(20))
def test_header_shortcuts_match_the_stdlib_folder(seed: int) -> None:
    rng = random.Random(seed)
    words = ["w" * rng.randint(1, 60) for _ in range(rng.randint(1, 5))]
    value = " ".join(words)
    folded = mimefast.fold_unstructured("X-Thing", value)
    if folded is not None:
        assert folded == mimefast.fold_stdlib(MAIL_POLICY, "X-Thing", value)
    name = " ".join("N" * rng.randint(1, 12) for _ in range(rng.randint(1, 4)))
    short = mimefast.fold_address("To", name, "a.b@example.com")
    if short is not None:
        address = Address(name, addr_spec="a.b@example.com")
        assert short == mimefast.fold_stdlib(MAIL_POLICY, "To", address)


def test_a_long_display_name_that_needs_quoting_is_cut_not_unquoted(settings: Settings) -> None:
    """The stdlib folds a quoted name longer than a line without its quotes, and a
    ':' or ',' in it then reads as a group or a second address: such a name is cut at
    a word to fit (found by the header fuzz test)."""
    message = IssueMessage(
        issue_id=3, week="2026-W47", subject="S", html="<p>x</p>", text="x", settings=settings
    )
    name = "Ann, Bob: the whole research team of the lab at the university of somewhere"
    recipient = Recipient(9, "reader@example.com", name)
    raw = message.as_bytes(recipient)
    assert raw == message.as_bytes_slow(recipient)
    parsed = message_from_bytes(raw, policy=policy.default)
    [to] = parsed["To"].addresses
    assert to.addr_spec == "reader@example.com"
    assert to.display_name.startswith("Ann, Bob: the whole research team")
    short = Recipient(9, "reader@example.com", "Ann, Bob: research")
    [kept] = message_from_bytes(message.as_bytes(short), policy=policy.default)["To"].addresses
    assert kept.display_name == "Ann, Bob: research"


def _dot_stuffed(raw: bytes) -> bytes:
    """RFC 5321 4.5.2 the obvious way: the reference for the fast forms."""
    raw = raw.replace(b"\n.", b"\n..")
    if raw.startswith(b"."):
        raw = b"." + raw
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


def test_smtp_data_is_the_message_dot_stuffed_and_ended() -> None:
    rng = random.Random(5)
    alphabet = b".\r\nab"
    shared = [bytes(rng.choice(alphabet) for _ in range(600)) for _ in range(4)]
    for _ in range(5000):
        parts = [
            rng.choice(shared)
            if rng.random() < 0.3
            else bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            for _ in range(rng.randint(0, 6))
        ]
        raw = b"".join(parts)
        assert mimefast.smtp_data(raw) == _dot_stuffed(raw), raw
        # Pieces that each end a line (as the skeleton's do) are stuffed one by one.
        lines = [part + b"\r\n" for part in parts] or [b"\r\n"]
        stuffed = b"".join(mimefast.line_stuffed(line) for line in lines) + b".\r\n"
        assert stuffed == _dot_stuffed(b"".join(lines)), lines


def test_the_skeletons_smtp_data_matches_the_message(settings: Settings, tmp_path: Path) -> None:
    engine = make_engine(settings.database_url)
    migrate(engine)
    seed_issue_store(engine, settings, tmp_path, 0)
    with session_scope(engine) as session:
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None
        message = issue_message(issue, settings)
    assert message._compiled() is not None
    for i in range(50):
        recipient = Recipient(i + 1, f"reader{i}@example.com", ["", "Ada", "Zoë Ünïcode"][i % 3])
        assert message.as_data(recipient) == _dot_stuffed(message.as_bytes(recipient))
    engine.dispose()
