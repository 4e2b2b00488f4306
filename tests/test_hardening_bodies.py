"""Request bodies cannot exhaust the server (issue 22, items 1 and 4).

Every attack runs against ``digest serve`` as a subprocess over a raw socket: a chunked
body far over the route's limit, a Content-Length that lies, a body that stalls, and
an anonymous console post. Each must be answered before the client has sent the body
(``Answer.sent``), and the server's peak resident size (VmHWM, reset before each
attack) must not grow by anything like the body's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from body_attacks import Answer, Attack, MiB, Served, memory, multipart, reset_peak, served
from fastapi import Request
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.web.app import create_app

pytestmark = pytest.mark.slow

#: Every attack's body: far over each route's limit below.
SIZE = 64 * MiB
#: The most the server's peak may grow under one attack (a quarter of the body).
GROWTH = SIZE // 4
BOUNDARY = "attack-boundary-0123456789"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
FORM = "application/x-www-form-urlencoded"
PROVIDERS = ("postmark", "sendgrid", "mailgun", "resend", "ses")
#: Small limits so the upload class is tested in seconds; the rate limit out of the way.
LIMITS = {
    "DIGEST_CONSOLE_IMPORT_MAX_BYTES": str(2 * MiB),
    "DIGEST_SUBSCRIBE_RATE_LIMIT": "1000",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("bodies"), **LIMITS) as running:
        yield running


@pytest.fixture(scope="module")
def hasty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server whose bodies must arrive within 2 seconds (uploads: 3)."""
    deadlines = {"DIGEST_BODY_TIMEOUT": "2", "DIGEST_CONSOLE_IMPORT_TIMEOUT": "3"}
    with served(tmp_path_factory.mktemp("hasty"), **LIMITS, **deadlines) as running:
        yield running


def _measured(server: Served, hostile: Attack, *, wait: float = 60.0) -> tuple[Answer, int]:
    """The answer to ``hostile`` and how far the server's peak rose above its size before."""
    reset_peak(server.pid)
    before = memory(server.pid)["VmRSS"]
    answer = server.attack(hostile, wait=wait)
    return answer, memory(server.pid)["VmHWM"] - before


def _upload(server: Served, **kwargs: object) -> Attack:
    head = multipart(BOUNDARY, {"csrf": server.csrf, "consent": "signed up"}, "people.csv")
    return Attack(
        "/console/subscribers/import/new",
        SIZE,
        MULTIPART,
        prefix=head,
        cookie=server.cookie,
        **kwargs,  # type: ignore[arg-type]
    )


def _route_classes(server: Served) -> list[Attack]:
    """A chunked body over the limit for each kind of route that reads one."""
    return [
        *(Attack(f"/webhooks/{provider}", SIZE) for provider in PROVIDERS),
        Attack("/subscribe", SIZE),  # the JSON API
        Attack("/unsubscribe", SIZE, FORM, prefix=b"email="),  # a public form
        Attack("/unsubscribe/some-token", SIZE, FORM, prefix=b"List-Unsubscribe="),
        Attack("/console/login", SIZE, FORM, prefix=b"email="),  # anonymous by nature
        Attack("/console/subscribers/add", SIZE, FORM, prefix=b"email=", cookie=server.cookie),
        _upload(server),
    ]


CLASSES = [
    *(f"webhook {p}" for p in PROVIDERS),
    "subscribe JSON",
    "unsubscribe form",
    "one-click unsubscribe",
    "console login",
    "console form",
    "console upload",
]


@pytest.mark.parametrize("index", range(len(CLASSES)), ids=CLASSES)
def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read(
    server: Served, index: int
) -> None:
    answer, growth = _measured(server, _route_classes(server)[index])
    assert growth < GROWTH, f"peak resident size grew {growth / MiB:.0f} MiB"
    assert answer.sent < SIZE // 2, f"the server read {answer.sent / MiB:.0f} MiB first"
    assert answer.status == 413, answer
    assert b"too large" in answer.body
    assert answer.closes  # the server reads nothing more of this connection


def test_a_declared_length_over_the_limit_is_refused_before_any_byte(server: Served) -> None:
    hostile = _upload(server, chunked=False, declared=SIZE)
    answer, growth = _measured(server, hostile)
    assert answer.status == 413, answer
    assert answer.sent < SIZE // 2 and growth < GROWTH


def test_a_content_length_that_lies_reads_no_further(server: Served) -> None:
    # 100 bytes declared, 64 MiB streamed: the rest is never taken as this body.
    hostile = Attack("/webhooks/sendgrid", SIZE, chunked=False, declared=100)
    answer, growth = _measured(server, hostile)
    assert answer.status is not None and answer.status < 500, answer
    assert answer.sent < SIZE // 2 and growth < GROWTH


@pytest.mark.parametrize("path", ["/confirm/no-such-token", "/preferences/no-such-token", "/"])
def test_an_answer_before_the_body_is_read_closes_the_connection(server: Served, path: str) -> None:
    # These answer without reading (a bad link, a GET-only page): the server must not
    # go on draining what the client still sends.
    answer, growth = _measured(server, Attack(path, SIZE, FORM, prefix=b"x="))
    assert answer.status is not None and 400 <= answer.status < 500, answer
    assert answer.closes
    assert answer.sent < SIZE // 2 and growth < GROWTH


ANONYMOUS_POSTS = [
    "/console/subscribers/import/new",
    "/console/subscribers/add",
    "/console/issues/1/edit",
    "/console/logout",
]


@pytest.mark.parametrize("path", ANONYMOUS_POSTS)
def test_an_anonymous_console_post_goes_to_the_login_before_its_body(
    server: Served, path: str
) -> None:
    head = multipart(BOUNDARY, {"csrf": "x", "consent": "x"}, "people.csv")
    hostile = Attack(path, SIZE, MULTIPART, chunked=False, declared=SIZE, prefix=head)
    answer, growth = _measured(server, hostile)
    assert answer.status == 303, answer
    assert answer.headers["location"].startswith("/console/login")
    assert answer.closes
    assert answer.sent < SIZE // 2, f"the server read {answer.sent / MiB:.0f} MiB first"
    assert growth < GROWTH


def test_a_set_password_post_with_an_unknown_link_reads_no_body(server: Served) -> None:
    hostile = Attack("/console/setup/no-such-token", SIZE, FORM, prefix=b"password=")
    answer, _growth = _measured(server, hostile)
    assert answer.status == 404, answer
    assert answer.sent < SIZE // 2


def _stalled(server: Served) -> list[Attack]:
    return [
        Attack("/webhooks/sendgrid", SIZE, stall_after=5),
        Attack("/subscribe", SIZE, stall_after=5),
        # A Content-Length that promises more than ever comes.
        Attack("/subscribe", 1000, chunked=False, declared=1000, stall_after=10),
        Attack("/console/login", SIZE, FORM, prefix=b"email=", stall_after=10),
        Attack(
            "/console/subscribers/add",
            SIZE,
            FORM,
            prefix=b"email=",
            cookie=server.cookie,
            stall_after=10,
        ),
        _upload(server, stall_after=1000),
    ]


STALLED = [
    "webhook",
    "subscribe chunked",
    "subscribe content-length",
    "console login",
    "console form",
    "console upload",
]


@pytest.mark.parametrize("index", range(len(STALLED)), ids=STALLED)
def test_a_body_that_stalls_is_answered_at_its_deadline(hasty: Served, index: int) -> None:
    # The deadline is 2 s (3 s for uploads); 30 s is only how long the client waits.
    answer = hasty.attack(_stalled(hasty)[index], wait=30)
    assert answer.status == 408, answer
    assert answer.closes


def test_a_route_added_later_is_limited_without_being_listed(
    settings: Settings, engine: Engine
) -> None:
    app = create_app(settings.model_copy(update={"body_max_bytes": 4096}), engine=engine)

    @app.post("/later")
    async def later(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    client = TestClient(app)
    assert client.post("/later", content=b"x" * 4096).json() == {"read": 4096}
    refused = client.post("/later", content=b"x" * 4097)
    assert refused.status_code == 413 and "too large" in refused.text


def test_every_limit_is_a_setting(tmp_path: Path, settings: Settings, engine: Engine) -> None:
    app = create_app(
        settings.model_copy(
            update={"webhook_body_max_bytes": 65536, "console_body_max_bytes": 65536}
        ),
        engine=engine,
    )
    client = TestClient(app)
    assert client.post("/webhooks/sendgrid", content=b"x" * 70_000).status_code == 413
    refused = client.post("/console/login", data={"email": "x" * 70_000})
    assert refused.status_code == 413
