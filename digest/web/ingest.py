"""``POST /api/comparisons``: the review site hands over comparisons (docs/ingest.md).

Bearer tokens come from ``DIGEST_INGEST_TOKENS="site=TOKEN,backfill=TOKEN2"``; each is
compared in constant time, every one of them on every request, and the name of the one
that matched is recorded on what it brought in (``imported_by`` = ``api:site``). The
body is the canonical JSON of ``digest import`` (one object or a list), read and
checked by the importer's own functions; the import is all or nothing and idempotent
by slug. Its size is limited by ``DIGEST_INGEST_MAX_BYTES`` (digest/http/bodies.py).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from digest.core.settings import Settings
from digest.exceptions import ImportConflictError, ImportValidationError
from digest.http.client import client_ip
from digest.jobs.ingest import read_body, run_import
from digest.store.ingest import problem_fields
from digest.store.schema import ComparisonIn

logger = logging.getLogger(__name__)

router = APIRouter(tags=["ingest"])

PATH = "/api/comparisons"
_ONE = ComparisonIn.model_json_schema(ref_template="#/components/schemas/{model}")
_DEFS = _ONE.pop("$defs", {})
_ITEM_SCHEMA: dict[str, Any] = {
    **_ONE,
    "title": "Comparison",
    # Optional on import (DESIGN §2): made from the title / the stored date or now.
    "required": [f for f in _ONE.get("required", []) if f not in ("slug", "published_at")],
}
_PROBLEM = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "where": {"type": "string", "examples": ["body[0]"]},
                    "field": {"type": ["string", "null"], "examples": ["tools.1.reviews"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_DONE = {
    "type": "object",
    "properties": {
        "imported_by": {"type": "string", "examples": ["api:site"]},
        "created": {"type": "array", "items": {"type": "string"}},
        "updated": {"type": "array", "items": {"type": "string"}},
        "unchanged": {"type": "array", "items": {"type": "string"}},
        "drafts_recompiled": {"type": "array", "items": {"type": "integer"}},
    },
}
_OPENAPI: dict[str, Any] = {
    "security": [{"IngestToken": []}],
    "requestBody": {
        "required": True,
        "description": "The canonical JSON of `digest import`: one comparison or a list. "
        "`slug` defaults to one made from the title; `published_at` (with a UTC offset) "
        "defaults to now for a new comparison and to the stored date for a known one.",
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ITEM_SCHEMA, {"type": "array", "items": _ITEM_SCHEMA}]}
            }
        },
    },
    "responses": {
        "200": {
            "description": "Written (or nothing to change): the slugs created, updated and "
            "unchanged. Sending the same body again changes nothing.",
            "content": {"application/json": {"schema": _DONE}},
        },
        "400": {
            "description": "The body is not JSON (or not an object or a list).",
            "content": {"application/json": {"schema": _PROBLEM}},
        },
        "401": {"description": "No bearer token, or not one of DIGEST_INGEST_TOKENS."},
        "408": {"description": "The body did not arrive within DIGEST_BODY_TIMEOUT seconds."},
        "409": {
            "description": "A comparison in the body already went out in an issue (or two "
            "requests brought the same new slug at once); nothing was written.",
            "content": {"application/json": {"schema": _PROBLEM}},
        },
        "413": {"description": "The body is larger than DIGEST_INGEST_MAX_BYTES (5 MiB)."},
        "415": {"description": "Not sent as application/json."},
        "422": {
            "description": "A field is wrong: one entry per problem, naming the item and "
            "the field; nothing was written.",
            "content": {"application/json": {"schema": _PROBLEM}},
        },
    },
}


def token_name(settings: Settings, header: str | None) -> str | None:
    """The name of the ingest token in an ``Authorization`` header, else None. Every
    configured token is compared, in constant time, whichever matches."""
    if settings.ingest_tokens is None or not header:
        return None
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    offered = given.strip().encode()
    found = None
    for name, token in settings.ingest_token_map().items():
        if hmac.compare_digest(offered, token.encode()):
            found = name
    return found


def _refused(
    status: int, detail: str, problems: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if problems is not None:
        body["problems"] = problems
    headers = {"WWW-Authenticate": 'Bearer realm="ingest"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


@router.post(
    PATH,
    summary="Add or update comparisons (the review site's ingest API)",
    openapi_extra=_OPENAPI,
    response_model=None,
)
async def ingest(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    name = token_name(settings, request.headers.get("authorization"))
    if name is None:
        if settings.ingest_tokens is None:
            reason = "the ingest API is off: no DIGEST_INGEST_TOKENS are set on this server"
        else:
            reason = "send Authorization: Bearer TOKEN with one of the ingest tokens"
        logger.warning("ingest refused from %s: no valid token", client_ip(request))
        return _refused(401, reason)
    if "json" not in request.headers.get("content-type", "").lower():
        return _refused(415, "send the comparisons as Content-Type: application/json")
    # At most DIGEST_INGEST_MAX_BYTES, within DIGEST_BODY_TIMEOUT (digest/http/bodies.py).
    data = await request.body()
    try:
        items, undated = read_body("body", data)
    except ImportValidationError as exc:
        problems = problem_fields(exc.problems)
        status = 422 if any(p["field"] for p in problems) else 400
        count = len(problems)
        detail = f"{count} problem{'s' if count != 1 else ''}; nothing was imported"
        return _refused(status, detail, problems)
    engine, imported_by = request.app.state.engine, f"api:{name}"
    try:
        _, applied = await run_in_threadpool(
            run_import, engine, settings, items, undated, imported_by=imported_by
        )
    except ImportConflictError as exc:
        problems = [{"where": "body", "field": "slug", "reason": p} for p in exc.problems]
        return _refused(409, "; ".join(exc.problems) + "; nothing was imported", problems)
    return JSONResponse(
        {
            "imported_by": imported_by,
            "created": applied.created,
            "updated": applied.updated,
            "unchanged": applied.unchanged,
            "drafts_recompiled": applied.drafts,
        }
    )


def install(app: FastAPI) -> None:
    """Serve the route, and add to the OpenAPI description the bearer scheme and the
    schemas of a tool and a review that the request body refers to."""
    app.include_router(router)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(_DEFS)
            components.setdefault("securitySchemes", {})["IngestToken"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "One of the tokens of DIGEST_INGEST_TOKENS (name=TOKEN,…).",
            }
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
