"""SES via SNS: signatures with a certificate generated here, served by an injected
fetcher under an ``sns.<region>.amazonaws.com`` URL (no network)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from webhook_helpers import add_reader, client_for, event_count, event_time, status_of

from digest.core.settings import Settings

pytestmark = pytest.mark.clock  # event times

TOPIC = "arn:aws:sns:eu-west-1:123456789012:digest-ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123abcd.pem"
SUBSCRIBE_URL = (
    f"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc"
)


def certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


KEY, PEM = certificate()


def canonical(msg: dict[str, Any]) -> bytes:
    """AWS's documented string to sign, written out independently of the app's code."""
    if msg["Type"] == "Notification":
        keys = (
            ["Message", "MessageId"]
            + (["Subject"] if "Subject" in msg else [])
            + ["Timestamp", "TopicArn", "Type"]
        )
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{msg[k]}\n" for k in keys).encode()


def sign(
    msg: dict[str, Any], key: rsa.RSAPrivateKey = KEY, version: str = "2", cert_url: str = CERT_URL
) -> dict[str, Any]:
    msg = {**msg, "SignatureVersion": version, "SigningCertURL": cert_url}
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303
    msg["Signature"] = base64.b64encode(
        key.sign(canonical(msg), padding.PKCS1v15(), algorithm)
    ).decode()
    return msg


def notification(ses_event: dict[str, Any], message_id: str = "sns-1") -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(ses_event),
        "Timestamp": event_time(),
    }


def bounce(email: str, kind: str = "Permanent") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": kind,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": email, "diagnosticCode": "smtp; 550 5.1.1"}],
            "timestamp": event_time(),
            "feedbackId": "f-1",
        },
        "mail": {"messageId": "ses-1", "tags": {"digest_issue": ["5"]}},
    }


class Fetcher:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return PEM if url == CERT_URL else b"<ConfirmSubscriptionResponse/>"


def client(settings: Settings, engine: Engine, fetch: Fetcher, **kw: Any) -> TestClient:
    test_client = client_for(settings, engine, ses_sns_topic_arns=f"{TOPIC}, arn:other", **kw)
    test_client.app.state.webhook_fetch = fetch  # type: ignore[attr-defined]
    return test_client


def post(test_client: TestClient, msg: dict[str, Any]) -> Any:
    return test_client.post(
        "/webhooks/ses",
        content=json.dumps(msg),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": msg["Type"],
        },
    )


def test_subscription_confirmation_fetches_the_subscribe_url(
    settings: Settings, engine: Engine
) -> None:
    fetch = Fetcher()
    c = client(settings, engine, fetch)
    msg = sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "sub-1",
            "Token": "abc",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe",
            "SubscribeURL": SUBSCRIBE_URL,
            "Timestamp": event_time(),
        }
    )
    answer = post(c, msg)
    assert answer.status_code == 200 and answer.json()["confirmed"] is True
    assert fetch.urls == [CERT_URL, SUBSCRIBE_URL]
    evil = sign({**msg, "SubscribeURL": "https://evil.example/?Action=ConfirmSubscription"})
    assert post(c, evil).status_code == 400
    assert fetch.urls == [CERT_URL, SUBSCRIBE_URL]  # the evil URL was never fetched


def test_bounce_notification_both_signature_versions_and_replay(
    settings: Settings, engine: Engine
) -> None:
    add_reader(engine, "x@example.com")
    add_reader(engine, "y@example.com")
    c = client(settings, engine, Fetcher())
    first = sign(notification(bounce("x@example.com"), "sns-1"), version="1")
    assert post(c, first).status_code == 200
    assert status_of(engine, "x@example.com") == "bounced"
    assert post(c, first).json()["duplicates"] == 1
    complaint = {
        "notificationType": "Complaint",
        "mail": {"messageId": "ses-2"},
        "complaint": {
            "complainedRecipients": [{"emailAddress": "y@example.com"}],
            "complaintFeedbackType": "abuse",
        },
    }
    assert post(c, sign(notification(complaint, "sns-2"), version="2")).status_code == 200
    assert status_of(engine, "y@example.com") == "complained"
    assert event_count(engine) == 2


def test_forged_foreign_and_misdirected_messages_are_refused(
    settings: Settings, engine: Engine
) -> None:
    add_reader(engine, "x@example.com")
    fetch = Fetcher()
    c = client(settings, engine, fetch)
    good = sign(notification(bounce("x@example.com")))
    other_key, _ = certificate()
    foreign_topic = "arn:aws:sns:eu-west-1:999999999999:someone-elses-topic"
    refused = {
        401: [
            {**good, "Message": json.dumps(bounce("x@example.com", "Transient"))},  # forged
            sign(notification(bounce("x@example.com")), key=other_key),  # re-signed
            sign(
                notification(bounce("x@example.com")),
                cert_url="https://evil.example/SimpleNotificationService-1.pem",
            ),
            sign(
                notification(bounce("x@example.com")),
                cert_url="https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
            ),
            sign(
                notification(bounce("x@example.com")),
                cert_url="http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
            ),
            {k: v for k, v in good.items() if k != "Signature"},
        ],
        403: [sign({**notification(bounce("x@example.com")), "TopicArn": foreign_topic})],
    }
    for status, messages in refused.items():
        for msg in messages:
            assert post(c, msg).status_code == status
    assert all(url == CERT_URL for url in fetch.urls)  # no other host was ever contacted
    assert event_count(engine) == 0 and status_of(engine, "x@example.com") == "active"
    unconfigured = client_for(settings, engine)
    unconfigured.app.state.webhook_fetch = fetch  # type: ignore[attr-defined]
    assert post(unconfigured, good).status_code == 403
