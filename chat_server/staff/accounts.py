"""Staff accounts and their passwords: the checks of account input
(``check_*``), argon2id hashing off the event loop (``Passwords``), and the
account actions of the CLI and the admin pages (``Accounts``: create, list,
disable, set a password, reset the second factor)."""

from __future__ import annotations

import asyncio
import re
import secrets
import unicodedata
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import InvalidStaffInput
from ..store.models import utcnow
from ..store.staff import StaffRepository, StaffWrites
from ..store.staff_models import ROLES, StaffUser

PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 1024
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
DISPLAY_NAME_MAX_CHARS = 100


# --- checks of account input ----------------------------------------------------------


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


# --- passwords ------------------------------------------------------------------------


class Passwords:
    """argon2id hashes. A check takes tens of milliseconds: never on the event loop."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        if not password_hash or not password_hash.startswith("$argon2"):
            await self.burn_time(password)
            return False

        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        return await asyncio.to_thread(verify)

    async def burn_time(self, password: str) -> None:
        """Take as long as a real check, so a wrong username is not told apart by timing."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


# --- the account actions --------------------------------------------------------------


class Accounts:
    """Creating, listing, disabling and resetting staff accounts (part of ``StaffAuth``)."""

    repo: StaffRepository
    passwords: Passwords

    async def create_user(self, username: str, display_name: str, role: str, password: str) -> StaffUser:
        username, display_name = check_username(username), check_display_name(display_name)
        role, password = check_role(role), check_password(password)
        password_hash = await self.passwords.hash(password)
        async with self.repo.transaction() as writes:
            if await writes.username_taken(username):
                raise InvalidStaffInput(f"username {username!r} is taken")
            return await writes.add_user(username=username, display_name=display_name, role=role,
                                         password_hash=password_hash, disabled=False, created_at=utcnow())

    async def users(self) -> list[StaffUser]:
        return await self.repo.users()

    async def display_names(self, staff_ids: set[int]) -> dict[int, str]:
        return await self.repo.display_names(staff_ids)

    async def set_disabled(self, username: str, disabled: bool) -> StaffUser:
        """Disable (and sign out everywhere) or enable an account."""
        async with self.repo.transaction() as writes:
            user = await _user_by_name(writes, username)
            user.disabled = disabled
            if disabled:
                await writes.delete_sessions_of(user.id)
            writes.audit(None, "account_disabled" if disabled else "account_enabled", None, f"user {user.id}")
        return user

    async def set_password(self, username: str, password: str) -> StaffUser:
        password_hash = await self.passwords.hash(check_password(password))
        async with self.repo.transaction() as writes:
            user = await _user_by_name(writes, username)
            user.password_hash = password_hash
            await writes.delete_sessions_of(user.id)
            writes.audit(None, "password_set", None, f"user {user.id}")
        return user

    async def reset_second_factor(self, username: str) -> StaffUser:
        """Forget the account's TOTP secret and recovery codes and end its sign-ins: the
        next sign-in enrols a new authenticator (a lost phone; the CLI's reset-2fa)."""
        async with self.repo.transaction() as writes:
            user = await _user_by_name(writes, username)
            user.totp_secret, user.totp_last_step, user.totp_enrolled_at = None, None, None
            await writes.delete_recovery_codes(user.id)
            await writes.delete_sessions_of(user.id)
            writes.audit(None, "second_factor_reset", None, f"user {user.id}")
        return user


async def _user_by_name(writes: StaffWrites, username: str) -> StaffUser:
    user = await writes.lock_user_by_name(check_username(username))
    if user is None:
        raise InvalidStaffInput(f"no user {username!r}")
    return user
