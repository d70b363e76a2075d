"""Staff accounts, sign-in (password, then the second factor, or single sign-on) with
growing delays, server-side sessions with idle and absolute timeouts, re-authentication,
and the audit log: ``StaffAuth``. See ``chat_server/auth.py`` for the whole picture."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update

from ..store.models import utcnow
from ..ratelimit import Counter, _key
from ..store.staff_models import AuditRecord, RecoveryCode, StaffSession, StaffUser
from ..store.core import Store, Transaction
from . import totp
from .core import (
    CSRF_TOKEN_BYTES, PASSWORD_MAX_CHARS, SESSION_TOKEN_BYTES, AuthError, InvalidStaffInput,
    SecondFactorFailed, SignInFailed, SignInThrottled, Staff, _audit_row, add_audit, check_display_name,
    check_password, check_role, check_username, hash_token,
)
from .throttle import ACCOUNT, ADDRESS, PAIR, SECOND_FACTOR, Policy, Throttle
from .throttle import key as throttle_key

log = logging.getLogger("chat_server.auth")


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


