"""Staff sign-in: counsellors and admins, their sessions, CSRF and the audit log.

- Local accounts: an argon2id password (checked off the event loop), then a
  second factor, TOTP or a recovery code (``staff/totp.py``), enrolled at the
  first sign-in. Single sign-on accounts: OpenID Connect (``staff/oidc.py``).
  ``POLKU_LOCAL_ACCOUNTS=0`` leaves only single sign-on.
- A sign-in is a server-side ``staff_sessions`` row; the browser holds its
  token in an HttpOnly, SameSite=Strict session cookie without Max-Age or
  Expires (gone with the browser), Secure and named ``__Host-…`` whenever the
  request came over https (``POLKU_PUBLIC_URL``, or X-Forwarded-Proto from a
  proxy of ``POLKU_TRUSTED_PROXIES``). Only the token's SHA-256 is stored. The
  password step makes a short "pending" session that opens only the
  second-factor pages; the second factor replaces it with a new one (new
  token). A session ends after ``POLKU_STAFF_IDLE_MINUTES`` without the user
  doing anything, after ``POLKU_STAFF_SESSION_HOURS`` in any case, at sign-out,
  and at "sign out everywhere". The most sensitive admin actions need the
  second factor again within ``POLKU_STAFF_REAUTH_MINUTES``
  (``require_recent_auth``).
- CSRF: every POST/PUT/PATCH/DELETE must carry the session's synchronizer
  token (header ``X-CSRF-Token`` or form field ``csrf_token``); the sign-in
  form itself uses a double-submit cookie. ``csrf_middleware`` checks them
  all, in one place; ``@csrf_exempt`` opts a handler out.
- Guessing: growing delays per account and address (``staff/throttle.py``),
  never a lock; every failed sign-in is audited and logged, without what was
  typed.

For other modules (the console, the admin pages): ``require_staff(role)``,
``request["staff"]`` (a ``Staff``), ``check_csrf``, ``csrf_token``, ``audit``.

This module holds the request side (cookies, guards, CSRF, headers) and
re-exports the rest: ``staff/core.py`` (errors, ``Staff``, input checks),
``staff/accounts.py`` (``StaffAuth``), ``staff/totp.py``, ``staff/throttle.py``,
``staff/pages.py`` (the sign-in pages), ``staff/oidc.py`` (single sign-on).
"""

from __future__ import annotations

import functools
import hmac
import logging
import warnings
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from .context import SERVER_KEY
from .ratelimit import _is_trusted, client_address  # noqa: F401  (client_address: for the pages)
from .staff.accounts import PENDING_MINUTES, TOUCH_EVERY_SECS, PendingSignIn, StaffAuth  # noqa: F401
from .staff.core import (  # re-exported: callers import them from here
    AuthError, COOKIE_NAME, CSRF_EXEMPT_PREFIXES, CSRF_FIELD, CSRF_HEADER, CSRF_TOKEN_BYTES,
    DISPLAY_NAME_MAX_CHARS, InvalidStaffInput, LOGIN_CSRF_COOKIE, LOGIN_CSRF_COOKIE_SECURE,
    LOGIN_CSRF_MAX_AGE_SECS, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, ROLES, SAFE_METHODS, SECURE_COOKIE_NAME,
    SESSION_TOKEN_BYTES, STATIC_DIR, SecondFactorFailed, SignInFailed, SignInThrottled, Staff, UI_LANGUAGES,
    USERNAME_RE, add_audit, check_display_name, check_password, check_role, check_username, hash_token,
    _audit_row,
)  # noqa: F401

log = logging.getLogger(__name__)

_STAFF_KEY: "web.RequestKey[Staff | None]" = web.RequestKey("polku_staff_lookup", object)


async def audit(app_or_server: Any, staff: Staff | None, action: str, conversation_id: int | None,
                detail: str = "") -> None:
    """Write an audit record: who (``staff``), what (``action``), which conversation, now."""
    await _server(app_or_server).auth.audit(staff, action, conversation_id, detail)


# --- request helpers ---------------------------------------------------------------


def _server(app_or_server: Any) -> Any:
    if isinstance(app_or_server, web.Application):
        return app_or_server[SERVER_KEY]
    if isinstance(app_or_server, web.Request):
        return app_or_server.app[SERVER_KEY]
    return app_or_server


def request_is_https(request: web.Request) -> bool:
    """Whether the browser reached us over https: our own TLS, or a proxy of
    POLKU_TRUSTED_PROXIES that says so in X-Forwarded-Proto (anyone else's header is ignored)."""
    if request.secure:
        return True
    server = _server(request)
    trusted = getattr(server, "trusted_proxies", ())
    if trusted and _is_trusted(request.remote or "", trusted):
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def secure_cookies(settings_or_request: Any) -> bool:
    """Secure cookies: always when POLKU_PUBLIC_URL is https; for a request, also when it came over https."""
    if isinstance(settings_or_request, web.Request):
        server = _server(settings_or_request)
        return secure_cookies(server.settings) or request_is_https(settings_or_request)
    return (settings_or_request.public_url or "").lower().startswith("https://")


def cookie_name(settings_or_request: Any) -> str:
    return SECURE_COOKIE_NAME if secure_cookies(settings_or_request) else COOKIE_NAME


def session_cookie_token(cookies: Any, settings: Any = None) -> str | None:
    """The session token of a request's cookies (the __Host- one first: it can only come over https)."""
    return cookies.get(SECURE_COOKIE_NAME) or cookies.get(COOKIE_NAME)


async def current_staff(request: web.Request) -> Staff | None:
    """The signed-in staff member of the request, looked up once per request."""
    if _STAFF_KEY not in request:
        server = _server(request)
        request[_STAFF_KEY] = await server.auth.session(session_cookie_token(request.cookies))
    return request[_STAFF_KEY]


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def is_user_activity(request: web.Request) -> bool:
    """Whether a request is the user's doing, which restarts the idle timeout: opening a
    page, or any change. Reads of JSON (a page polling for progress) are not."""
    return request.method not in SAFE_METHODS or _wants_html(request)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_staff(role: str | None = None) -> Callable[[Handler], Handler]:
    """Only signed-in staff (of ``role``: "counsellor" lets admins in too, "admin" only admins).

    Not signed in (or only half: the second factor not given yet): a page
    request is redirected to /login, anything else gets 401. Wrong role: 403.
    The handler finds the user in ``request["staff"]``."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES} or None")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            staff = await current_staff(request)
            if staff is None:
                if _wants_html(request):
                    raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
                raise web.HTTPUnauthorized(text='{"error": "not_signed_in"}', content_type="application/json")
            if not staff.has_role(role):
                raise web.HTTPForbidden(text='{"error": "forbidden"}', content_type="application/json")
            if is_user_activity(request):
                staff = await _server(request).auth.touch(staff)
                request[_STAFF_KEY] = staff
            with warnings.catch_warnings():
                # request["staff"] is the promised interface; aiohttp would rather see a RequestKey.
                warnings.simplefilter("ignore", web.NotAppKeyWarning)
                request["staff"] = staff
            return await handler(request)
        return guarded
    return decorate


def require_recent_auth(handler: Handler) -> Handler:
    """Inside ``require_staff``: the most sensitive actions (export or delete a conversation,
    activate a model) need the second factor again within POLKU_STAFF_REAUTH_MINUTES.
    Otherwise 401 ``{"error": "reauth_required"}``; the page asks for a code
    (POST /session/reauth) and tries again."""
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        staff: Staff = request["staff"]
        if not _server(request).auth.recently_authenticated(staff):
            raise web.HTTPUnauthorized(text='{"error": "reauth_required"}', content_type="application/json")
        return await handler(request)
    return guarded


def csrf_exempt(handler: Handler) -> Handler:
    """Let a state-changing handler through without a CSRF token (it must defend itself)."""
    handler.csrf_exempt = True  # type: ignore[attr-defined]
    return handler


def login_csrf_cookie(settings_or_request: Any) -> str:
    return LOGIN_CSRF_COOKIE_SECURE if secure_cookies(settings_or_request) else LOGIN_CSRF_COOKIE


async def _given_csrf(request: web.Request) -> str:
    given = request.headers.get(CSRF_HEADER)
    if given:
        return given
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # cached: the handler reads it again for free
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


PENDING_PATHS = ("/login/second-factor", "/login/enrol")


async def check_csrf(request: web.Request) -> None:
    """Raise 403 unless the request carries the CSRF token it must.

    The sign-in form: the double-submit cookie set with the form. The
    second-factor pages: the pending session's token. Everything else: the
    signed-in session's synchronizer token."""
    server = _server(request)
    if request.path == "/login":
        expected = request.cookies.get(LOGIN_CSRF_COOKIE_SECURE) or request.cookies.get(LOGIN_CSRF_COOKIE)
    else:
        staff = None if request.path in PENDING_PATHS else await current_staff(request)
        expected = staff.csrf if staff is not None else None
        if staff is None and request.path in (*PENDING_PATHS, "/logout"):
            pending = await server.auth.pending(session_cookie_token(request.cookies))
            expected = pending.csrf if pending is not None else None
    given = await _given_csrf(request)
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        log.info("CSRF check failed: %s %s", request.method, request.path)
        raise web.HTTPForbidden(text='{"error": "csrf"}', content_type="application/json")


def csrf_token(request: web.Request) -> str:
    """The token a page must send back with its state-changing requests.

    Needs a request that went through ``require_staff`` (or the sign-in page's own)."""
    staff = request.get("staff") or request.get(_STAFF_KEY)
    if staff is None:
        raise RuntimeError("csrf_token(request) needs a signed-in request (use @require_staff)")
    return staff.csrf


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method not in SAFE_METHODS and not request.path.startswith(CSRF_EXEMPT_PREFIXES)
            and not getattr(handler, "csrf_exempt", False)):
        await check_csrf(request)
    return await handler(request)


STAFF_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
             "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
HSTS = "max-age=31536000; includeSubDomains"


def _security_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", STAFF_CSP)


def staff_page_headers(response: web.StreamResponse) -> web.StreamResponse:
    """Headers every staff page gets: no caching, no framing, only our own scripts."""
    _security_headers(response)
    return response


# The default policy of every other response (the demo page, JSON, the widget's files):
# nothing but our own scripts and connections, no framing of our pages.
DEFAULT_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
               "object-src 'none'")


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
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")


# --- the interface language of staff pages, and where to go after signing in -----------

LANGUAGE_NAMES = {"fi": "Suomi", "sv": "Svenska", "en": "English"}


def ui_language(request: web.Request, default: str = "fi") -> str:
    """fi, sv or en: ?lang=, else the staff language cookie, else Accept-Language, else the default."""
    asked = request.query.get("lang") or request.cookies.get("polku_ui_lang")
    if asked in UI_LANGUAGES:
        return asked
    for part in request.headers.get("Accept-Language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in UI_LANGUAGES:
            return code
    return default if default in UI_LANGUAGES else "fi"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: only a path of this site (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/console"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/console"
    return value


def add_routes(app: web.Application) -> None:
    from .staff import pages

    pages.add_routes(app)
