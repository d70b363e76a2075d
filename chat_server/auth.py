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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update

from .errors import ChatServerError
from .models import utcnow
from .ratelimit import Counter, _is_trusted, _key, client_address
from .staff import totp
from .staff.throttle import ACCOUNT, ADDRESS, PAIR, SECOND_FACTOR, Policy, Throttle
from .staff.throttle import key as throttle_key
from .staff_models import ROLES, AuditRecord, RecoveryCode, StaffSession, StaffUser
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
    """Unknown user, wrong password or disabled account: the same answer for all three."""

    code = "wrong_credentials"


class SecondFactorFailed(AuthError):
    code = "wrong_code"


class SignInThrottled(AuthError):
    """Too early after failed attempts (or too many from one address): wait ``wait_secs``."""

    code = "too_many_attempts"

    def __init__(self, detail: str = "", *, wait_secs: float = 1.0) -> None:
        super().__init__(detail)
        self.wait_secs = wait_secs


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
    expires_at: datetime  # the absolute end (the idle one moves: last_seen_at + the idle timeout)
    last_seen_at: datetime | None = None
    reauth_at: datetime | None = None
    method: str = "password"

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

PENDING_MINUTES = 10  # between the password and the second factor
TOUCH_EVERY_SECS = 15  # a session's last_seen_at is written at most this often


@dataclass(frozen=True)
class PendingSignIn:
    """A browser that gave the right password and still owes the second factor."""

    session_id: int
    staff_id: int
    username: str
    csrf: str
    enrolled: bool  # has a TOTP secret already
    enrolling_secret: str | None  # the secret shown on the enrolment page


class StaffAuth:
    """Staff accounts, sign-in (password, then TOTP) with growing delays, server-side
    sessions with idle and absolute timeouts, and the audit log."""

    def __init__(self, store: Store, throttle: Throttle | None = None, *, session_hours: float = 10.0,
                 idle_minutes: float = 30.0, reauth_minutes: float = 10.0,
                 rate_address_per_min: int = 20, counter: Counter | None = None,
                 local_accounts: bool = True) -> None:
        self.store = store
        self.throttle = throttle or Throttle()
        self.counter = counter
        self.session_hours = session_hours
        self.idle = timedelta(minutes=idle_minutes)
        self.reauth_window = timedelta(minutes=reauth_minutes)
        self.rate_address_per_min = rate_address_per_min
        self.local_accounts = local_accounts
        self._hasher = PasswordHasher()
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, store: Store, settings: Any, redis: Any = None,
                      counter: Counter | None = None) -> "StaffAuth":
        return cls(store, Throttle(redis, settings.redis_prefix), session_hours=settings.staff_session_hours,
                   idle_minutes=settings.staff_idle_minutes, reauth_minutes=settings.staff_reauth_minutes,
                   rate_address_per_min=settings.login_rate_address_per_min, counter=counter,
                   local_accounts=settings.local_accounts)

    # -- passwords (argon2 takes tens of milliseconds: never on the event loop) --

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        if not password_hash or not password_hash.startswith("$argon2"):
            await self._burn_time(password)
            return False

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
                             password_hash=password_hash, disabled=False, created_at=utcnow())
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
            tx.session.add(_audit_row(None, "account_disabled" if disabled else "account_enabled", None,
                                      f"user {user.id}", utcnow()))
        return user

    async def set_password(self, username: str, password: str) -> StaffUser:
        password_hash = await self.hash_password(check_password(password))
        async with self.store.transaction() as tx:
            user = await self._user_by_name(tx, username)
            user.password_hash = password_hash
            await tx.session.execute(delete(StaffSession).where(StaffSession.staff_id == user.id))
            tx.session.add(_audit_row(None, "password_set", None, f"user {user.id}", utcnow()))
        return user

    async def reset_second_factor(self, username: str) -> StaffUser:
        """Forget the account's TOTP secret and recovery codes and end its sign-ins: the
        next sign-in enrols a new authenticator (a lost phone; the CLI's reset-2fa)."""
        async with self.store.transaction() as tx:
            user = await self._user_by_name(tx, username)
            user.totp_secret, user.totp_last_step, user.totp_enrolled_at = None, None, None
            await tx.session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == user.id))
            await tx.session.execute(delete(StaffSession).where(StaffSession.staff_id == user.id))
            tx.session.add(_audit_row(None, "second_factor_reset", None, f"user {user.id}", utcnow()))
        return user

    @staticmethod
    async def _user_by_name(tx: Transaction, username: str) -> StaffUser:
        result = await tx.session.execute(
            select(StaffUser).where(StaffUser.username == check_username(username)).with_for_update())
        user = result.scalar_one_or_none()
        if user is None:
            raise InvalidStaffInput(f"no user {username!r}")
        return user

    # -- sign-in, step 1: the password --

    async def check_address(self, address: str) -> None:
        if self.counter is not None and not await self.counter.hit(_key("login", address),
                                                                   self.rate_address_per_min):
            raise SignInThrottled("address", wait_secs=60)

    @staticmethod
    def _password_keys(name: str, address: str) -> list[tuple[str, Policy]]:
        return [(throttle_key("pair", name, address), PAIR), (throttle_key("account", name), ACCOUNT),
                (throttle_key("address", address), ADDRESS)]

    async def _failed(self, action: str, user_id: int | None, detail: str, log_detail: str) -> None:
        """Every failed sign-in: one audit row and one log line, the same work whoever it was."""
        async with self.store.transaction() as tx:
            tx.session.add(_audit_row(user_id, action, None, detail, utcnow()))
        log.warning("failed sign-in (%s): %s", action, log_detail)

    async def sign_in(self, username: str, password: str, address: str) -> tuple[PendingSignIn, str]:
        """Step 1: (the pending sign-in, its cookie token), or SignInFailed / SignInThrottled.

        A known and an unknown username take the same path: one throttle
        round trip, one argon2 check (of a dummy hash for an unknown one), one
        audit row when it fails; no other write."""
        await self.check_address(address)
        name = username.strip().lower() if isinstance(username, str) else ""
        password = password if isinstance(password, str) else ""
        if not self.local_accounts:
            raise SignInFailed("local accounts are off")
        keys = self._password_keys(name[:256], address)
        wait = await self.throttle.attempt(keys)
        if wait > 0:
            await self._failed("sign_in_throttled", None, f"wait {wait:.0f} s", f"throttled for {wait:.0f} s")
            raise SignInThrottled("growing delay", wait_secs=wait)
        async with self.store.reading() as session:
            user = (await session.execute(select(StaffUser).where(StaffUser.username == name))).scalar_one_or_none()
        if user is None or len(password) > PASSWORD_MAX_CHARS:
            await self._burn_time(password)
            correct = False
        else:
            correct = await self._verify(user.password_hash, password)
        if not correct or user is None or user.disabled:
            # The username typed is not kept (it may be a password typed in the wrong field).
            detail = f"user {user.id}" if user is not None else "unknown username"
            await self._failed("sign_in_failed", None, detail, detail)
            raise SignInFailed("unknown, disabled or wrong password")
        token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        async with self.store.transaction() as tx:
            now = utcnow()
            if self._hasher.check_needs_rehash(user.password_hash):
                fresh = await tx.session.get(StaffUser, user.id)
                fresh.password_hash = await self.hash_password(password)
            await tx.session.execute(delete(StaffSession).where(StaffSession.expires_at < now))
            row = StaffSession(token_hash=hash_token(token), staff_id=user.id, stage="password", method="password",
                               csrf_token=secrets.token_urlsafe(CSRF_TOKEN_BYTES), created_at=now,
                               last_seen_at=now, expires_at=now + timedelta(minutes=PENDING_MINUTES))
            tx.session.add(row)
            await tx.session.flush()
            tx.session.add(_audit_row(user.id, "password_ok", None, "", now))
        await self.throttle.forget([k for k, _ in keys[:2]])
        await self.throttle.uncount(keys[2][0])
        log.info("staff %s gave the right password", user.id)
        return PendingSignIn(row.id, user.id, user.username, row.csrf_token, user.totp_secret is not None,
                             None), token

    async def pending(self, token: str | None) -> PendingSignIn | None:
        """The pending sign-in of a cookie token (step 2 not done yet), or None."""
        if not token or len(token) > 128:
            return None
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffSession, StaffUser).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.token_hash == hash_token(token), StaffSession.stage == "password",
                       StaffSession.expires_at > utcnow(), StaffUser.disabled.is_(False)))
            row = result.first()
        if row is None:
            return None
        s, user = row
        return PendingSignIn(s.id, user.id, user.username, s.csrf_token, user.totp_secret is not None,
                             s.pending_totp_secret)

    async def enrolment_secret(self, pending: PendingSignIn) -> str:
        """The secret this pending sign-in enrols (made once, kept in the pending session)."""
        if pending.enrolled:
            raise AuthError("already enrolled")
        if pending.enrolling_secret:
            return pending.enrolling_secret
        secret = totp.new_secret()
        async with self.store.transaction() as tx:
            row = await tx.session.get(StaffSession, pending.session_id, with_for_update=True)
            if row is None:
                raise SignInFailed("pending sign-in gone")
            if row.pending_totp_secret:
                return row.pending_totp_secret
            row.pending_totp_secret = secret
        return secret

    # -- sign-in, step 2: the second factor --

    async def second_factor(self, pending: PendingSignIn, code: str, address: str) -> tuple[Staff, str, list[str]]:
        """Step 2: a TOTP code (or, once enrolled, a recovery code). On enrolment the code
        proves the new secret, and the recovery codes are made: (Staff, new token, codes
        to show once). The pending session is replaced by a new one with a new token."""
        code = code.strip() if isinstance(code, str) else ""
        keys = [(throttle_key("second_factor", str(pending.staff_id)), SECOND_FACTOR)]
        wait = await self.throttle.attempt(keys)
        if wait > 0:
            await self._failed("second_factor_throttled", pending.staff_id, f"wait {wait:.0f} s",
                               f"staff {pending.staff_id} second factor throttled")
            raise SignInThrottled("growing delay", wait_secs=wait)
        token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        recovery: list[str] = []
        used = ""
        async with self.store.transaction() as tx:
            now = utcnow()
            row = await tx.session.get(StaffSession, pending.session_id, with_for_update=True,
                                       populate_existing=True)
            user = await tx.session.get(StaffUser, pending.staff_id, with_for_update=True, populate_existing=True)
            if row is None or row.stage != "password" or row.expires_at <= now or user is None or user.disabled:
                raise SignInFailed("pending sign-in gone")
            if user.totp_secret is None:
                secret = row.pending_totp_secret
                step = totp.matching_step(secret, code, now) if secret else None
                if step is not None:
                    user.totp_secret, user.totp_last_step, user.totp_enrolled_at = secret, step, now
                    recovery = totp.new_recovery_codes()
                    await tx.session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == user.id))
                    for value in recovery:
                        tx.session.add(RecoveryCode(staff_id=user.id, code_hash=totp.hash_recovery_code(value),
                                                    created_at=now))
                    used = "enrolled"
            else:
                step = totp.matching_step(user.totp_secret, code, now)
                if step is not None and (user.totp_last_step is None or step > user.totp_last_step):
                    user.totp_last_step = step
                    used = "totp"
                elif step is None and totp.normalise_recovery_code(code) is not None:
                    found = (await tx.session.execute(
                        select(RecoveryCode).where(RecoveryCode.staff_id == user.id,
                                                   RecoveryCode.code_hash == totp.hash_recovery_code(code),
                                                   RecoveryCode.used_at.is_(None)))).scalar_one_or_none()
                    if found is not None:
                        found.used_at = now
                        used = "recovery_code"
            if used:
                await tx.session.execute(delete(StaffSession).where(StaffSession.id == row.id))
                user.last_login_at = now
                full = StaffSession(token_hash=hash_token(token), staff_id=user.id, stage="full", method="password",
                                    csrf_token=secrets.token_urlsafe(CSRF_TOKEN_BYTES), created_at=now,
                                    last_seen_at=now, reauth_at=now,
                                    expires_at=now + timedelta(hours=self.session_hours))
                tx.session.add(full)
                await tx.session.flush()
                tx.session.add(_audit_row(user.id, "sign_in", None, used if used != "totp" else "", now))
        if not used:
            await self._failed("second_factor_failed", pending.staff_id, f"user {pending.staff_id}",
                               f"staff {pending.staff_id} wrong second factor")
            raise SecondFactorFailed("wrong code")
        await self.throttle.forget([k for k, _ in keys])
        log.info("staff %s signed in (%s)", user.id, used)
        return self._staff(user, full), token, recovery

    async def sign_in_external(self, subject: str, username: str, display_name: str,
                               role: str) -> tuple[Staff, str]:
        """A single sign-on (the provider has checked the user): the account of ``subject``,
        made or updated from the provider's claims, signed in fully."""
        token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        async with self.store.transaction() as tx:
            now = utcnow()
            user = (await tx.session.execute(select(StaffUser).where(StaffUser.external_subject == subject)
                                             .with_for_update())).scalar_one_or_none()
            if user is None:
                base = username
                taken = (await tx.session.execute(select(StaffUser.id).where(StaffUser.username == base))).first()
                if taken is not None:
                    base = f"{username[:50]}-{secrets.token_hex(3)}"
                user = StaffUser(username=base, display_name=display_name, role=role, password_hash=None,
                                 disabled=False, created_at=now, external_subject=subject)
                tx.session.add(user)
                await tx.session.flush()
                tx.session.add(_audit_row(user.id, "account_created_by_sso", None, "", now))
            elif user.disabled:
                raise SignInFailed("disabled")
            else:
                user.display_name, user.role = display_name, role
            user.last_login_at = now
            await tx.session.execute(delete(StaffSession).where(StaffSession.expires_at < now))
            row = StaffSession(token_hash=hash_token(token), staff_id=user.id, stage="full", method="oidc",
                               csrf_token=secrets.token_urlsafe(CSRF_TOKEN_BYTES), created_at=now,
                               last_seen_at=now, reauth_at=now, expires_at=now + timedelta(hours=self.session_hours))
            tx.session.add(row)
            await tx.session.flush()
            tx.session.add(_audit_row(user.id, "sign_in", None, "oidc", now))
        log.info("staff %s signed in (single sign-on)", user.id)
        return self._staff(user, row), token

    # -- sessions --

    def _live(self, now: datetime):
        """Conditions of a usable full session: not past its absolute end nor idle too long."""
        return (StaffSession.stage == "full", StaffSession.expires_at > now,
                StaffSession.last_seen_at > now - self.idle, StaffUser.disabled.is_(False))

    async def session(self, token: str | None) -> Staff | None:
        """The signed-in Staff of a cookie token, or None (unknown, pending, expired, idle, disabled)."""
        if not token or len(token) > 128:
            return None
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffSession, StaffUser).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.token_hash == hash_token(token), *self._live(utcnow())))
            row = result.first()
        return self._staff(row[1], row[0]) if row is not None else None

    async def touch(self, staff: Staff, *, force: bool = False) -> Staff:
        """The user did something: the idle deadline starts again (written at most every
        TOUCH_EVERY_SECS, unless forced)."""
        now = utcnow()
        if not force and staff.last_seen_at is not None and now - staff.last_seen_at < timedelta(
                seconds=TOUCH_EVERY_SECS):
            return staff
        async with self.store.transaction() as tx:
            await tx.session.execute(update(StaffSession).where(StaffSession.id == staff.session_id)
                                     .values(last_seen_at=now))
        return replace(staff, last_seen_at=now)

    async def reauthenticate(self, staff: Staff, code: str, address: str) -> Staff:
        """A fresh proof of the second factor before a sensitive action (TOTP code)."""
        keys = [(throttle_key("second_factor", str(staff.id)), SECOND_FACTOR)]
        wait = await self.throttle.attempt(keys)
        if wait > 0:
            raise SignInThrottled("growing delay", wait_secs=wait)
        ok = False
        async with self.store.transaction() as tx:
            now = utcnow()
            user = await tx.session.get(StaffUser, staff.id, with_for_update=True, populate_existing=True)
            step = totp.matching_step(user.totp_secret, code or "", now) if user and user.totp_secret else None
            if step is not None and (user.totp_last_step is None or step > user.totp_last_step):
                user.totp_last_step = step
                await tx.session.execute(update(StaffSession).where(StaffSession.id == staff.session_id)
                                         .values(reauth_at=now, last_seen_at=now))
                tx.session.add(_audit_row(staff.id, "reauthenticated", None, "", now))
                ok = True
        if not ok:
            await self._failed("reauth_failed", staff.id, f"user {staff.id}", f"staff {staff.id} re-authentication")
            raise SecondFactorFailed("wrong code")
        await self.throttle.forget([k for k, _ in keys])
        return replace(staff, reauth_at=now, last_seen_at=now)

    def recently_authenticated(self, staff: Staff) -> bool:
        return staff.reauth_at is not None and utcnow() - staff.reauth_at < self.reauth_window

    async def live_session_ids(self, session_ids: set[int]) -> set[int]:
        """Which of these sessions are still signed in (not out, expired, idle or disabled)."""
        if not session_ids:
            return set()
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffSession.id).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.id.in_(session_ids), *self._live(utcnow())))
            return {sid for (sid,) in result.all()}

    async def end_pending(self, pending: PendingSignIn) -> None:
        async with self.store.transaction() as tx:
            await tx.session.execute(delete(StaffSession).where(StaffSession.id == pending.session_id))

    async def sign_out(self, staff: Staff) -> None:
        async with self.store.transaction() as tx:
            await tx.session.execute(delete(StaffSession).where(StaffSession.id == staff.session_id))
            tx.session.add(_audit_row(staff.id, "sign_out", None, "", utcnow()))

    async def sign_out_everywhere(self, staff: Staff) -> list[int]:
        """End every session of this account (every browser); their ids."""
        async with self.store.transaction() as tx:
            ids = [sid for (sid,) in (await tx.session.execute(
                select(StaffSession.id).where(StaffSession.staff_id == staff.id))).all()]
            await tx.session.execute(delete(StaffSession).where(StaffSession.staff_id == staff.id))
            tx.session.add(_audit_row(staff.id, "sign_out_everywhere", None, f"{len(ids)} sessions", utcnow()))
        return ids

    def _staff(self, user: StaffUser, row: StaffSession) -> Staff:
        return Staff(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                     session_id=row.id, csrf=row.csrf_token, expires_at=row.expires_at,
                     last_seen_at=row.last_seen_at,
                     reauth_at=row.reauth_at, method=row.method)

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
