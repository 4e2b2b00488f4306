"""``digest doctor`` on bounces by mail (against a loopback DNS server): for SMTP sends
the VERP domain's MX must name the MTA in front of ``digest inbound``, and with no way
in at all it warns."""

from __future__ import annotations

from dns_server import LoopbackDNS, dns_server  # noqa: F401
from inbound_support import VERP_DOMAIN

from digest.core.settings import Settings
from digest.mail.doctor import run_checks


def _bounces(settings: Settings, dns: LoopbackDNS, **extra: object) -> tuple[str, str]:
    s = settings.model_copy(
        update={
            "transport": "smtp",
            "dns_server": dns.address,
            "smtp_host": "mta.verdicts.test",
            **extra,
        }
    )
    found = [c for c in run_checks(s) if c.name == "Bounces"]
    assert len(found) == 1
    return found[0].status, found[0].detail


def test_the_mx_of_the_verp_domain_must_name_the_inbound_mta(
    settings: Settings,
    dns_server: LoopbackDNS,  # noqa: F811
) -> None:
    dns_server.zone.publish_mx(VERP_DOMAIN, "mta.verdicts.test")
    status, detail = _bounces(settings, dns_server, verp_domain=VERP_DOMAIN)
    assert status == "ok" and "names mta.verdicts.test" in detail

    dns_server.zone.publish_mx(VERP_DOMAIN, "mx.elsewhere.test", "mx2.elsewhere.test")
    status, detail = _bounces(settings, dns_server, verp_domain=VERP_DOMAIN)
    assert status == "fail"
    assert "mx.elsewhere.test, mx2.elsewhere.test, not mta.verdicts.test" in detail
    # Named explicitly when the inbound MTA is not the relay the sends go through.
    status, _ = _bounces(
        settings, dns_server, verp_domain=VERP_DOMAIN, inbound_mx_host="mx2.elsewhere.test"
    )
    assert status == "ok"
    # A polled mailbox is the other way in: a wrong MX is then a warning.
    status, detail = _bounces(
        settings, dns_server, verp_domain=VERP_DOMAIN, bounce_mailbox="/var/mail/bounces"
    )
    assert status == "warn" and "relying on the bounce mailbox" in detail

    dns_server.zone.mx.clear()
    status, detail = _bounces(settings, dns_server, verp_domain=VERP_DOMAIN)
    assert status == "fail" and f"no MX at {VERP_DOMAIN}" in detail


def test_no_way_in_for_smtp_sends_is_a_warning(
    settings: Settings,
    dns_server: LoopbackDNS,  # noqa: F811
) -> None:
    status, detail = _bounces(settings, dns_server)
    assert status == "warn" and "neither way in is configured" in detail
    status, _ = _bounces(settings, dns_server, bounce_mailbox="/var/mail/bounces")
    assert status == "ok"
    # Provider sends report bounces by webhook: no such check.
    memory = settings.model_copy(update={"dns_server": dns_server.address})
    assert "Bounces" not in [c.name for c in run_checks(memory)]
