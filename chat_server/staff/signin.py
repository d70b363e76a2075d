"""Signing in: the password (local accounts), then the second factor (TOTP,
enrolled at the first sign-in, or a recovery code), or single sign-on; and
the second factor again before a sensitive action.

Guessing meets growing delays per account and address (``throttle.py``),
never a lock; every failed attempt is audited and logged, without what was
typed. A known and an unknown username take the same path.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from datetime import timedelta

from ..errors import AuthError, SecondFactorFailed, SignInFailed, SignInThrottled
from ..ratelimit import Counter, _key
from ..store.models import utcnow
from ..store.staff import StaffRepository
from . import totp
from .accounts import PASSWORD_MAX_CHARS, Passwords
from .sessions import PENDING_MINUTES, PendingSignIn, Staff, staff_of, start_session
from .throttle import ACCOUNT, ADDRESS, PAIR, SECOND_FACTOR, Policy, Throttle
from .throttle import key as throttle_key

log = logging.getLogger(__name__)


class SignIn:
    """The steps of signing in (part of ``StaffAuth``)."""

    repo: StaffRepository
    passwords: Passwords
    throttle: Throttle
    counter: Counter | None
    rate_address_per_min: int
    local_accounts: bool
    session_hours: float

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
        await self.repo.record_audit(user_id, action, None, detail)
        log.warning("failed sign-in (%s): %s", action, log_detail)

    # -- step 1: the password --

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
        user = await self.repo.user_by_name(name)
        if user is None or len(password) > PASSWORD_MAX_CHARS:
            await self.passwords.burn_time(password)
            correct = False
        else:
            correct = await self.passwords.verify(user.password_hash, password)
        if not correct or user is None or user.disabled:
            # The username typed is not kept (it may be a password typed in the wrong field).
            detail = f"user {user.id}" if user is not None else "unknown username"
            await self._failed("sign_in_failed", None, detail, detail)
            raise SignInFailed("unknown, disabled or wrong password")
        rehashed = await self.passwords.hash(password) if self.passwords.needs_rehash(user.password_hash) else None
        async with self.repo.transaction() as writes:
            now = utcnow()
            if rehashed is not None:
                fresh = await writes.lock_user(user.id)
                if fresh is not None:
                    fresh.password_hash = rehashed
            await writes.delete_expired_sessions(now)
            row, token = await start_session(writes, user.id, stage="password", method="password", now=now,
                                             lifetime=timedelta(minutes=PENDING_MINUTES))
            writes.audit(user.id, "password_ok", None, "", now)
        await self.throttle.forget([k for k, _ in keys[:2]])
        await self.throttle.uncount(keys[2][0])
        log.info("staff %s gave the right password", user.id)
        return PendingSignIn(row.id, user.id, user.username, row.csrf_token, user.totp_secret is not None,
                             None), token

    async def enrolment_secret(self, pending: PendingSignIn) -> str:
        """The secret this pending sign-in enrols (made once, kept in the pending session)."""
        if pending.enrolled:
            raise AuthError("already enrolled")
        if pending.enrolling_secret:
            return pending.enrolling_secret
        secret = totp.new_secret()
        async with self.repo.transaction() as writes:
            row = await writes.lock_session(pending.session_id)
            if row is None:
                raise SignInFailed("pending sign-in gone")
            if row.pending_totp_secret:
                return row.pending_totp_secret
            row.pending_totp_secret = secret
        return secret

    # -- step 2: the second factor --

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
        recovery: list[str] = []
        used = ""
        async with self.repo.transaction() as writes:
            now = utcnow()
            row = await writes.lock_session(pending.session_id)
            user = await writes.lock_user(pending.staff_id)
            if row is None or row.stage != "password" or row.expires_at <= now or user is None or user.disabled:
                raise SignInFailed("pending sign-in gone")
            if user.totp_secret is None:
                secret = row.pending_totp_secret
                step = totp.matching_step(secret, code, now) if secret else None
                if step is not None:
                    user.totp_secret, user.totp_last_step, user.totp_enrolled_at = secret, step, now
                    recovery = totp.new_recovery_codes()
                    await writes.replace_recovery_codes(user.id, [totp.hash_recovery_code(c) for c in recovery], now)
                    used = "enrolled"
            else:
                step = totp.matching_step(user.totp_secret, code, now)
                if step is not None and (user.totp_last_step is None or step > user.totp_last_step):
                    user.totp_last_step = step
                    used = "totp"
                elif (step is None and totp.normalise_recovery_code(code) is not None
                      and await writes.use_recovery_code(user.id, totp.hash_recovery_code(code), now)):
                    used = "recovery_code"
            if used:
                await writes.delete_session(row.id)
                user.last_login_at = now
                full, token = await start_session(writes, user.id, stage="full", method="password", now=now,
                                                  lifetime=timedelta(hours=self.session_hours))
                writes.audit(user.id, "sign_in", None, used if used != "totp" else "", now)
        if not used:
            await self._failed("second_factor_failed", pending.staff_id, f"user {pending.staff_id}",
                               f"staff {pending.staff_id} wrong second factor")
            raise SecondFactorFailed("wrong code")
        await self.throttle.forget([k for k, _ in keys])
        log.info("staff %s signed in (%s)", user.id, used)
        return staff_of(user, full), token, recovery

    # -- single sign-on --

    async def sign_in_external(self, subject: str, username: str, display_name: str,
                               role: str) -> tuple[Staff, str]:
        """A single sign-on (the provider has checked the user): the account of ``subject``,
        made or updated from the provider's claims, signed in fully."""
        async with self.repo.transaction() as writes:
            now = utcnow()
            user = await writes.lock_user_by_subject(subject)
            if user is None:
                base = username
                if await writes.username_taken(base):
                    base = f"{username[:50]}-{secrets.token_hex(3)}"
                user = await writes.add_user(username=base, display_name=display_name, role=role,
                                             password_hash=None, disabled=False, created_at=now,
                                             external_subject=subject)
                writes.audit(user.id, "account_created_by_sso", None, "", now)
            elif user.disabled:
                raise SignInFailed("disabled")
            else:
                user.display_name, user.role = display_name, role
            user.last_login_at = now
            await writes.delete_expired_sessions(now)
            row, token = await start_session(writes, user.id, stage="full", method="oidc", now=now,
                                             lifetime=timedelta(hours=self.session_hours))
            writes.audit(user.id, "sign_in", None, "oidc", now)
        log.info("staff %s signed in (single sign-on)", user.id)
        return staff_of(user, row), token

    # -- the second factor again, before a sensitive action --

    async def reauthenticate(self, staff: Staff, code: str, address: str) -> Staff:
        """A fresh proof of the second factor before a sensitive action (TOTP code)."""
        keys = [(throttle_key("second_factor", str(staff.id)), SECOND_FACTOR)]
        wait = await self.throttle.attempt(keys)
        if wait > 0:
            raise SignInThrottled("growing delay", wait_secs=wait)
        ok = False
        async with self.repo.transaction() as writes:
            now = utcnow()
            user = await writes.lock_user(staff.id)
            step = totp.matching_step(user.totp_secret, code or "", now) if user and user.totp_secret else None
            if step is not None and (user.totp_last_step is None or step > user.totp_last_step):
                user.totp_last_step = step
                await writes.update_session(staff.session_id, reauth_at=now, last_seen_at=now)
                writes.audit(staff.id, "reauthenticated", None, "", now)
                ok = True
        if not ok:
            await self._failed("reauth_failed", staff.id, f"user {staff.id}", f"staff {staff.id} re-authentication")
            raise SecondFactorFailed("wrong code")
        await self.throttle.forget([k for k, _ in keys])
        return replace(staff, reauth_at=now, last_seen_at=now)
