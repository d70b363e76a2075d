"""HTTP of the admin pages: the page itself (/admin) and its JSON API
(/admin/api/...). Admins only; every state-changing request carries the
CSRF token (checked by auth's middleware). The error family
(``chat_server.errors``) is turned into JSON by the one HTTP translation,
``chat_server/errors_http.py``: {"error": code, "detail": ..., "problems": [...], "message": {...}}.
"""

from __future__ import annotations

import html
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from ..context import ADMIN_KEY
from ..errors import AdminError, InboxError
from ..staff.audit import audit
from ..staff.csrf import csrf_token, staff_page_headers
from ..staff.web import require_recent_auth, require_staff, set_language_cookie, ui_language
from ..numbers import parse_id
from .changes import StaffRef
from .content_page import content_view
from .statistics import MEASURES, to_csv

if TYPE_CHECKING:
    from . import Admin

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "admin"
_STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,60}\.(js|css|svg)")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
MAX_JSON_BYTES = 256 * 1024
DEFAULT_REPORT_DAYS = 30

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _admin(request: web.Request) -> "Admin":
    return request.app[ADMIN_KEY]  # type: ignore[return-value]  # setup() stores an Admin


def _json(body: Any, status: int = 200) -> web.Response:
    return staff_page_headers(web.json_response(body, status=status, dumps=lambda o: json.dumps(
        o, ensure_ascii=False, default=str)))


def admin_api(handler: Handler) -> Handler:
    return require_staff("admin")(handler)


def sensitive_admin_api(handler: Handler) -> Handler:
    """An admin action that needs the second factor again if it was not given lately
    (exporting or deleting a conversation, activating a model)."""
    return require_staff("admin")(require_recent_auth(handler))


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON_BYTES, actual_size=request.content_length)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "bad_json"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "bad_json"}', content_type="application/json")
    return body


def _int(value: str, name: str = "id") -> int:
    """An id from the URL: ASCII digits only ("²".isdigit() is true, int("²") fails)."""
    number = parse_id(value)
    if number is None:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_request", "detail": f"the {name} id must be a number (digits 0-9)"}),
            content_type="application/json")
    return number


def _staff(request: web.Request) -> StaffRef:
    return StaffRef.of(request["staff"])


# --- the page ---------------------------------------------------------------------------


@require_staff("admin")
async def page(request: web.Request) -> web.StreamResponse:
    staff = request["staff"]
    lang = ui_language(request, _admin(request).server.settings.default_language)
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    body = (template.replace("{{lang}}", lang)
            .replace("{{csrf}}", html.escape(csrf_token(request)))
            .replace("{{display_name}}", html.escape(staff.display_name)))
    response = web.Response(text=body, content_type="text/html", charset="utf-8")
    if request.query.get("lang") == lang:  # chosen on the page: remembered as the sign-in page does
        set_language_cookie(response, request, lang)
    return staff_page_headers(response)


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC_DIR / name
    if not _STATIC_NAME.fullmatch(name) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": _TYPES[path.suffix], "Cache-Control": "no-cache",
                                           "X-Content-Type-Options": "nosniff"})


# --- content ------------------------------------------------------------------------------


@admin_api
async def content_get(request: web.Request) -> web.Response:
    admin = _admin(request)
    # An admin editing the training data will likely retrain next.
    await admin.training.prewarm_unless_running()
    data = await admin.content.data()
    return _json(content_view(data, await admin.content.version()))


@admin_api
async def change_post(request: web.Request) -> web.Response:
    admin = _admin(request)
    change = await admin.content.submit(await _body(request), _staff(request))
    if change:
        await audit(admin.server, request["staff"], "content_changed", None,
                    f"change {change['id']}: {change['kind']} {change['target']}")
    return _json({"change": change})


@admin_api
async def changes_get(request: web.Request) -> web.Response:
    before = request.query.get("before")
    before_id = parse_id(before) if before else None
    if before and before_id is None:
        raise AdminError("before must be a change id (digits 0-9)")
    rows = await _admin(request).content.history(before_id=before_id)
    return _json({"changes": rows})


@admin_api
async def undo_post(request: web.Request) -> web.Response:
    admin = _admin(request)
    change_id = _int(request.match_info["id"], "change")
    change = await admin.content.undo(change_id, _staff(request))
    await audit(admin.server, request["staff"], "content_change_undone", None,
                f"change {change_id} undone by change {change['id']}")
    return _json({"change": change})


# --- training and models ---------------------------------------------------------------------


@admin_api
async def training_get(request: web.Request) -> web.Response:
    training = _admin(request).training
    run = await training.latest()
    if run is None or run["status"] != "running":
        training.prewarm()
    return _json({"run": run})


@admin_api
async def training_post(request: web.Request) -> web.Response:
    admin = _admin(request)
    run = await admin.training.start(_staff(request))
    await audit(admin.server, request["staff"], "training_started", None, f"run {run['id']}")
    return _json({"run": run}, 202)


@admin_api
async def models_get(request: web.Request) -> web.Response:
    return _json(await _admin(request).models.listing())


@sensitive_admin_api
async def activate_post(request: web.Request) -> web.Response:
    admin = _admin(request)
    name = request.match_info["name"]
    result = await admin.models.activate(name, _staff(request))
    await audit(admin.server, request["staff"], "model_activated", None,
                f"{name} (was {result['previous']}); swap {result['swap_secs']} s")
    return _json(result)


# --- inbox -------------------------------------------------------------------------------------


@admin_api
async def inbox_get(request: web.Request) -> web.Response:
    admin = _admin(request)
    groups = await admin.inbox.groups()
    # Resident texts were read: in the audit log like the opening of a conversation.
    await audit(admin.server, request["staff"], "view_inbox", None, f"{groups.get('total', '')} messages".strip())
    return _json(groups)


@admin_api
async def inbox_assign(request: web.Request) -> web.Response:
    body = await _body(request)
    intent = body.get("intent")
    if not isinstance(intent, str):
        raise InboxError("intent is needed")
    texts = body.get("texts") if isinstance(body.get("texts"), dict) else {}
    return _json(await _admin(request).inbox.assign(body.get("message_ids"), intent, texts, _staff(request)))


@admin_api
async def inbox_dismiss(request: web.Request) -> web.Response:
    body = await _body(request)
    return _json(await _admin(request).inbox.dismiss(body.get("message_ids"), _staff(request)))


@admin_api
async def inbox_restore(request: web.Request) -> web.Response:
    body = await _body(request)
    return _json(await _admin(request).inbox.restore(body.get("message_ids")))


# --- statistics --------------------------------------------------------------------------------


def _period(request: web.Request) -> tuple[date, date]:
    today = datetime.now(_admin(request).statistics.tz).date()
    try:
        last = date.fromisoformat(request.query["to"]) if request.query.get("to") else today
        first = (date.fromisoformat(request.query["from"]) if request.query.get("from")
                 else last - timedelta(days=DEFAULT_REPORT_DAYS - 1))
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "dates are YYYY-MM-DD"}', content_type="application/json") from None
    return first, last


@admin_api
async def stats_get(request: web.Request) -> web.Response:
    first, last = _period(request)
    return _json(await _admin(request).statistics.report(first, last))


@admin_api
async def stats_csv(request: web.Request) -> web.StreamResponse:
    measure = request.match_info["measure"]
    if measure not in MEASURES:
        raise web.HTTPNotFound(text='{"error": "no such measure"}', content_type="application/json")
    first, last = _period(request)
    report = await _admin(request).statistics.report(first, last)
    name = f"polku-{measure}-{report['from']}-{report['to']}.csv"
    response = web.Response(text=to_csv(report, measure), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return staff_page_headers(response)


# --- retention -----------------------------------------------------------------------------------


@admin_api
async def retention_get(request: web.Request) -> web.Response:
    return _json(await _admin(request).retention.status())


@admin_api
async def retention_run(request: web.Request) -> web.Response:
    admin = _admin(request)
    deleted = await admin.retention.run_now()
    await audit(admin.server, request["staff"], "retention_run", None, f"{deleted} conversations deleted")
    return _json({"deleted": deleted, **await admin.retention.status()})


@sensitive_admin_api
async def conversation_export(request: web.Request) -> web.StreamResponse:
    admin = _admin(request)
    conversation_id = _int(request.match_info["id"], "conversation")
    data = await admin.retention.export(conversation_id)
    await audit(admin.server, request["staff"], "conversation_exported", conversation_id, "")
    response = web.Response(
        text=json.dumps(data, ensure_ascii=False, indent=1, default=str), content_type="application/json",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="polku-conversation-{conversation_id}.json"'})
    return staff_page_headers(response)


@sensitive_admin_api
async def conversation_delete(request: web.Request) -> web.Response:
    admin = _admin(request)
    conversation_id = _int(request.match_info["id"], "conversation")
    await admin.retention.delete_one(conversation_id)
    await audit(admin.server, request["staff"], "conversation_deleted", conversation_id, "on request")
    return _json({"deleted": conversation_id})


@admin_api
async def change_keep(request: web.Request) -> web.Response:
    """POST /admin/api/changes/{id}/keep {"reason"}: keep an example from the inbox after its
    conversation is deleted (an explicit decision, recorded and audited)."""
    admin = _admin(request)
    change_id = _int(request.match_info["id"], "change")
    body = await _body(request)
    await admin.retention.keep_example(change_id, _staff(request), body.get("reason", ""))
    await audit(admin.server, request["staff"], "example_kept", None, f"change {change_id}")
    return _json({"kept": change_id})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin", page)
    r.add_get("/admin/static/{name}", static_file)
    r.add_get("/admin/api/content", content_get)
    r.add_get("/admin/api/changes", changes_get)
    r.add_post("/admin/api/changes", change_post)
    r.add_post("/admin/api/changes/{id}/undo", undo_post)
    r.add_get("/admin/api/training", training_get)
    r.add_post("/admin/api/training", training_post)
    r.add_get("/admin/api/models", models_get)
    r.add_post("/admin/api/models/{name}/activate", activate_post)
    r.add_get("/admin/api/inbox", inbox_get)
    r.add_post("/admin/api/changes/{id}/keep", change_keep)
    r.add_post("/admin/api/inbox/assign", inbox_assign)
    r.add_post("/admin/api/inbox/dismiss", inbox_dismiss)
    r.add_post("/admin/api/inbox/restore", inbox_restore)
    r.add_get("/admin/api/stats", stats_get)
    r.add_get("/admin/api/stats/{measure}.csv", stats_csv)
    r.add_get("/admin/api/retention", retention_get)
    r.add_post("/admin/api/retention/run", retention_run)
    r.add_get("/admin/api/conversations/{id}/export", conversation_export)
    r.add_delete("/admin/api/conversations/{id}", conversation_delete)
