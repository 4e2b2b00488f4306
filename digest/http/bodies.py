"""Request bodies: every route's size limit and deadline, enforced as the bytes arrive.

:class:`BodyLimits` is a pure ASGI middleware around the whole app. It counts a body's
bytes as ``receive()`` hands them to the app, so the framing does not matter
(Content-Length, chunked, or a Content-Length that lies: uvicorn never hands over more
than was declared). As soon as the count passes the route's limit it answers ``413``
itself and tells the app the client went away, so nothing reads the rest; a declared
Content-Length over the limit is refused before a byte is read. The whole body must
arrive within the route's deadline, counted from the request's head, else ``408``
(a stalled upload cannot hold a temp file or a worker). Both answers close the
connection, so the server does not drain what the client still sends; so does any
answer the app gives before it has read the whole body.

Limits come from one table, :func:`body_rules`, built from the settings; its last row
covers every path, so a route added later is limited without anyone listing it.
Starlette's own ``max_body_size`` (per route object, fixed at import) has no deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.core.settings import Settings

logger = logging.getLogger(__name__)

#: What the app sees once its body was cut off: Starlette raises ClientDisconnect.
_GONE: Message = {"type": "http.disconnect"}


@dataclass(frozen=True)
class BodyRule:
    """The most a route class accepts, and how long the whole body may take."""

    name: str
    prefixes: tuple[str, ...]  # "/a" matches /a and /a/…, never /ab
    max_bytes: int
    seconds: float

    def covers(self, path: str) -> bool:
        return any(
            path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in self.prefixes
        )


def body_rules(settings: Settings) -> tuple[BodyRule, ...]:
    """The table, most specific first: the first rule that covers a path is its rule."""
    return (
        BodyRule(
            "console upload",
            ("/console/subscribers/import/new",),
            settings.console_import_max_bytes,
            settings.console_import_timeout,
        ),
        BodyRule(
            "comparisons",
            ("/api/comparisons", "/console/comparisons/import"),
            settings.ingest_max_bytes,
            settings.body_timeout,
        ),
        BodyRule(
            "console form", ("/console",), settings.console_body_max_bytes, settings.body_timeout
        ),
        BodyRule("webhook", ("/webhooks",), settings.webhook_body_max_bytes, settings.body_timeout),
        # Public forms, the JSON API, and whatever is added later.
        BodyRule("public form or API", ("/",), settings.body_max_bytes, settings.body_timeout),
    )


def rule_for(rules: tuple[BodyRule, ...], path: str) -> BodyRule:
    return next(rule for rule in rules if rule.covers(path))


class BodyLimits:
    """Pure ASGI middleware: the table's limit and deadline on every request body."""

    def __init__(self, app: ASGIApp, *, rules: tuple[BodyRule, ...]) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = _Guard(scope, rule_for(self.rules, scope.get("path", "")), receive, send)
        declared = _declared_length(scope)
        if declared is not None and declared > guard.rule.max_bytes:
            await guard.refuse(413)
            return
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.answered:
                raise
            # The app failed because its body was cut off; the client has its answer.
            logger.debug("the app gave up on a refused body", exc_info=True)


class _Guard:
    """One request's count, deadline and answer."""

    def __init__(self, scope: Scope, rule: BodyRule, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.rule = rule
        self._receive = receive
        self._send = send
        self.deadline = asyncio.get_running_loop().time() + rule.seconds
        self.count = 0
        self.complete = False  # the whole body arrived: later receives wait for disconnect
        self.started = False  # the app began its response
        self.answered = False  # we answered instead of the app

    async def receive(self) -> Message:
        if self.answered:
            return _GONE
        if self.complete:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            await self.refuse(408)
            return _GONE
        if message["type"] == "http.request":
            self.count += len(message.get("body", b""))
            if self.count > self.rule.max_bytes:
                await self.refuse(413)
                return _GONE
            self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return  # the app's answer to a body it never got whole
        if message["type"] == "http.response.start":
            self.started = True
            if not self.complete and _has_body(self.scope):
                # Answered without reading the body (a bad link, a 404): close rather
                # than let the server drain whatever the client still sends.
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)

    async def refuse(self, status: int) -> None:
        client = self.scope.get("client") or ("?", 0)
        if status == 413:
            reason = f"request body too large: at most {self.rule.max_bytes} bytes here"
        else:
            reason = f"request body not received within {self.rule.seconds:g} seconds"
        # No path: it may hold a token (the access log has it, redacted, with the status).
        logger.warning("refused a %s body from %s: %s", self.rule.name, client[0], reason)
        self.answered = True
        if self.started:
            return  # too late for a status; the app's response ends unfinished
        wants_json = b"json" in _header(self.scope, b"content-type")
        body = json.dumps({"detail": reason}).encode() if wants_json else reason.encode()
        kind = b"application/json" if wants_json else b"text/plain; charset=utf-8"
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await self._send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).lower()
    return b""


def _has_body(scope: Scope) -> bool:
    return bool(_header(scope, b"transfer-encoding")) or bool(_declared_length(scope))


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    return int(value) if value.isascii() and value.isdigit() else None
