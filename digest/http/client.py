"""Who sent a request, as the web and the console both need to know it (the consent
log, the access throttle, the login log, the click counts).

:func:`client_key` is the one place that decides which requests count as one client:
every throttled route and the click counts key on it, so a fix to it holds everywhere.
"""

from __future__ import annotations

import ipaddress
import logging

from fastapi import Request

logger = logging.getLogger(__name__)

#: An IPv6 client usually holds a whole /64 (SLAAC, privacy addresses): counting per
#: address would give one person 2**64 budgets.
IPV6_PREFIX = 64


def client_ip(request: Request) -> str:
    """The client's address as uvicorn resolved it (X-Forwarded-For only from trusted
    proxies, see DIGEST_FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def rate_key(ip: str) -> str:
    """The key a client is counted under: its IPv4 address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def client_key(request: Request) -> str:
    """The client a request counts against, for every per-client limit and count."""
    return rate_key(client_ip(request))


def user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")
