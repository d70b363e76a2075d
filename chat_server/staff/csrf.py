"""CSRF and the security headers: two aiohttp middlewares, one place each.

- CSRF: every POST/PUT/PATCH/DELETE must carry the session's synchronizer
  token (header ``X-CSRF-Token`` or form field ``csrf_token``); the sign-in
  form itself uses a double-submit cookie, the second-factor pages the
  pending sign-in's token. ``csrf_middleware`` checks them all;
  ``@csrf_exempt`` opts a handler out.
- Headers: every answer gets nosniff, a referrer policy and a CSP (HSTS when
  it went over https: ``security_headers_middleware``); staff pages
  (``staff_page_headers``) also no caching, no framing, only our own styles.
  Every header and value is in ``_HEADERS`` below.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from bot.settings import Settings

from .web import (
    SAFE_METHODS, Handler, current_staff, pending_sign_in, request_is_https, secure_cookies, signed_in_staff,
)

log = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "polku_login_csrf"
LOGIN_CSRF_COOKIE_SECURE = "__Host-polku_login_csrf"
# Engine.IO's long-polling POSTs carry its own unguessable sid; the counsellor
# namespace authenticates its connect from the session cookie.
CSRF_EXEMPT_PREFIXES = ("/socket.io/",)
PENDING_PATHS = ("/login/second-factor", "/login/enrol")


def csrf_exempt(handler: Handler) -> Handler:
    """Let a state-changing handler through without a CSRF token (it must defend itself)."""
    handler.csrf_exempt = True  # type: ignore[attr-defined]
    return handler


def login_csrf_cookie(settings_or_request: Settings | web.Request) -> str:
    return LOGIN_CSRF_COOKIE_SECURE if secure_cookies(settings_or_request) else LOGIN_CSRF_COOKIE


def csrf_token(request: web.Request) -> str:
    """The token a page must send back with its state-changing requests.

    Needs a request that went through ``require_staff`` (or the sign-in page's own)."""
    staff = signed_in_staff(request)
    if staff is None:
        raise RuntimeError("csrf_token(request) needs a signed-in request (use @require_staff)")
    return staff.csrf


async def _given_csrf(request: web.Request) -> str:
    given = request.headers.get(CSRF_HEADER)
    if given:
        return given
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # cached: the handler reads it again for free
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def check_csrf(request: web.Request) -> None:
    """Raise 403 unless the request carries the CSRF token it must.

    The sign-in form: the double-submit cookie set with the form. The
    second-factor pages: the pending session's token. Everything else: the
    signed-in session's synchronizer token."""
    if request.path == "/login":
        expected = request.cookies.get(LOGIN_CSRF_COOKIE_SECURE) or request.cookies.get(LOGIN_CSRF_COOKIE)
    else:
        staff = None if request.path in PENDING_PATHS else await current_staff(request)
        expected = staff.csrf if staff is not None else None
        if staff is None and request.path in (*PENDING_PATHS, "/logout"):
            pending = await pending_sign_in(request)
            expected = pending.csrf if pending is not None else None
    given = await _given_csrf(request)
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        log.info("CSRF check failed: %s %s", request.method, request.path)
        raise web.HTTPForbidden(text='{"error": "csrf"}', content_type="application/json")


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method not in SAFE_METHODS and not request.path.startswith(CSRF_EXEMPT_PREFIXES)
            and not getattr(handler, "csrf_exempt", False)):
        await check_csrf(request)
    return await handler(request)


# --- security headers ---------------------------------------------------------------------

_OWN = ("default-src 'self'; img-src 'self' data:; {style}; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
# Staff pages: only our own scripts and styles.
STAFF_CSP = _OWN.format(style="style-src 'self'")
# Every other answer (the demo page, JSON, the widget's files): our own scripts, inline styles allowed.
DEFAULT_CSP = _OWN.format(style="style-src 'self' 'unsafe-inline'")
HSTS = "max-age=31536000; includeSubDomains"

_HEADERS: dict[str, dict[str, str]] = {
    # every answer (set unless the handler set its own)
    "any": {"Content-Security-Policy": DEFAULT_CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin"},
    # staff pages and their JSON, besides: no caching, no framing, the stricter CSP
    "staff": {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": STAFF_CSP},
    # answers that went over https
    "https": {"Strict-Transport-Security": HSTS},
}


def _set(response: web.StreamResponse, kind: str) -> None:
    for name, value in _HEADERS[kind].items():
        response.headers.setdefault(name, value)


def staff_page_headers(response: web.StreamResponse) -> web.StreamResponse:
    """Headers every staff page gets: no caching, no framing, only our own scripts."""
    _set(response, "staff")
    return response


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HSTS on every answer that went over https; a CSP and nosniff on every answer."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _headers_of_any(request, exc)
        raise
    _headers_of_any(request, response)
    return response


def _headers_of_any(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    if request_is_https(request):
        _set(response, "https")
    _set(response, "any")
