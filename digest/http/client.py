"""Who sent a request, as the web and the console both need to know it (the consent
log, the access throttle, the login log)."""

from __future__ import annotations

import logging

from fastapi import Request

logger = logging.getLogger(__name__)


def client_ip(request: Request) -> str:
    """The client's address as uvicorn resolved it (X-Forwarded-For only from trusted
    proxies, see DIGEST_FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")
