"""What a staff page's HTTP handler uses: who is signed in (``current_staff``,
``require_staff``, ``require_recent_auth``), the session cookie, the
interface language (``ui_language``) and where to go after signing in
(``safe_next``).

The session cookie is HttpOnly, SameSite=Strict and without Max-Age or
Expires (gone with the browser); Secure and named ``__Host-…`` whenever the
request came over https (``POLKU_PUBLIC_URL``, or X-Forwarded-Proto from a
proxy of ``POLKU_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Awaitable, Callable, Mapping
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.settings import Settings
from bot.types import LANGUAGES

from .. import i18n
from ..context import server_of
from ..ratelimit import _is_trusted, client_address
from ..store.staff_models import ROLES
from .service import StaffAuth
from .sessions import PendingSignIn, Staff

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "console"

COOKIE_NAME = "polku_staff"
SECURE_COOKIE_NAME = "__Host-polku_staff"  # the browser enforces Secure, Path=/ and no Domain
LANGUAGE_COOKIE = "polku_ui_lang"
LANGUAGE_COOKIE_MAX_AGE_SECS = 365 * 24 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Each language's name in its own words (the language links of staff pages).
LANGUAGE_NAMES: dict[str, str] = {lang: texts["language_name"] for lang, texts in i18n.section("sign_in").items()}

_STAFF_KEY: "web.RequestKey[Staff | None]" = web.RequestKey("polku_staff_lookup", object)
_PENDING_KEY: "web.RequestKey[PendingSignIn | None]" = web.RequestKey("polku_pending_lookup", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def staff_auth(request: web.Request) -> StaffAuth:
    """The staff service of the request's server."""
    return server_of(request).auth


# --- https and cookies --------------------------------------------------------------------


def request_is_https(request: web.Request) -> bool:
    """Whether the browser reached us over https: our own TLS, or a proxy of
    POLKU_TRUSTED_PROXIES that says so in X-Forwarded-Proto (anyone else's header is ignored)."""
    if request.secure:
        return True
    trusted = server_of(request).trusted_proxies
    if trusted and _is_trusted(request.remote or "", trusted):
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def secure_cookies(settings_or_request: Settings | web.Request) -> bool:
    """Secure cookies: always when POLKU_PUBLIC_URL is https; for a request, also when it came over https."""
    if isinstance(settings_or_request, web.Request):
        return secure_cookies(server_of(settings_or_request).settings) or request_is_https(settings_or_request)
    return (settings_or_request.public_url or "").lower().startswith("https://")


def cookie_name(settings_or_request: Settings | web.Request) -> str:
    return SECURE_COOKIE_NAME if secure_cookies(settings_or_request) else COOKIE_NAME


def session_cookie_token(cookies: Mapping[str, str]) -> str | None:
    """The session token of a request's cookies (the __Host- one first: it can only come over https)."""
    return cookies.get(SECURE_COOKIE_NAME) or cookies.get(COOKIE_NAME)


def set_session_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    """A session cookie: no Max-Age or Expires, so it ends with the browser."""
    response.set_cookie(name, value, path="/", httponly=True, samesite="Strict", secure=secure_cookies(request))


def set_language_cookie(response: web.StreamResponse, request: web.Request, lang: str) -> None:
    """The staff member's interface language, remembered for a year."""
    response.set_cookie(LANGUAGE_COOKIE, lang, max_age=LANGUAGE_COOKIE_MAX_AGE_SECS, path="/", httponly=True,
                        samesite="Strict", secure=secure_cookies(request))


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def address_of(request: web.Request) -> str:
    """The browser's address (behind a trusted proxy, the address it names)."""
    return client_address(request.remote, request.headers, server_of(request).trusted_proxies)


# --- who is signed in -----------------------------------------------------------------------


async def current_staff(request: web.Request) -> Staff | None:
    """The signed-in staff member of the request, looked up once per request."""
    if _STAFF_KEY not in request:
        request[_STAFF_KEY] = await staff_auth(request).session(session_cookie_token(request.cookies))
    return request[_STAFF_KEY]


async def pending_sign_in(request: web.Request) -> PendingSignIn | None:
    """The request's sign-in that waits for its second factor, looked up once per request
    (the CSRF check and the handler both need it)."""
    if _PENDING_KEY not in request:
        request[_PENDING_KEY] = await staff_auth(request).pending(session_cookie_token(request.cookies))
    return request[_PENDING_KEY]


def signed_in_staff(request: web.Request) -> Staff | None:
    """The staff member ``require_staff`` (or the sign-in) found for this request, if any."""
    return request.get("staff") or request.get(_STAFF_KEY)


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def is_user_activity(request: web.Request) -> bool:
    """Whether a request is the user's doing, which restarts the idle timeout: opening a
    page, or any change. Reads of JSON (a page polling for progress) are not."""
    return request.method not in SAFE_METHODS or _wants_html(request)


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
                staff = await staff_auth(request).touch(staff)
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
        if not staff_auth(request).recently_authenticated(staff):
            raise web.HTTPUnauthorized(text='{"error": "reauth_required"}', content_type="application/json")
        return await handler(request)
    return guarded


# --- the interface language of staff pages, and where to go after signing in -----------


def ui_language(request: web.Request, default: str = LANGUAGES[0]) -> str:
    """A language of LANGUAGES: ?lang=, else the staff language cookie, else Accept-Language,
    else the default."""
    asked = request.query.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if asked in LANGUAGES:
        return asked
    return (i18n.accept_language(request.headers.get("Accept-Language", ""))
            or (default if default in LANGUAGES else LANGUAGES[0]))


def safe_next(value: str | None) -> str:
    """Where to go after signing in: only a path of this site (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/console"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/console"
    return value
