"""Property-based run over the served OpenAPI spec: no input makes the app answer 5xx.

Bounded: a fixed number of generated examples per operation (about 40 operations'
worth of requests in all), derandomised so a failure reproduces.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from digest.core.settings import Settings
from digest.store.engine import make_engine, migrate
from digest.transports.memory import MemoryTransport
from digest.web.app import create_app

EXAMPLES = 30


def _app() -> object:
    # Built at import: schemathesis reads the spec when the module is collected. The
    # database lives in a temporary directory removed when the interpreter exits.
    tmp = Path(tempfile.mkdtemp(prefix="digest-fuzz-"))
    atexit.register(shutil.rmtree, tmp, True)
    s = Settings(
        database_url=f"sqlite:///{tmp / 'fuzz.db'}",
        secret_key="fuzz-secret-key-0123456789abcdef",
        transport="memory",
        base_url="http://digest.test",
        subscribe_rate_limit=100_000,
    )
    engine = make_engine(s.database_url)
    migrate(engine)
    outbox = MemoryTransport()
    return create_app(s, engine=engine, transport_factory=lambda _s: outbox)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (
        case.method,
        case.path,
        response.status_code,
        response.text[:500],
    )
