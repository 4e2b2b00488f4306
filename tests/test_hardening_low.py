"""The low-severity findings of issue 13 (items 8–13), each through its real entry point."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import DigestCLI, settings_env
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from store_support import WEEK, dated, dump_store, sample_items, write_json
from subscriber_support import WebApp, write

from digest.core.settings import Settings
from digest.http.throttle import Throttle, rate_key
from digest.store.models import Issue
from digest.store.subscriber_models import Subscriber
from digest.web.app import create_app

DIGEST = str(Path(sys.executable).with_name("digest"))
#: Far deeper than the decoder recurses (about 1,000), well under the 64 KB form limit.
DEEP = b"[" * 20_000 + b"]" * 20_000
DEEP_OBJECT = b'{"email": "a@example.com", "x": ' + DEEP + b"}"


# ---------------------------------------------------------------- 8: deep JSON


def test_deeply_nested_json_is_a_clear_refusal(
    sqlite_web: WebApp, digest_cli: DigestCLI, tmp_path: Path
) -> None:
    json_type = {"content-type": "application/json"}
    answer = sqlite_web.client.post("/subscribe", content=DEEP_OBJECT, headers=json_type)
    assert answer.status_code == 400 and "JSON" in answer.json()["detail"]
    for provider in ("mailgun", "ses", "sendgrid", "postmark", "resend"):
        answer = sqlite_web.client.post(f"/webhooks/{provider}", content=DEEP, headers=json_type)
        assert 400 <= answer.status_code < 500, (provider, answer.status_code)
    deep = tmp_path / "deep.json"
    deep.write_bytes(DEEP)
    result = digest_cli("import", deep)
    assert result.exit_code == 1 and "nested too deeply" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ---------------------------------------------------------------- 9: a locked SQLite file


@pytest.fixture
def locked(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[Settings]:
    """Another process holds the write lock (BEGIN IMMEDIATE) for the whole test."""
    from digest.store.importer import import_comparisons

    import_comparisons(engine, [write_json(tmp_path / "c.json", dated(sample_items(), settings))])
    path = settings.database_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield settings.model_copy(update={"db_busy_timeout": 0.2})
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_locked_database_answers_503_and_the_cli_says_why(locked: Settings) -> None:
    client = TestClient(create_app(locked))
    answer = client.post("/subscribe", json={"email": "busy@example.com"})
    assert answer.status_code == 503 and answer.headers["retry-after"]
    form = client.post("/subscribe", data={"email": "busy@example.com"})
    assert form.status_code == 503
    env = {**settings_env(locked), "DIGEST_DB_BUSY_TIMEOUT": "0.2", "PATH": "/usr/bin:/bin"}
    for args in (["subscribers", "add", "busy@example.com"], ["send", "--week", WEEK, "--yes"]):
        done = subprocess.run(
            [DIGEST, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "database is locked" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- 10, 11: CSV


def test_csv_refuses_unterminated_quotes_and_repeated_columns(
    digest_cli: DigestCLI, engine: Engine, tmp_path: Path
) -> None:
    before = dump_store(engine)
    unterminated = write(
        tmp_path / "a.csv", 'email,name\nada@example.com,Ada\nbob@example.com,"Bob\ncy@x.com,C\n'
    )
    result = digest_cli("subscribers", "import", unterminated)
    assert result.exit_code == 1 and "a.csv:3:" in result.output and "never closed" in result.output
    twice = write(tmp_path / "b.csv", "email,email\nada@example.com,bob@example.com\n")
    result = digest_cli("subscribers", "import", twice)
    assert (
        result.exit_code == 1 and "b.csv:1:" in result.output and "more than once" in result.output
    )
    assert dump_store(engine) == before


def test_export_escapes_formula_addresses_and_imports_back(
    digest_cli: DigestCLI, settings: Settings, tmp_path: Path
) -> None:
    digest_cli.ok("subscribers", "add", "=1+1@example.com", "--name", "@SUM(A1)")
    target = tmp_path / "out.csv"
    digest_cli.ok("subscribers", "export", target)
    with target.open(encoding="utf-8", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["email"] == "'=1+1@example.com" and row["name"] == "'@SUM(A1)"
    other = DigestCLI(
        env={**settings_env(settings), "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    )
    other.ok("subscribers", "import", target)
    [back] = other.json("subscribers", "list", "--json")
    assert (back["email"], back["name"]) == ("=1+1@example.com", "@SUM(A1)")


# ---------------------------------------------------------------- 12: redirects


def test_trailing_slash_redirect_never_names_a_host(sqlite_web: WebApp) -> None:
    answer = sqlite_web.client.get("/archive/?x=1", headers={"Host": "evil.example"})
    assert answer.status_code == 307 and answer.headers["location"] == "/archive?x=1"
    assert sqlite_web.client.get("/nothing/here/").status_code == 404
    assert sqlite_web.client.post("/archive/").status_code in (404, 405)


# ---------------------------------------------------------------- 13: the rest


def test_year_one_is_refused_at_import(
    digest_cli: DigestCLI, settings: Settings, tmp_path: Path
) -> None:
    items = dated(sample_items()[:1], settings)
    items[0]["published_at"] = "0001-01-01T00:00:00+05:00"
    result = digest_cli("import", write_json(tmp_path / "y1.json", items))
    assert result.exit_code == 1 and "out of range" in result.output
    result = digest_cli(
        "import",
        write_json(tmp_path / "none.json", [{**items[0], "published_at": None}]),
        "--published-at",
        "0001-01-01T00:00:00+05:00",
    )
    assert result.exit_code == 1 and "out of range" in result.output


def test_invalid_utf8_in_a_form_is_refused(sqlite_web: WebApp) -> None:
    urlencoded = {"content-type": "application/x-www-form-urlencoded"}
    for body, headers in (
        (b"email=a%40example.com&name=J%FFrg", urlencoded),
        (b"email=a%40example.com&name=J\xffrg", urlencoded),
        (
            b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\na@example.com\r\n'
            b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nJ\xffrg\r\n--b--\r\n',
            {"content-type": "multipart/form-data; boundary=b"},
        ),
    ):
        answer = sqlite_web.client.post("/subscribe", content=body, headers=headers)
        assert answer.status_code == 400 and "UTF-8" in answer.text
    with sqlite_web.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Subscriber)).scalar_one() == 0
    good = sqlite_web.client.post("/subscribe", data={"email": "j@example.com", "name": "Jörg"})
    assert good.status_code == 200


def test_console_preview_is_read_only(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    token = "operator-token-for-tests-0123456789"
    s = settings.model_copy(update={"admin_token": SecretStr(token)})
    from digest.store.importer import import_comparisons

    import_comparisons(engine, [write_json(tmp_path / "c.json", dated(sample_items(), s))])
    client = TestClient(create_app(s, engine=engine), base_url="http://digest.test")
    answer = client.get("/console/issues/1/preview", follow_redirects=False)
    assert answer.status_code in (303, 404)  # to the login page, or no such issue
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Issue)).scalar_one() == 0


def test_rate_limit_counts_an_ipv6_slash_64_as_one_client() -> None:
    assert (
        rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("::ffff:198.51.100.7") == "198.51.100.7" == rate_key("198.51.100.7")
    limiter = Throttle(2, 600, clock=lambda: 0.0)
    hits = [limiter.hit(rate_key(f"2001:db8:1:2::{i:x}")) for i in range(1, 4)]
    assert hits[:2] == [None, None] and hits[2] is not None
