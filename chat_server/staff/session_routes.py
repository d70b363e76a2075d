"""The session endpoints of staff pages (JSON and redirects, no HTML of their own).

    POST /logout, POST /logout/everywhere
    GET /session                         the deadlines (JSON; not activity)
    POST /session/touch                  "I am still here" (the idle warning's button)
    POST /session/reauth                 the second factor again, before a sensitive action

A refused re-authentication raises its error (``SecondFactorFailed``,
``SignInThrottled``); ``errors_http.error_middleware`` answers it.
"""

from __future__ import annotations

from aiohttp import web

from ..context import server_of
from .csrf import staff_page_headers
from .sessions import Staff
from .web import address_of, cookie_name, current_staff, pending_sign_in, require_staff, see_other, staff_auth


async def _ended(request: web.Request, session_ids: list[int]) -> None:
    """Close the open consoles of ended sessions (this process's and, over Redis, the others')."""
    counsellor = server_of(request).counsellor
    if counsellor is not None:
        for session_id in session_ids:
            await counsellor.session_ended(session_id)


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: ends this session (or the pending sign-in) here and on every open console of it."""
    auth = staff_auth(request)
    staff = await current_staff(request)
    if staff is not None:
        await auth.sign_out(staff)
        await _ended(request, [staff.session_id])
    else:
        pending = await pending_sign_in(request)
        if pending is None:
            raise web.HTTPUnauthorized(text='{"error": "not_signed_in"}', content_type="application/json")
        await auth.end_pending(pending)
    response = see_other("/login?signed_out=1")
    response.del_cookie(cookie_name(request), path="/")
    return staff_page_headers(response)


@require_staff()
async def logout_everywhere(request: web.Request) -> web.StreamResponse:
    """POST /logout/everywhere: ends every session of this account, on every device."""
    staff: Staff = request["staff"]
    await _ended(request, await staff_auth(request).sign_out_everywhere(staff))
    response = see_other("/login?signed_out_everywhere=1")
    response.del_cookie(cookie_name(request), path="/")
    return staff_page_headers(response)


@require_staff()
async def session_status(request: web.Request) -> web.StreamResponse:
    """GET /session: how long this sign-in has left (the idle warning asks; not activity)."""
    return staff_page_headers(web.json_response(staff_auth(request).deadlines(request["staff"])))


@require_staff()
async def session_touch(request: web.Request) -> web.StreamResponse:
    """POST /session/touch: the user is here ("stay signed in", or typing in the console)."""
    auth = staff_auth(request)
    staff = await auth.touch(request["staff"], force=True)
    return staff_page_headers(web.json_response(auth.deadlines(staff)))


@require_staff()
async def session_reauth(request: web.Request) -> web.StreamResponse:
    """POST /session/reauth {"code"}: the second factor again; then sensitive actions are open
    for POLKU_STAFF_REAUTH_MINUTES."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) and isinstance(body.get("code"), str) else ""
    auth = staff_auth(request)
    staff = await auth.reauthenticate(request["staff"], code[:64], address_of(request))
    return staff_page_headers(web.json_response(auth.deadlines(staff)))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/logout", logout)
    app.router.add_post("/logout/everywhere", logout_everywhere)
    app.router.add_get("/session", session_status)
    app.router.add_post("/session/touch", session_touch)
    app.router.add_post("/session/reauth", session_reauth)
