"""HTTP of the counsellor console and the audit log.

- ``GET /console``: the console page (counsellors and admins), vanilla JS and
  CSS from ``static/console/``, no build step; it talks to the
  ``/counsellor`` Socket.IO namespace (``channel.py``).
- ``GET /console/static/<file>``: its assets, and the Socket.IO client from
  ``widget/node_modules`` (installed by ``./polku``).
- ``GET /api/console/conversations/<id>``: a transcript as JSON, under the
  same rule as the console (queued, assigned to you, or handled by you), and
  audited.
- ``GET /api/admin/audit`` (JSON) and ``GET /admin/audit`` (a page): the
  audit log, for admins.
"""

from __future__ import annotations

import html
import json
import re
import string
from typing import Any

from aiohttp import web

from bot.settings import PROJECT_ROOT
from bot.types import LANGUAGES

from .. import i18n
from ..context import ServerContext, server_of
from ..numbers import parse_id
from ..staff.csrf import csrf_token, staff_page_headers
from ..staff.sessions import Staff
from ..staff.web import LANGUAGE_NAMES, STATIC_DIR, require_staff, secure_cookies, ui_language
from .service import CounsellorService

SOCKET_IO_CLIENT = PROJECT_ROOT / "widget" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\.(css|js)")
_TYPES = {".js": "text/javascript", ".css": "text/css"}
AUDIT_PAGE_LIMIT = 200
AUDIT_API_MAX_LIMIT = 1000

# Every text of the console, per language. The page's skeleton is rendered from
# these; the script gets them as JSON (so one list, one place to translate).
CONSOLE_TEXTS: dict[str, dict[str, str]] = i18n.section("console")

AUDIT_TEXTS: dict[str, dict[str, str]] = i18n.section("audit")


def _server(request: web.Request) -> ServerContext:
    return server_of(request)


def _service(request: web.Request) -> CounsellorService:
    return server_of(request).counsellor.service


def _render(name: str, **values: str) -> str:
    return string.Template((STATIC_DIR / name).read_text(encoding="utf-8")).substitute(**values)


def _language_links(path: str, lang: str) -> str:
    links = []
    for code in LANGUAGES:
        current = ' aria-current="true"' if code == lang else ""
        links.append(f'<a href="{path}?lang={code}" lang="{code}"{current}>{LANGUAGE_NAMES[code]}</a>')
    return " ".join(links)


def _script_json(value: Any) -> str:
    """JSON for a <script type="application/json"> block: nothing in it can end the element."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _html(text: str, lang: str | None = None, *, secure: bool = False) -> web.Response:
    response = web.Response(text=text, content_type="text/html", charset="utf-8")
    if lang is not None and lang in LANGUAGES:
        # The language picked here is kept for the sign-in page and the other staff pages.
        response.set_cookie("polku_ui_lang", lang, max_age=365 * 24 * 3600, path="/", httponly=True,
                            samesite="Strict", secure=secure)
    return staff_page_headers(response)


@require_staff("counsellor")
async def console_page(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    staff: Staff = request["staff"]
    lang = ui_language(request, server.settings.default_language)
    t = CONSOLE_TEXTS[lang]
    e = html.escape
    admin_links = ""
    if staff.is_admin:
        admin_links = (f'<a class="topbar__link" href="/admin">{e(t["admin"])}</a>'
                       f'<a class="topbar__link" href="/admin/audit">{e(t["audit"])}</a>')
    body = _render(
        "console.html", lang=lang, title=e(t["title"]), app_name=e(t["app_name"]), heading=e(t["heading"]),
        skip=e(t["skip"]), csrf=e(csrf_token(request)), sign_out=e(t["sign_out"]),
        user=e(staff.display_name), role=e(t["role_" + staff.role]), admin_links=admin_links,
        language_label=e(t["language"]), languages=_language_links("/console", lang),
        texts=_script_json(t), **{k: e(v) for k, v in t.items() if k in _SKELETON_KEYS})
    return _html(body, lang if "lang" in request.query else None, secure=secure_cookies(server.settings))


_SKELETON_KEYS = frozenset({
    "sidebar", "queue", "queue_empty", "mine", "mine_empty", "callbacks", "callbacks_empty", "no_chat",
    "closures", "closures_empty",
    "transcript", "send", "message_label", "message_hint", "snippets", "snippet_choose", "snippet_insert",
    "notes", "notes_hint", "notes_empty", "note_label", "note_save", "close_heading", "close_intro", "tags",
    "other_label", "close_confirm", "cancel", "pick_up", "put_back", "close", "connected",
})


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "socket.io.min.js":
        if not SOCKET_IO_CLIENT.is_file():
            return web.Response(status=404, text="socket.io-client is not installed: run ./polku start "
                                                 "(or `npm ci` in widget/).\n")
        path = SOCKET_IO_CLIENT
    else:
        path = STATIC_DIR / name
        if not _SAFE_NAME.fullmatch(name) or not path.is_file():
            return web.Response(status=404, text="No such file.\n")
    return web.FileResponse(path, headers={"Content-Type": _TYPES[path.suffix] + "; charset=utf-8",
                                           "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@require_staff("counsellor")
async def conversation_json(request: web.Request) -> web.StreamResponse:
    """A transcript, as the console's open request gives it (same rule, same audit)."""
    service = _service(request)
    staff: Staff = request["staff"]
    try:
        conversation_id = parse_id(request.match_info["id"])
        if conversation_id is None:
            return web.json_response({"error": "bad_request", "detail": "the conversation id must be a number (digits 0-9)"},
                                     status=400, headers={"Cache-Control": "no-store"})
        conversation, until = await service.do_view(staff, conversation_id)
    except ValueError:
        raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json") from None
    body = await service.transcript(conversation, until)
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _int_query(request: web.Request, name: str, default: int | None = None,
               maximum: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    value = parse_id(raw)
    if value is None:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} is not a number (digits 0-9)"}}',
                                 content_type="application/json")
    if value <= 0:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be positive"}}', content_type="application/json")
    return min(value, maximum) if maximum else value


async def _audit_records(request: web.Request, default_limit: int) -> list[dict[str, Any]]:
    server = _server(request)
    action = request.query.get("action") or None
    return await server.auth.audit_records(
        limit=_int_query(request, "limit", default_limit, AUDIT_API_MAX_LIMIT),
        before_id=_int_query(request, "before_id"), staff_id=_int_query(request, "staff_id"),
        conversation_id=_int_query(request, "conversation_id"), action=action[:64] if action else None)


@require_staff("admin")
async def audit_json(request: web.Request) -> web.StreamResponse:
    """GET /api/admin/audit?limit=&before_id=&staff_id=&conversation_id=&action= (newest first)."""
    records = await _audit_records(request, 100)
    await _server(request).auth.audit(request["staff"], "view_audit", None)
    return web.json_response({"records": records}, headers={"Cache-Control": "no-store"})


@require_staff("admin")
async def audit_page(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    lang = ui_language(request, server.settings.default_language)
    t = AUDIT_TEXTS[lang]
    e = html.escape
    records = await _audit_records(request, AUDIT_PAGE_LIMIT)
    await server.auth.audit(request["staff"], "view_audit", None)
    rows = []
    for r in records:
        who = e(f'{r["display_name"]} ({r["username"]})') if r["username"] else e(t["system"])
        conversation = str(r["conversation_id"]) if r["conversation_id"] is not None else ""
        rows.append(f'<tr><td><time datetime="{e(r["at"])}">{e(r["at"][:19].replace("T", " "))}</time></td>'
                    f'<td>{who}</td><td>{e(r["action"])}</td><td>{e(conversation)}</td>'
                    f'<td>{e(r["detail"])}</td></tr>')
    older = ""
    if len(records) == AUDIT_PAGE_LIMIT:
        older = f'<p><a href="/admin/audit?before_id={records[-1]["id"]}">{e(t["older"])}</a></p>'
    table = (f'<table class="audit"><caption class="visually-hidden">{e(t["heading"])}</caption>'
             f'<thead><tr><th scope="col">{e(t["time"])}</th><th scope="col">{e(t["who"])}</th>'
             f'<th scope="col">{e(t["action"])}</th><th scope="col">{e(t["conversation"])}</th>'
             f'<th scope="col">{e(t["detail"])}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
             if rows else f'<p>{e(t["empty"])}</p>')
    body = _render("audit.html", lang=lang, title=e(t["title"]), heading=e(t["heading"]), intro=e(t["intro"]),
                   back=e(t["back"]), console=e(t["console"]), table=table + older,
                   languages=_language_links("/admin/audit", lang))
    return _html(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/static/{name}", static_file)
    app.router.add_get("/api/console/conversations/{id}", conversation_json)
    app.router.add_get("/api/admin/audit", audit_json)
    app.router.add_get("/admin/audit", audit_page)
