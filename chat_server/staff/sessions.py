"""Staff sessions: who is signed in (``Staff``), the idle and absolute
timeouts, "I am still here", re-authentication's window, signing out here and
everywhere.

A sign-in is a server-side ``staff_sessions`` row; the browser holds its
token, and only the token's SHA-256 is stored. A session ends after
``POLKU_STAFF_IDLE_MINUTES`` without the user doing anything, after
``POLKU_STAFF_SESSION_HOURS`` in any case, at sign-out and at "sign out
everywhere". The most sensitive admin actions need the second factor again
within ``POLKU_STAFF_REAUTH_MINUTES``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..store.models import utcnow
from ..store.staff import StaffRepository, StaffWrites
from ..store.staff_models import StaffSession, StaffUser

SESSION_TOKEN_BYTES = 32
CSRF_TOKEN_BYTES = 32
PENDING_MINUTES = 10  # between the password and the second factor
TOUCH_EVERY_SECS = 15  # a session's last_seen_at is written at most this often
TOKEN_MAX_CHARS = 128


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


@dataclass(frozen=True)
class PendingSignIn:
    """A browser that gave the right password and still owes the second factor."""

    session_id: int
    staff_id: int
    username: str
    csrf: str
    enrolled: bool  # has a TOTP secret already
    enrolling_secret: str | None  # the secret shown on the enrolment page


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def staff_of(user: StaffUser, row: StaffSession) -> Staff:
    return Staff(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                 session_id=row.id, csrf=row.csrf_token, expires_at=row.expires_at,
                 last_seen_at=row.last_seen_at, reauth_at=row.reauth_at, method=row.method)


async def start_session(writes: StaffWrites, staff_id: int, *, stage: str, method: str, now: datetime,
                        lifetime: timedelta) -> tuple[StaffSession, str]:
    """A new session row (a fresh token and CSRF token); (the row, the cookie's token)."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    row = await writes.add_session(
        token_hash=hash_token(token), staff_id=staff_id, stage=stage, method=method,
        csrf_token=secrets.token_urlsafe(CSRF_TOKEN_BYTES), created_at=now, last_seen_at=now,
        reauth_at=now if stage == "full" else None, expires_at=now + lifetime)
    return row, token


class Sessions:
    """The signed-in sessions of staff (part of ``StaffAuth``)."""

    repo: StaffRepository
    session_hours: float
    idle: timedelta
    reauth_window: timedelta

    async def session(self, token: str | None) -> Staff | None:
        """The signed-in Staff of a cookie token, or None (unknown, pending, expired, idle, disabled)."""
        if not token or len(token) > TOKEN_MAX_CHARS:
            return None
        found = await self.repo.live_session(hash_token(token), utcnow(), self.idle)
        return staff_of(found[1], found[0]) if found is not None else None

    async def pending(self, token: str | None) -> PendingSignIn | None:
        """The pending sign-in of a cookie token (step 2 not done yet), or None."""
        if not token or len(token) > TOKEN_MAX_CHARS:
            return None
        found = await self.repo.pending_session(hash_token(token), utcnow())
        if found is None:
            return None
        row, user = found
        return PendingSignIn(row.id, user.id, user.username, row.csrf_token, user.totp_secret is not None,
                             row.pending_totp_secret)

    async def touch(self, staff: Staff, *, force: bool = False) -> Staff:
        """The user did something: the idle deadline starts again (written at most every
        TOUCH_EVERY_SECS, unless forced)."""
        now = utcnow()
        if not force and staff.last_seen_at is not None and now - staff.last_seen_at < timedelta(
                seconds=TOUCH_EVERY_SECS):
            return staff
        await self.repo.update_session(staff.session_id, last_seen_at=now)
        return replace(staff, last_seen_at=now)

    def recently_authenticated(self, staff: Staff) -> bool:
        return staff.reauth_at is not None and utcnow() - staff.reauth_at < self.reauth_window

    async def live_session_ids(self, session_ids: set[int]) -> set[int]:
        """Which of these sessions are still signed in (not out, expired, idle or disabled)."""
        if not session_ids:
            return set()
        return await self.repo.live_session_ids(session_ids, utcnow(), self.idle)

    async def end_pending(self, pending: PendingSignIn) -> None:
        async with self.repo.transaction() as writes:
            await writes.delete_session(pending.session_id)

    async def sign_out(self, staff: Staff) -> None:
        async with self.repo.transaction() as writes:
            await writes.delete_session(staff.session_id)
            writes.audit(staff.id, "sign_out")

    async def sign_out_everywhere(self, staff: Staff) -> list[int]:
        """End every session of this account (every browser); their ids."""
        async with self.repo.transaction() as writes:
            ids = await writes.delete_sessions_of(staff.id)
            writes.audit(staff.id, "sign_out_everywhere", None, f"{len(ids)} sessions")
        return ids

    def deadlines(self, staff: Staff) -> dict[str, float | bool]:
        """How long this sign-in has left (GET /session, the idle warning)."""
        now = utcnow()
        idle_end = (staff.last_seen_at or now) + self.idle
        return {"idle_secs_left": max(0.0, (idle_end - now).total_seconds()),
                "absolute_secs_left": max(0.0, (staff.expires_at - now).total_seconds()),
                "idle_timeout_secs": self.idle.total_seconds(),
                "recently_authenticated": self.recently_authenticated(staff),
                "can_reauthenticate": staff.method == "password"}
