"""A real DNS server on loopback (dnslib) serving TXT and MX records from dicts, for
the DKIM and ``digest doctor`` tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import MX, QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class TxtZone(BaseResolver):  # type: ignore[misc]
    """TXT and MX records by lower-case name; other names are NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.mx: dict[str, list[tuple[int, str]]] = {}

    def publish(self, name: str, *values: str) -> None:
        self.records[name.lower().rstrip(".")] = list(values)

    def publish_mx(self, name: str, *hosts: str) -> None:
        """MX records for ``name``, preference 10, 20, … in the order given."""
        self.mx[name.lower().rstrip(".")] = [(10 * (i + 1), h) for i, h in enumerate(hosts)]

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name not in self.records and name not in self.mx:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if request.q.qtype == QTYPE.MX:
            for preference, host in self.mx.get(name, []):
                reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX(host, preference), ttl=60))
            return reply
        if request.q.qtype == QTYPE.TXT:
            for value in self.records.get(name, []):
                # One TXT record holds strings of at most 255 octets (an RSA key is longer).
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        return reply


class LoopbackDNS:
    def __init__(self, zone: TxtZone, server: DNSServer) -> None:
        self.zone = zone
        self.server = server
        host, port = server.server.server_address[:2]
        self.address = f"{host}:{port}"


@pytest.fixture
def dns_server() -> Iterator[LoopbackDNS]:
    zone = TxtZone()
    quiet = DNSLogger(logf=lambda _line: None)
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    try:
        yield LoopbackDNS(zone, server)
    finally:
        server.stop()
        server.server.server_close()
