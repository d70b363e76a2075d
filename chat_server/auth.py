"""Staff sign-in: counsellors and admins, their sessions, CSRF and the audit log.

- Passwords are argon2id hashes (argon2-cffi), checked off the event loop.
- A sign-in is a server-side ``staff_sessions`` row with an expiry; the
  browser holds its token in an HttpOnly, SameSite=Strict cookie (Secure, and
  named ``__Host-…``, when ``POLKU_PUBLIC_URL`` is https). Only the token's
  SHA-256 is stored.
- CSRF: every POST/PUT/PATCH/DELETE must carry the session's synchronizer
  token (header ``X-CSRF-Token`` or form field ``csrf_token``); the sign-in
  form itself uses a double-submit cookie. ``csrf_middleware`` checks them
  all, in one place; ``@csrf_exempt`` opts a handler out.
- Lock-out: ``POLKU_LOGIN_MAX_FAILURES`` failures in a row lock the account
  for ``POLKU_LOGIN_LOCKOUT_SECS``; each address may try
  ``POLKU_LOGIN_RATE_ADDRESS_PER_MIN`` times a minute.

For other modules (the console, the admin pages): ``require_staff(role)``,
``request["staff"]`` (a ``Staff``), ``check_csrf``, ``csrf_token``, ``audit``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import html
import logging
import re
import secrets
import string
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select

from .errors import ChatServerError
from .models import utcnow
from .ratelimit import Counter, _key, client_address
from .staff_models import ROLES, AuditRecord, StaffSession, StaffUser
from .store import Store, Transaction

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static" / "console"

SESSION_TOKEN_BYTES = 32
CSRF_TOKEN_BYTES = 32
COOKIE_NAME = "polku_staff"
SECURE_COOKIE_NAME = "__Host-polku_staff"  # the browser enforces Secure, Path=/ and no Domain
LOGIN_CSRF_COOKIE = "polku_login_csrf"
LOGIN_CSRF_COOKIE_SECURE = "__Host-polku_login_csrf"
LOGIN_CSRF_MAX_AGE_SECS = 2 * 3600
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Engine.IO's long-polling POSTs carry its own unguessable sid; the counsellor
# namespace authenticates its connect from the session cookie.
CSRF_EXEMPT_PREFIXES = ("/socket.io/",)

PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 1024
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
DISPLAY_NAME_MAX_CHARS = 100

_STAFF_KEY: "web.RequestKey[Staff | None]" = web.RequestKey("polku_staff_lookup", object)
UI_LANGUAGES = ("fi", "sv", "en")


# --- named errors --------------------------------------------------------------------


class AuthError(ChatServerError):
    """A staff action refused; ``code`` names why (the pages show a text for it)."""

    code = "auth_error"


class SignInFailed(AuthError):
    """Unknown user, wrong password, disabled or (AccountLocked) locked account:
    the same answer for all four."""

    code = "wrong_credentials"


class AccountLocked(SignInFailed):
    """Locked after too many failures. Answered exactly as SignInFailed (same
    code, status, text and time taken), so that a lock does not tell anyone
    that the username exists; the audit log and the server log name it."""


class SignInThrottled(AuthError):
    code = "too_many_attempts"


class InvalidStaffInput(AuthError):
    """A username, display name, role or password that cannot be used (CLI and admin pages)."""

    code = "invalid_input"


# --- the signed-in user ------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    """A signed-in counsellor or admin (``request["staff"]``)."""

    id: int
    username: str
    display_name: str
    role: str
    session_id: int
    csrf: str
    expires_at: datetime

    @property
    def actor(self) -> str:
        """How the handoff state machine names this person's moves."""
        return f"counsellor:{self.id}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def has_role(self, role: str | None) -> bool:
        """Any staff for None; an admin may also do what a counsellor does."""
        if role is None or role == self.role:
            return True
        return role == "counsellor" and self.role == "admin"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


# --- validation of account input ---------------------------------------------------


def check_username(value: Any) -> str:
    name = value.strip().lower() if isinstance(value, str) else ""
    if not USERNAME_RE.fullmatch(name):
        raise InvalidStaffInput("username: 2-64 characters of a-z, 0-9 and . _ @ -, starting with a letter or digit")
    return name


def check_display_name(value: Any) -> str:
    name = " ".join(value.split()) if isinstance(value, str) else ""
    if not name or len(name) > DISPLAY_NAME_MAX_CHARS or any(unicodedata.category(c)[0] == "C" for c in name):
        raise InvalidStaffInput(f"display name: 1-{DISPLAY_NAME_MAX_CHARS} printable characters")
    return name


def check_role(value: Any) -> str:
    if value not in ROLES:
        raise InvalidStaffInput(f"role: one of {', '.join(ROLES)}")
    return value


def check_password(value: Any) -> str:
    if not isinstance(value, str) or not (PASSWORD_MIN_CHARS <= len(value) <= PASSWORD_MAX_CHARS):
        raise InvalidStaffInput(f"password: at least {PASSWORD_MIN_CHARS} characters")
    return value


# --- accounts, sessions, audit -----------------------------------------------------


class StaffAuth:
    """Staff accounts, sign-in with lock-out, server-side sessions and the audit log."""

    def __init__(self, store: Store, counter: Counter, *, session_hours: float, max_failures: int,
                 lockout_secs: float, rate_address_per_min: int) -> None:
        self.store = store
        self.counter = counter
        self.session_hours = session_hours
        self.max_failures = max_failures
        self.lockout_secs = lockout_secs
        self.rate_address_per_min = rate_address_per_min
        self._hasher = PasswordHasher()
        self._dummy_hash: str | None = None

    # -- passwords (argon2 takes tens of milliseconds: never on the event loop) --

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        return await asyncio.to_thread(verify)

    async def _burn_time(self, password: str) -> None:
        """Take as long as a real check, so a wrong username is not told apart by timing."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash_password(secrets.token_urlsafe(16))
        await self._verify(self._dummy_hash, password)

    # -- accounts --

    async def create_user(self, username: str, display_name: str, role: str, password: str) -> StaffUser:
        username, display_name = check_username(username), check_display_name(display_name)
        role, password = check_role(role), check_password(password)
        password_hash = await self.hash_password(password)
        async with self.store.transaction() as tx:
            existing = await tx.session.execute(select(StaffUser.id).where(StaffUser.username == username))
            if existing.first() is not None:
                raise InvalidStaffInput(f"username {username!r} is taken")
            user = StaffUser(username=username, display_name=display_name, role=role,
                             password_hash=password_hash, disabled=False, failed_logins=0,
                             created_at=utcnow())
            tx.session.add(user)
            await tx.session.flush()
        return user

    async def users(self) -> list[StaffUser]:
        async with self.store.reading() as session:
            result = await session.execute(select(StaffUser).order_by(StaffUser.username))
            return list(result.scalars().all())

    async def set_disabled(self, username: str, disabled: bool) -> StaffUser:
        """Disable (and sign out everywhere) or enable an account."""
        async with self.store.transaction() as tx:
            user = await self._user_by_name(tx, username)
            user.disabled = disabled
            if disabled:
                await tx.session.execute(delete(StaffSession).where(StaffSession.staff_id == user.id))
            else:
                user.failed_logins, user.locked_until = 0, None
        return user

    async def set_password(self, username: str, password: str) -> StaffUser:
        password_hash = await self.hash_password(check_password(password))
        async with self.store.transaction() as tx:
            user = await self._user_by_name(tx, username)
            user.password_hash = password_hash
            user.failed_logins, user.locked_until = 0, None
            await tx.session.execute(delete(StaffSession).where(StaffSession.staff_id == user.id))
        return user

    @staticmethod
    async def _user_by_name(tx: Transaction, username: str) -> StaffUser:
        result = await tx.session.execute(
            select(StaffUser).where(StaffUser.username == check_username(username)).with_for_update())
        user = result.scalar_one_or_none()
        if user is None:
            raise InvalidStaffInput(f"no user {username!r}")
        return user

    # -- sign-in --

    async def check_address(self, address: str) -> None:
        if not await self.counter.hit(_key("login", address), self.rate_address_per_min):
            raise SignInThrottled("address")

    async def sign_in(self, username: str, password: str, address: str) -> tuple[Staff, str]:
        """(the signed-in Staff, the cookie token), or SignInFailed / AccountLocked / SignInThrottled."""
        await self.check_address(address)
        name = username.strip().lower() if isinstance(username, str) else ""
        password = password if isinstance(password, str) else ""
        async with self.store.reading() as session:
            user = (await session.execute(select(StaffUser).where(StaffUser.username == name))).scalar_one_or_none()
        now = utcnow()
        if user is None or user.disabled or len(password) > PASSWORD_MAX_CHARS:
            await self._burn_time(password)
            raise SignInFailed("unknown, disabled or absurd")
        if user.locked_until is not None and user.locked_until > now:
            await self._burn_time(password)
            raise AccountLocked(f"user {user.id}")
        # Checked outside the transaction: SQLite's write lock must not wait for argon2.
        correct = await self._verify(user.password_hash, password)
        token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        async with self.store.transaction() as tx:
            user = (await tx.session.execute(
                select(StaffUser).where(StaffUser.id == user.id).with_for_update()
                .execution_options(populate_existing=True))).scalar_one()
            now = utcnow()
            if user.locked_until is not None and user.locked_until > now:
                raise AccountLocked(f"user {user.id}")  # locked by a parallel attempt meanwhile
            if user.disabled:
                raise SignInFailed("disabled meanwhile")
            if not correct:
                user.failed_logins += 1
                locked = user.failed_logins >= self.max_failures
                if locked:
                    user.failed_logins = 0
                    user.locked_until = now + timedelta(seconds=self.lockout_secs)
                    tx.session.add(_audit_row(None, "account_locked", None, f"user {user.id}", now))
            else:
                user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
                if self._hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = await self.hash_password(password)
                await tx.session.execute(delete(StaffSession).where(StaffSession.expires_at < now))
                row = StaffSession(token_hash=hash_token(token), staff_id=user.id,
                                   csrf_token=secrets.token_urlsafe(CSRF_TOKEN_BYTES), created_at=now,
                                   expires_at=now + timedelta(hours=self.session_hours))
                tx.session.add(row)
                await tx.session.flush()
                tx.session.add(_audit_row(user.id, "sign_in", None, "", now))
        if not correct:
            if locked:
                log.warning("staff account %s locked after %d failed sign-ins", user.id, self.max_failures)
                raise AccountLocked(f"user {user.id}")
            raise SignInFailed("wrong password")
        log.info("staff %s signed in", user.id)
        return _staff(user, row), token

    async def session(self, token: str | None) -> Staff | None:
        """The signed-in Staff of a cookie token, or None (unknown, expired, disabled)."""
        if not token or len(token) > 128:
            return None
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffSession, StaffUser).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.token_hash == hash_token(token), StaffSession.expires_at > utcnow(),
                       StaffUser.disabled.is_(False)))
            row = result.first()
        return _staff(row[1], row[0]) if row is not None else None

    async def live_session_ids(self, session_ids: set[int]) -> set[int]:
        """Which of these sessions are still signed in (not out, expired or disabled)."""
        if not session_ids:
            return set()
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffSession.id).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.id.in_(session_ids), StaffSession.expires_at > utcnow(),
                       StaffUser.disabled.is_(False)))
            return {sid for (sid,) in result.all()}

    async def sign_out(self, staff: Staff) -> None:
        async with self.store.transaction() as tx:
            await tx.session.execute(delete(StaffSession).where(StaffSession.id == staff.session_id))
            tx.session.add(_audit_row(staff.id, "sign_out", None, "", utcnow()))

    async def display_names(self, staff_ids: set[int]) -> dict[int, str]:
        if not staff_ids:
            return {}
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(staff_ids)))
            return dict(result.all())

    # -- audit --

    async def audit(self, staff: Staff | None, action: str, conversation_id: int | None,
                    detail: str = "") -> None:
        async with self.store.transaction() as tx:
            add_audit(tx, staff, action, conversation_id, detail)

    async def audit_records(self, *, limit: int = 100, before_id: int | None = None,
                            staff_id: int | None = None, conversation_id: int | None = None,
                            action: str | None = None) -> list[dict[str, Any]]:
        query = (select(AuditRecord, StaffUser.username, StaffUser.display_name)
                 .outerjoin(StaffUser, StaffUser.id == AuditRecord.staff_id)
                 .order_by(AuditRecord.id.desc()).limit(limit))
        if before_id is not None:
            query = query.where(AuditRecord.id < before_id)
        if staff_id is not None:
            query = query.where(AuditRecord.staff_id == staff_id)
        if conversation_id is not None:
            query = query.where(AuditRecord.conversation_id == conversation_id)
        if action:
            query = query.where(AuditRecord.action == action)
        async with self.store.reading() as session:
            rows = (await session.execute(query)).all()
        return [{"id": r.id, "at": r.at.isoformat().replace("+00:00", "Z"), "staff_id": r.staff_id,
                 "username": username, "display_name": display_name, "action": r.action,
                 "conversation_id": r.conversation_id, "detail": r.detail}
                for r, username, display_name in rows]


def _staff(user: StaffUser, row: StaffSession) -> Staff:
    return Staff(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                 session_id=row.id, csrf=row.csrf_token, expires_at=row.expires_at)


def _audit_row(staff_id: int | None, action: str, conversation_id: int | None, detail: str,
               at: datetime) -> AuditRecord:
    return AuditRecord(at=at, staff_id=staff_id, action=action[:64], conversation_id=conversation_id,
                       detail=detail[:2000])


def add_audit(tx: Transaction, staff: Staff | None, action: str, conversation_id: int | None,
              detail: str = "") -> None:
    """Record an audit row in the caller's transaction (committed with the action it tells of)."""
    tx.session.add(_audit_row(staff.id if staff else None, action, conversation_id, detail, utcnow()))


async def audit(app_or_server: Any, staff: Staff | None, action: str, conversation_id: int | None,
                detail: str = "") -> None:
    """Write an audit record: who (``staff``), what (``action``), which conversation, now."""
    await _server(app_or_server).auth.audit(staff, action, conversation_id, detail)


# --- request helpers ---------------------------------------------------------------


def _server(app_or_server: Any) -> Any:
    from .app import SERVER_KEY

    if isinstance(app_or_server, web.Application):
        return app_or_server[SERVER_KEY]
    if isinstance(app_or_server, web.Request):
        return app_or_server.app[SERVER_KEY]
    return app_or_server


def secure_cookies(settings: Any) -> bool:
    return (settings.public_url or "").lower().startswith("https://")


def cookie_name(settings: Any) -> str:
    return SECURE_COOKIE_NAME if secure_cookies(settings) else COOKIE_NAME


def session_cookie_token(cookies: Any, settings: Any) -> str | None:
    return cookies.get(cookie_name(settings))


async def current_staff(request: web.Request) -> Staff | None:
    """The signed-in staff member of the request, looked up once per request."""
    if _STAFF_KEY not in request:
        server = _server(request)
        request[_STAFF_KEY] = await server.auth.session(session_cookie_token(request.cookies, server.settings))
    return request[_STAFF_KEY]


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_staff(role: str | None = None) -> Callable[[Handler], Handler]:
    """Only signed-in staff (of ``role``: "counsellor" lets admins in too, "admin" only admins).

    Not signed in: a page request is redirected to /login, anything else gets
    401. Wrong role: 403. The handler finds the user in ``request["staff"]``."""
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
            with warnings.catch_warnings():
                # request["staff"] is the promised interface; aiohttp would rather see a RequestKey.
                warnings.simplefilter("ignore", web.NotAppKeyWarning)
                request["staff"] = staff
            return await handler(request)
        return guarded
    return decorate


def csrf_exempt(handler: Handler) -> Handler:
    """Let a state-changing handler through without a CSRF token (it must defend itself)."""
    handler.csrf_exempt = True  # type: ignore[attr-defined]
    return handler


def _login_csrf_cookie(settings: Any) -> str:
    return LOGIN_CSRF_COOKIE_SECURE if secure_cookies(settings) else LOGIN_CSRF_COOKIE


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

    The sign-in form: the double-submit cookie set with the form. Everything
    else: the signed-in session's synchronizer token."""
    server = _server(request)
    if request.path == "/login":
        expected = request.cookies.get(_login_csrf_cookie(server.settings))
    else:
        staff = await current_staff(request)
        expected = staff.csrf if staff is not None else None
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


def _security_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def staff_page_headers(response: web.StreamResponse) -> web.StreamResponse:
    """Headers every staff page gets: no caching, no framing, only our own scripts."""
    _security_headers(response)
    return response


# --- the sign-in page ----------------------------------------------------------------

LOGIN_TEXTS: dict[str, dict[str, str]] = {
    "fi": {
        "title": "Kirjaudu – Polku-chat", "heading": "Kirjaudu Polku-chattiin",
        "intro": "Ohjaajien ja ylläpitäjien kirjautuminen.",
        "username": "Käyttäjätunnus", "password": "Salasana", "submit": "Kirjaudu",
        "wrong_credentials": ("Käyttäjätunnus tai salasana on väärin, tai tunnus on lukittu hetkeksi "
                              "liian monen epäonnistuneen yrityksen jälkeen."),
        "too_many_attempts": "Liian monta yritystä lyhyessä ajassa. Odota hetki ja yritä uudelleen.",
        "signed_out": "Olet kirjautunut ulos.", "error_heading": "Kirjautuminen ei onnistunut",
        "language": "Kieli",
    },
    "sv": {
        "title": "Logga in – Polku-chatten", "heading": "Logga in i Polku-chatten",
        "intro": "Inloggning för handledare och administratörer.",
        "username": "Användarnamn", "password": "Lösenord", "submit": "Logga in",
        "wrong_credentials": ("Fel användarnamn eller lösenord, eller så är kontot låst en stund "
                              "efter för många misslyckade försök."),
        "too_many_attempts": "För många försök på kort tid. Vänta en stund och försök igen.",
        "signed_out": "Du har loggat ut.", "error_heading": "Inloggningen misslyckades",
        "language": "Språk",
    },
    "en": {
        "title": "Sign in – Polku chat", "heading": "Sign in to Polku chat",
        "intro": "Sign-in for counsellors and admins.",
        "username": "Username", "password": "Password", "submit": "Sign in",
        "wrong_credentials": ("Wrong username or password, or the account is locked for a while "
                              "after too many failed attempts."),
        "too_many_attempts": "Too many attempts in a short time. Please wait a moment and try again.",
        "signed_out": "You have signed out.", "error_heading": "Sign-in failed",
        "language": "Language",
    },
}
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


def _login_page(lang: str, csrf: str, next_path: str, *, error: str | None = None,
                notice: str | None = None, username: str = "") -> str:
    t = LOGIN_TEXTS[lang]
    template = string.Template((STATIC_DIR / "login.html").read_text(encoding="utf-8"))
    e = html.escape
    message = ""
    if error:
        message = (f'<div class="alert alert--error" role="alert" id="login-error" tabindex="-1">'
                   f'<h2>{e(t["error_heading"])}</h2><p>{e(t[error])}</p></div>')
    elif notice:
        message = f'<div class="alert" role="status"><p>{e(t[notice])}</p></div>'
    current = ' aria-current="true"'
    languages = " ".join(
        (f'<a href="/login?lang={code}&amp;next={e(quote(next_path, safe=""))}" lang="{code}"'
         f'{current if code == lang else ""}>{LANGUAGE_NAMES[code]}</a>')
        for code in UI_LANGUAGES)
    return template.substitute(
        lang=lang, title=e(t["title"]), heading=e(t["heading"]), intro=e(t["intro"]),
        username_label=e(t["username"]), password_label=e(t["password"]), submit=e(t["submit"]),
        csrf=e(csrf), next=e(next_path), username=e(username), message=message,
        language_label=e(t["language"]), languages=languages,
        invalid=' aria-invalid="true" aria-describedby="login-error"' if error else "")


def _set_cookie(response: web.StreamResponse, settings: Any, name: str, value: str, max_age: int,
                path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="Strict",
                        secure=secure_cookies(settings))


async def login_page(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    lang = ui_language(request, server.settings.default_language)
    if await current_staff(request) is not None and "signed_out" not in request.query:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    token = secrets.token_urlsafe(CSRF_TOKEN_BYTES)
    notice = "signed_out" if "signed_out" in request.query else None
    body = _login_page(lang, token, safe_next(request.query.get("next")), notice=notice)
    response = web.Response(text=body, content_type="text/html", charset="utf-8")
    _set_cookie(response, server.settings, _login_csrf_cookie(server.settings), token, LOGIN_CSRF_MAX_AGE_SECS)
    return staff_page_headers(response)


async def login_submit(request: web.Request) -> web.StreamResponse:
    """POST /login (CSRF checked by the middleware): sign in, or the form again with the reason."""
    server = _server(request)
    form = await request.post()
    lang = form.get("lang") if form.get("lang") in UI_LANGUAGES else ui_language(request, server.settings.default_language)
    next_path = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    username = form.get("username") if isinstance(form.get("username"), str) else ""
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    address = client_address(request.remote, request.headers, server.trusted_proxies)
    try:
        staff, token = await server.auth.sign_in(username, password, address)
    except AuthError as exc:
        status = 429 if exc.code == "too_many_attempts" else 401
        token = request.cookies.get(_login_csrf_cookie(server.settings)) or secrets.token_urlsafe(CSRF_TOKEN_BYTES)
        body = _login_page(lang, token, next_path, error=exc.code, username=username[:64])
        response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        _set_cookie(response, server.settings, _login_csrf_cookie(server.settings), token, LOGIN_CSRF_MAX_AGE_SECS)
        return staff_page_headers(response)
    response = _see_other(next_path)
    _set_cookie(response, server.settings, cookie_name(server.settings), token,
                int(server.settings.staff_session_hours * 3600))
    response.del_cookie(_login_csrf_cookie(server.settings), path="/")
    _set_lang_cookie(response, server.settings, lang)
    staff_page_headers(response)
    return response


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _set_lang_cookie(response: web.StreamResponse, settings: Any, lang: str) -> None:
    response.set_cookie("polku_ui_lang", lang, max_age=365 * 24 * 3600, path="/", httponly=True,
                        samesite="Strict", secure=secure_cookies(settings))


@require_staff()
async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: ends this session here and on every open console of it."""
    server = _server(request)
    staff: Staff = request["staff"]
    await server.auth.sign_out(staff)
    if server.counsellor is not None:
        await server.counsellor.session_ended(staff.session_id)
    response = _see_other("/login?signed_out=1")
    response.del_cookie(cookie_name(server.settings), path="/")
    staff_page_headers(response)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
