"""``POST /api/comparisons`` over real HTTP: ``digest serve`` on a loopback port, a
SQLite file, tokens from DIGEST_INGEST_TOKENS (docs/ingest.md)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import digest_serve, free_port
from sqlmodel import Session, select
from store_support import REPO, SAMPLE_CSV, dump_store, sample_items

from digest.core.clock import utcnow
from digest.core.settings import Settings, parse_ingest_tokens
from digest.exceptions import ConfigError
from digest.jobs.weekly import weekly_job
from digest.store.engine import make_engine, migrate
from digest.store.models import Comparison, Issue, IssueState
from digest.web.app import create_app
from subscribers.service import import_csv

pytestmark = [pytest.mark.slow, pytest.mark.clock]

SITE = "site-token-0123456789abcdef"
BACKFILL = "backfill-token-fedcba9876543210"
SECRET = "ingest-test-secret-0123456789abcdef"


@dataclass
class Server:
    base: str
    db: str
    tmp: Path
    env: dict[str, str]

    def post(self, body: Any, token: str | None = SITE, **kw: Any) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(f"{self.base}/api/comparisons", content=data, headers=headers, **kw)

    def settings(self) -> Settings:
        return Settings(
            database_url=self.db, secret_key=SECRET, outbox=self.tmp / "outbox", transport="maildir"
        )


@contextmanager
def _serve(tmp_path: Path) -> Iterator[Server]:
    db = f"sqlite:///{tmp_path / 'digest.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATABASE_URL": db,
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_INGEST_TOKENS": f"site={SITE},backfill={BACKFILL}",
            "DIGEST_INGEST_MAX_BYTES": str(64 * 1024),
            "DIGEST_OUTBOX": str(tmp_path / "outbox"),
        }
    )
    port = free_port()
    with digest_serve(env, tmp_path, port) as base:
        yield Server(base, db, tmp_path, env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module; each test brings comparisons of its own (``_fresh``
    with the test's tag), so they never meet."""
    with _serve(tmp_path_factory.mktemp("ingest")) as running:
        yield running


def _fresh(index: int, tag: str) -> dict[str, Any]:
    item = sample_items()[index]
    item["slug"] = f"{item['slug']}-{tag}"
    item["title"] = f"{item['title']} {tag}"
    item["published_at"] = utcnow().replace(microsecond=0).isoformat()
    return item


def _stored(server: Server, tag: str = "") -> dict[str, tuple[str, str | None]]:
    engine = make_engine(server.db)
    with Session(engine) as session:
        rows = session.exec(select(Comparison)).all()
        found = {c.slug: (c.title, c.imported_by) for c in rows if c.slug.endswith(tag)}
    engine.dispose()
    return found


def test_a_named_token_imports_and_its_name_is_recorded(server: Server) -> None:
    one, two = _fresh(0, "t0"), _fresh(1, "t0")
    answer = server.post([one, two])
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["created"]) == sorted([one["slug"], two["slug"]])
    assert answer.json()["imported_by"] == "api:site"

    third = _fresh(2, "t0")
    assert server.post(third, token=BACKFILL).status_code == 200
    stored = _stored(server)
    assert stored[one["slug"]] == (one["title"], "api:site")
    assert stored[third["slug"]] == (third["title"], "api:backfill")


def test_no_token_or_a_wrong_one_is_refused_and_writes_nothing(server: Server) -> None:
    item = _fresh(0, "t1")
    for token in (None, SITE[:-1] + "X", SITE + "X", BACKFILL.upper(), "x" * 40):
        answer = server.post(item, token=token)
        assert answer.status_code == 401, (token, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "token" in answer.json()["detail"]
    basic = httpx.post(
        f"{server.base}/api/comparisons",
        json=item,
        headers={"Authorization": f"Basic {SITE}"},
    )
    assert basic.status_code == 401
    assert _stored(server, "t1") == {}


def test_the_same_body_twice_adds_nothing_the_second_time(server: Server) -> None:
    body = [_fresh(0, "t2"), _fresh(1, "t2")]
    first = server.post(body)
    assert first.status_code == 200, first.text
    engine = make_engine(server.db)
    before = dump_store(engine)
    again = server.post(body)
    assert again.status_code == 200, again.text
    assert again.json()["created"] == [] and again.json()["updated"] == []
    assert sorted(again.json()["unchanged"]) == sorted(i["slug"] for i in body)
    assert dump_store(engine) == before  # not a row, not a timestamp moved
    engine.dispose()


def test_a_re_post_updates_a_comparison_no_issue_sent(server: Server) -> None:
    item = _fresh(0, "t3")
    assert server.post(item).status_code == 200
    item["title"] = item["title"] + " (revised)"
    item["tools"][0]["tagline"] = "A tagline the site corrected"
    answer = server.post(item, token=BACKFILL)
    assert answer.status_code == 200, answer.text
    assert answer.json()["updated"] == [item["slug"]]
    assert _stored(server)[item["slug"]] == (item["title"], "api:backfill")


def test_a_slug_that_went_out_is_refused_with_409_and_nothing_is_written(tmp_path: Path) -> None:
    # A server of its own: the issue it sends features every new comparison in its store.
    with _serve(tmp_path) as server:
        _went_out(server)


def _went_out(server: Server) -> None:
    sent, fresh = _fresh(0, "t4"), _fresh(1, "t4")
    assert server.post(sent).status_code == 200
    settings = server.settings()
    engine = make_engine(server.db)
    migrate(engine)
    import_csv(engine, SAMPLE_CSV)
    result = weekly_job(settings, engine=engine, actor="test")
    assert result.number == 1 and result.report is not None, result
    with Session(engine) as session:
        assert session.exec(select(Issue)).one().state == IssueState.SENT

    changed = copy.deepcopy(sent)
    changed["standfirst"] = "A standfirst changed after the issue went out."
    before = dump_store(engine)
    answer = server.post([fresh, changed])
    assert answer.status_code == 409, answer.text
    detail = answer.json()["detail"]
    assert sent["slug"] in detail and "#1" in detail and "nothing was imported" in detail
    assert dump_store(engine) == before  # the new one in the same body was not written

    # The very same comparison again is a replay, not a change: accepted, unchanged.
    replay = server.post(sent)
    assert replay.status_code == 200 and replay.json()["unchanged"] == [sent["slug"]]
    engine.dispose()


def test_bad_fields_get_one_reason_each_and_nothing_is_written(server: Server) -> None:
    good, bad = _fresh(0, "t5"), _fresh(1, "t5")
    bad["tools"] = bad["tools"][:1]
    bad["published_at"] = "last tuesday"
    bad["colour"] = "blue"
    del good["tools"][1]["reviews"][2]
    answer = server.post([good, bad])
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    by_field = {(p["where"], p["field"]): p["reason"] for p in problems}
    assert "missing lens" in by_field[("body[0]", "tools.1.reviews")]
    assert "two tools" in by_field[("body[1]", "tools")]
    assert "ISO 8601" in by_field[("body[1]", "published_at")]
    assert by_field[("body[1]", "colour")] == "unknown field"
    assert "nothing was imported" in answer.json()["detail"]
    assert _stored(server, "t5") == {}

    broken = server.post(b'{"title": "A vs B", ')
    assert broken.status_code == 400
    assert "invalid JSON" in broken.json()["problems"][0]["reason"]
    form = httpx.post(
        f"{server.base}/api/comparisons",
        data={"title": "x"},
        headers={"Authorization": f"Bearer {SITE}"},
    )
    assert form.status_code == 415


def test_a_body_over_the_limit_gets_413_whatever_the_framing(server: Server) -> None:
    items = [_fresh(i % 7, "t6") for i in range(60)]  # well over this server's 64 KiB
    body = json.dumps(items).encode()
    assert len(body) > 64 * 1024
    answer = server.post(body)
    assert answer.status_code == 413
    assert "65536" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    chunked = httpx.post(
        f"{server.base}/api/comparisons",
        content=chunks(),
        headers={"Authorization": f"Bearer {SITE}", "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    assert _stored(server, "t6") == {}


def test_the_openapi_description_lists_the_route(server: Server) -> None:
    spec = httpx.get(f"{server.base}/openapi.json").json()
    route = spec["paths"]["/api/comparisons"]["post"]
    assert route["security"] == [{"IngestToken": []}]
    assert spec["components"]["securitySchemes"]["IngestToken"]["scheme"] == "bearer"
    assert {"200", "401", "409", "413", "422"} <= set(route["responses"])
    schema = route["requestBody"]["content"]["application/json"]["schema"]
    one = schema["oneOf"][0]
    assert "tools" in one["required"] and "slug" not in one["required"]
    assert (
        one["properties"]["tools"]["items"]["$ref"].split("/")[-1] in spec["components"]["schemas"]
    )
    page = httpx.get(f"{server.base}/docs")
    assert "/api/comparisons" in page.text


def _readme_curl() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"How the site calls it.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README lost the ingest API's curl example"
    return block.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_curl_example_works_as_written(server: Server) -> None:
    example = _readme_curl()
    assert "https://digest.example.com/api/comparisons" in example
    command = example.replace("https://digest.example.com", server.base)
    item = _fresh(3, "t8")
    (server.tmp / "comparison.json").write_text(json.dumps(item), encoding="utf-8")
    env = {**server.env, "DIGEST_SITE_TOKEN": SITE}
    done = subprocess.run(
        ["/bin/sh", "-ec", command],
        cwd=server.tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout)["created"] == [item["slug"]]
    assert _stored(server)[item["slug"]] == (item["title"], "api:site")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("site", "not NAME=TOKEN"),
        ("site=changeme", "placeholder or shorter than 16"),
        ("site=short-token", "placeholder or shorter than 16"),
        (f"site={SITE},site={BACKFILL}", "appears twice"),
        (f"bad name={SITE}", "not NAME=TOKEN"),
    ],
)
def test_unusable_ingest_tokens_stop_the_start_naming_no_token(
    value: str, says: str, tmp_path: Path
) -> None:
    settings = Settings(
        ingest_tokens=value, secret_key=SECRET, database_url=f"sqlite:///{tmp_path / 'd.db'}"
    )
    with pytest.raises(ConfigError, match=says) as caught:
        create_app(settings)
    assert str(caught.value).startswith("DIGEST_INGEST_TOKENS: ")
    assert SITE not in str(caught.value) and BACKFILL not in str(caught.value)


def test_tokens_are_read_by_name() -> None:
    assert parse_ingest_tokens(f" site = {SITE} , backfill={BACKFILL},") == {
        "site": SITE,
        "backfill": BACKFILL,
    }
