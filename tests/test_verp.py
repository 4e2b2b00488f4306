"""VERP envelope senders: one per delivery, opaque, bound to the reader's address,
checked with the current or the previous secret; the SMTP transport sends with them
(the From header, and so DKIM and DMARC alignment, untouched)."""

from __future__ import annotations

from pathlib import Path

import pytest
from inbound_support import VERP_DOMAIN, send_with_verp
from pydantic import SecretStr
from servers import recording_smtp
from sqlalchemy.engine import Engine

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.mail.message import IssueMessage
from digest.mail.verp import VerpMinter, is_bounce_address, matches, parse, verp_config
from digest.transports.smtp import SMTPTransport

pytestmark = pytest.mark.clock  # VERP tags


def _verp(settings: Settings, **extra: object) -> Settings:
    return settings.model_copy(update={"verp_domain": VERP_DOMAIN, **extra})


def test_verp_is_on_with_a_verp_domain_or_a_bounce_address(settings: Settings) -> None:
    assert verp_config(settings) is None
    on = verp_config(_verp(settings))
    assert on is not None and on.bare == f"bounces@{VERP_DOMAIN}"
    by_bounce = verp_config(settings.model_copy(update={"bounce_address": "rp@mail.verdicts.test"}))
    assert by_bounce is not None and by_bounce.bare == "rp@mail.verdicts.test"
    both = verp_config(_verp(settings, bounce_address="rp@mail.verdicts.test"))
    assert both is not None and both.bare == f"rp@{VERP_DOMAIN}"
    assert verp_config(_verp(settings, verp=False)) is None


def test_a_verp_domain_must_be_a_mail_domain() -> None:
    with pytest.raises(ValueError, match="not a usable mail domain"):
        Settings(verp_domain="not a domain")
    assert Settings(verp_domain="Bounces.Example.ORG").verp_domain == "bounces.example.org"


def test_an_address_names_its_delivery_and_only_for_its_reader(settings: Settings) -> None:
    s = _verp(settings)
    config = verp_config(s)
    assert config is not None
    address = VerpMinter(s, config).address(4711, "Ada@Example.com")
    local, _, domain = address.partition("@")
    assert domain == VERP_DOMAIN and local.startswith("bounces+1267-")  # 4711 in hex
    assert local == local.lower()  # survives an MTA that folds case
    token = parse(address.upper(), config)
    assert token is not None and token.delivery_id == 4711
    assert matches(s, token, "ada@example.com")
    assert not matches(s, token, "bob@example.com")  # replayed for another reader
    # A tag is no good for another delivery id, nor with one character changed.
    other = parse(address.replace("+1267-", "+1268-"), config)
    assert other is not None and not matches(s, other, "ada@example.com")
    flipped = address[: address.index("@") - 1] + (
        "0" if address[address.index("@") - 1] != "0" else "1"
    )
    changed = parse(flipped + address[address.index("@") :], config)
    assert changed is not None and not matches(s, changed, "ada@example.com")


@pytest.mark.parametrize(
    "address",
    [
        "bounces+12-0123456789abcdef0123@other.test",  # another domain
        f"other+12-0123456789abcdef0123@{VERP_DOMAIN}",  # another local part
        f"bounces+0x12-0123456789abcdef0123@{VERP_DOMAIN}",  # not plain hex
        f"bounces+12-0123456789abcdef012@{VERP_DOMAIN}",  # short tag
        f"bounces+12-0123456789abcdef012z@{VERP_DOMAIN}",
        f"bounces@{VERP_DOMAIN}",
    ],
)
def test_anything_else_is_not_a_verp_address(settings: Settings, address: str) -> None:
    config = verp_config(_verp(settings))
    assert config is not None
    assert parse(address, config) is None


def test_the_allow_list_is_the_bounce_address_and_verp_shapes(settings: Settings) -> None:
    config = verp_config(_verp(settings))
    assert config is not None
    assert is_bounce_address(f"<Bounces@{VERP_DOMAIN}>", config)
    assert is_bounce_address(f"bounces+1-{'a' * 20}@{VERP_DOMAIN}", config)
    assert not is_bounce_address(f"abuse@{VERP_DOMAIN}", config)


def test_an_address_made_before_a_key_rotation_still_checks(settings: Settings) -> None:
    s = _verp(settings)
    config = verp_config(s)
    assert config is not None
    old = parse(VerpMinter(s, config).address(9, "ada@example.com"), config)
    assert old is not None
    assert s.secret_key is not None
    rotated = s.model_copy(
        update={
            "secret_key": SecretStr("a-brand-new-secret-key-0123456789"),
            "secret_key_previous": s.secret_key,
        }
    )
    assert matches(rotated, old, "ada@example.com")
    forgotten = rotated.model_copy(update={"secret_key_previous": None})
    assert not matches(forgotten, old, "ada@example.com")


def test_each_delivery_goes_out_with_its_own_envelope_sender(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = _verp(settings)
    readers = ["ada@example.com", "bob@example.com", "cy@example.com"]
    sent = send_with_verp(s, engine, tmp_path, readers)
    config = verp_config(s)
    assert config is not None
    senders = {email: f.verp for email, f in sent.items()}
    assert len(set(senders.values())) == len(readers)
    for email, sender in senders.items():
        token = parse(sender, config)
        assert token is not None and matches(s, token, email)
        assert sent[email].sender == "digest@verdicts.test"  # From is untouched


def test_a_test_copy_uses_the_bare_bounce_address(settings: Settings) -> None:
    s = _verp(settings)
    message = IssueMessage(
        issue_id=1, week="2026-W47", number=1, subject="S", html="<p>x</p>", text="x", settings=s
    )
    with recording_smtp() as server:
        smtp = s.model_copy(
            update={"transport": "smtp", "smtp_host": server.host, "smtp_port": server.port}
        )
        with SMTPTransport(smtp) as transport:
            transport.send_batch(message, [Recipient(0, "editor@example.org")])
        assert server.messages[0].mail_from == f"bounces@{VERP_DOMAIN}"
