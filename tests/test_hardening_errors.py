"""Issue 22 item 10: no unhandled 500s from hostile numbers and shapes, and every error
answer carries the security headers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from console_support import BASE, OPERATOR, make_console
from fastapi.testclient import TestClient
from subscriber_support import Store
from test_webhooks_postmark import AUTH, CONFIG, bounce
from test_webhooks_ses import Fetcher
from test_webhooks_ses import client as ses_client
from webhook_helpers import add_reader, client_for, status_of

from digest.core.settings import Settings

pytestmark = pytest.mark.clock  # webhook event times are counted back from now

HUGE = "9" * 30
HEADERS = ("x-content-type-options", "x-frame-options", "content-security-policy")


def _headed(answer: Any) -> bool:
    return all(h in answer.headers for h in HEADERS)


def test_out_of_range_numbers_in_urls_are_4xx_with_headers(store: Store, tmp_path: Path) -> None:
    console = make_console(store.settings, store.engine, tmp_path)
    logged_in, csrf = console.login(OPERATOR)
    assert logged_in.post("/console/draft", data={"csrf": csrf}).status_code == 200
    client = TestClient(
        console.app, base_url=BASE, raise_server_exceptions=False, cookies=logged_in.cookies
    )
    for path in (
        "/archive/%C2%B2",  # "²": isdigit() says yes, int() says no
        "/archive/%D9%A3",  # an Arabic-Indic three
        f"/console/issues/{HUGE}",
        f"/console/issues/-{HUGE}",
        f"/console/issues/{HUGE}/preview",
        f"/console/issues/{HUGE}/deliveries",
        f"/console/issues/1/deliveries?page={HUGE}",
        f"/console/issues/1/deliveries?page={2**62}",  # its offset overflows
        f"/console/api/status?number={HUGE}",
        f"/console/mail/{HUGE}",
    ):
        answer = client.get(path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)
        assert _headed(answer), path


def test_an_unhandled_error_still_carries_the_security_headers(
    settings: Settings, tmp_path: Path
) -> None:
    from digest.store.engine import make_engine, migrate

    engine = make_engine(settings.database_url)
    migrate(engine)
    app = client_for(settings, engine).app

    def boom() -> None:
        raise RuntimeError("a bug nobody foresaw")

    app.router.add_api_route("/boom", boom)  # type: ignore[attr-defined]
    answer = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert answer.status_code == 500 and _headed(answer)
    assert "a bug nobody foresaw" not in answer.text


@pytest.mark.parametrize(
    "shape",
    [
        {"Type": "Notification", "TopicArn": ["x"]},
        {"Type": "Notification", "TopicArn": {"a": 1}},
        {"Type": ["Notification"], "TopicArn": "arn:aws:sns:eu-west-1:123456789012:x"},
        [1, 2],
        "a string",
        None,
    ],
)
def test_ses_payloads_of_the_wrong_shape_are_a_400(
    settings: Settings, engine: Any, shape: object
) -> None:
    client = ses_client(settings, engine, Fetcher())
    client = TestClient(client.app, raise_server_exceptions=False)
    answer = client.post(
        "/webhooks/ses",
        content=json.dumps(shape),
        headers={"Content-Type": "text/plain", "x-amz-sns-message-type": "Notification"},
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert _headed(answer)


@pytest.mark.parametrize("hint", [HUGE, f"-{HUGE}", "²", 10**30, [1], {"a": 1}, 1e300])
def test_a_signed_postmark_event_with_a_wild_delivery_hint_is_recorded(
    settings: Settings, engine: Any, hint: object
) -> None:
    add_reader(engine, "a@example.com")
    client = TestClient(client_for(settings, engine, **CONFIG).app, raise_server_exceptions=False)
    payload = bounce("a@example.com")
    payload["Metadata"] = {"digest_delivery": hint, "digest_issue": hint}
    answer = client.post("/webhooks/postmark", json=payload, auth=AUTH)
    # 200: the provider stops retrying; the bounce counts, the hint is ignored.
    assert answer.status_code == 200, answer.text
    assert status_of(engine, "a@example.com") == "bounced"
