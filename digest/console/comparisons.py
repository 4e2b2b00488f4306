"""Comparisons in the console (editors and operators): the list, with who brought each
in and the issue that featured it, and the import page — upload or paste canonical JSON
or a saved comparison page, see what would be added or changed, then confirm.

The preview reads the input with the importer's own functions (``digest import``'s
checks) and writes nothing; its confirm form carries the comparisons as canonical JSON
with their dates settled, and the plan's fingerprint, so the confirm writes exactly
what was shown or, if the store moved on meanwhile, nothing (docs/ingest.md).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from digest.console.auth import Editor, EditorPost
from digest.console.pages import render
from digest.exceptions import ImportConflictError, ImportValidationError
from digest.jobs.ingest import preview_import, read_body, run_import
from digest.store.ingest import Plan, canonical
from digest.store.models import Comparison, Issue, IssueComparison

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console/comparisons", include_in_schema=False)

C = Comparison.__table__  # type: ignore[attr-defined]
IC = IssueComparison.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
LIST_LIMIT = 200
PASTED = "pasted text"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


@router.get("", response_class=HTMLResponse)
def comparison_list(request: Request, viewer: Editor) -> Response:
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(
            select(C.c.id, C.c.slug, C.c.title, C.c.published_at, C.c.imported_by)
            .order_by(C.c.published_at.desc(), C.c.id.desc())
            .limit(LIST_LIMIT)
        ).all()
        featured: dict[int, list[tuple[int, str]]] = {}
        for comparison_id, number, state in conn.execute(
            select(IC.c.comparison_id, I.c.number, I.c.state)
            .join(I, I.c.id == IC.c.issue_id)
            .order_by(I.c.number)
        ):
            featured.setdefault(comparison_id, []).append((number, state))
    unfeatured = sum(1 for r in rows if r.id not in featured)
    return render(
        request,
        "comparisons.html",
        viewer,
        rows=rows,
        featured=featured,
        unfeatured=unfeatured,
        limit=LIST_LIMIT,
        max_age_days=request.app.state.settings.max_age_days,
    )


@router.get("/import", response_class=HTMLResponse)
def import_form(request: Request, viewer: Editor) -> Response:
    return render(request, "comparisons_import.html", viewer, plan=None, problems=[], text="")


def _where(file: UploadFile | None) -> str:
    name = _SAFE_NAME.sub("_", (file.filename or "upload") if file else PASTED)
    return name[:100] or "upload"


@router.post("/import", response_class=HTMLResponse)
async def import_preview(
    request: Request,
    viewer: EditorPost,
    file: Annotated[UploadFile | None, File()] = None,
    text: Annotated[str, Form()] = "",
) -> Response:
    """Step 1: read and check, show the plan; nothing is written."""
    # The body is at most DIGEST_INGEST_MAX_BYTES (digest/http/bodies.py).
    upload = await file.read() if file is not None and file.filename else b""
    if upload and text.strip():
        return _form_again(request, viewer, ["choose a file or paste text, not both"], text)
    data = upload or text.encode("utf-8")
    if not data.strip():
        return _form_again(request, viewer, ["choose a file or paste a comparison"], text)
    where = _where(file if upload else None)
    try:
        items, undated = read_body(where, data)
        plan = await run_in_threadpool(preview_import, request.app.state.engine, items, undated)
    except ImportValidationError as exc:
        return _form_again(request, viewer, exc.problems, text)
    payload = json.dumps([canonical(i) for i in plan.items], ensure_ascii=False)
    return render(
        request,
        "comparisons_import.html",
        viewer,
        plan=plan,
        source=where,
        payload=payload,
        fingerprint=plan.fingerprint(),
        problems=[],
        text="",
    )


def _form_again(
    request: Request, viewer: object, problems: list[str], text: str, status: int = 422
) -> Response:
    return render(
        request,
        "comparisons_import.html",
        viewer,
        status_code=status,
        plan=None,
        problems=problems,
        text=text,
    )


@router.post("/import/confirm")
async def import_confirm(
    request: Request,
    viewer: EditorPost,
    payload: Annotated[str, Form()] = "",
    plan: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Step 2: write what the preview showed, all of it or nothing."""
    try:
        items, undated = read_body("the previewed comparisons", payload.encode("utf-8"))
        done: tuple[Plan, object] = await run_in_threadpool(
            lambda: run_import(
                request.app.state.engine,
                request.app.state.settings,
                items,
                undated,
                imported_by=f"console:{viewer.email}",
                expected=plan,
            )
        )
    except (ImportValidationError, ImportConflictError) as exc:
        return _form_again(request, viewer, exc.problems, "", status=409)
    written = done[0]
    logger.info(
        "%s imported %d comparisons from the console (%d new, %d updated)",
        viewer.email,
        len(written.items),
        written.count("new"),
        written.count("update"),
    )
    return RedirectResponse("/console/comparisons?done=imported", status_code=303)
