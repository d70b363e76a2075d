"""The widget bundle (``/widget/<file>``) and the demo page (``/demo``).

Both are built or written elsewhere (``widget/``); until they exist the
answer is a 404 that says how to make them.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from bot.settings import PROJECT_ROOT

WIDGET_DIR = PROJECT_ROOT / "widget"
BUNDLE_NAME = "polku-chat.js"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TYPES = {".js": "text/javascript", ".map": "application/json", ".css": "text/css"}

NOT_BUILT = ("The chat widget has not been built yet: run ./polku start "
             "(or `npm run build` in widget/).\n")


def add_routes(app: web.Application, widget_dir: Path = WIDGET_DIR) -> None:
    dist = widget_dir / "dist"
    demo = widget_dir / "demo" / "index.html"

    async def widget_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = dist / name
        if not _SAFE_NAME.fullmatch(name) or not path.is_file():
            if name == BUNDLE_NAME:
                return web.Response(status=404, text=NOT_BUILT)
            return web.Response(status=404, text="No such widget file.\n")
        return web.FileResponse(path, headers={
            "Content-Type": _TYPES.get(path.suffix, "application/octet-stream"),
            "Cache-Control": "no-cache",  # a new build must reach residents at once
        })

    async def demo_page(request: web.Request) -> web.StreamResponse:
        if not demo.is_file():
            return web.Response(status=404, text="The demo page (widget/demo/index.html) is missing.\n")
        return web.FileResponse(demo, headers={"Content-Type": "text/html; charset=utf-8",
                                               "Cache-Control": "no-cache"})

    async def index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/demo")

    app.router.add_get("/widget/{name}", widget_file)
    app.router.add_get("/demo", demo_page)
    app.router.add_get("/", index)
