"""The stack's own ceiling for bench/web.py: a bare Starlette app under the same uvicorn,
answering each benchmarked route with the very bytes ``digest serve`` answered (read
once from BENCH_WEB_BODIES), with no store, no template and no token check.

    BENCH_WEB_BODIES=/tmp/bodies python bench/web_baseline.py --port 8100 --workers 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

BODIES = Path(os.environ.get("BENCH_WEB_BODIES", "."))


def _body(name: str) -> bytes:
    path = BODIES / name
    return path.read_bytes() if path.exists() else b"<!doctype html><p>ok</p>"


ARCHIVE = _body("archive.html")
FEED = _body("feed.atom")
UNSUBSCRIBED = _body("unsubscribed.html")
CONFIRM = _body("confirm.html")
SUBSCRIBED = _body("subscribed.html")
HTML = "text/html; charset=utf-8"


async def counted(request: Request) -> Response:
    return RedirectResponse("https://verdicts.example.com/compare/a-vs-b", status_code=302)


async def archive(request: Request) -> Response:
    return Response(ARCHIVE, media_type=HTML)


async def feed(request: Request) -> Response:
    return Response(FEED, media_type="application/atom+xml; charset=utf-8")


async def one_click(request: Request) -> Response:
    form = await request.form()
    if form.get("List-Unsubscribe") != "One-Click":
        return Response(b"no", status_code=400)
    return Response(UNSUBSCRIBED, media_type=HTML)


async def confirm(request: Request) -> Response:
    return Response(CONFIRM, media_type=HTML)


async def subscribe(request: Request) -> Response:
    form = await request.form()
    if not form.get("email"):
        return Response(b"no", status_code=422)
    return Response(SUBSCRIBED, media_type=HTML)


async def healthz(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(
    routes=[
        Route("/r/{token}", counted),
        Route("/archive/feed.atom", feed),
        Route("/archive/{ref}", archive),
        Route("/unsubscribe/{token}", one_click, methods=["POST"]),
        Route("/confirm/{token}", confirm),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)


OPTIONS = {
    "log_level": "info",
    "proxy_headers": True,
    "forwarded_allow_ips": "127.0.0.1",
}


def _child(port: int) -> None:
    from digest.web.workers import listening_socket

    sock = listening_socket("127.0.0.1", port)
    config = uvicorn.Config("web_baseline:app", host="127.0.0.1", port=port, **OPTIONS)  # type: ignore[arg-type]
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The options `digest serve` gives uvicorn (digest/cli/server.py), access log
    # included; several processes the way `digest serve --workers N` starts them
    # (digest/web/workers.py), so the ratio compares the apps, not the launchers.
    if args.workers == 1:
        uvicorn.run(
            "web_baseline:app",
            app_dir=str(Path(__file__).resolve().parent),
            host="127.0.0.1",
            port=args.port,
            **OPTIONS,  # type: ignore[arg-type]
        )
        return
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(args.port,)) for _ in range(args.workers)]
    for child in children:
        child.start()
    signal.signal(signal.SIGTERM, lambda *_: [c.terminate() for c in children])
    for child in children:
        child.join()


if __name__ == "__main__":
    main()
