"""The staff side's storage: accounts, recovery codes, sign-in sessions, the
audit log and single sign-on states (tables in ``staff_models.py``).

``StaffRepository`` holds every SQL statement of staff sign-in. Reads take
their own read session; a change that must be one step (the second factor:
check the code, use it, replace the pending session) runs inside
``StaffRepository.transaction()``, whose ``StaffWrites`` offers the
statements and the caller (``chat_server/staff/``) the rules. Audit rows are
written in the transaction of the action they tell of (``add_audit_record``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator

from sqlalchemy import delete, select, update

from .core import Store, Transaction
from .models import utcnow
from .staff_models import AuditRecord, RecoveryCode, SsoState, StaffSession, StaffUser

AUDIT_ACTION_MAX_CHARS = 64
AUDIT_DETAIL_MAX_CHARS = 2000


def add_audit_record(tx: Transaction, staff_id: int | None, action: str, conversation_id: int | None,
                     detail: str = "", at: datetime | None = None) -> None:
    """An audit row in the caller's transaction (committed with the action it tells of)."""
    tx.session.add(AuditRecord(at=at or utcnow(), staff_id=staff_id, action=action[:AUDIT_ACTION_MAX_CHARS],
                               conversation_id=conversation_id, detail=detail[:AUDIT_DETAIL_MAX_CHARS]))


@dataclass(frozen=True)
class SsoStart:
    """What a single sign-on under way remembers until the provider sends the browser back."""

    nonce: str
    code_verifier: str
    next_path: str
    created_at: datetime


class StaffWrites:
    """The staff statements inside one transaction (``StaffRepository.transaction()``)."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self._session = tx.session

    def audit(self, staff_id: int | None, action: str, conversation_id: int | None = None, detail: str = "",
              at: datetime | None = None) -> None:
        add_audit_record(self.tx, staff_id, action, conversation_id, detail, at)

    # -- accounts --

    async def username_taken(self, username: str) -> bool:
        return (await self._session.execute(select(StaffUser.id).where(StaffUser.username == username))).first() \
            is not None

    async def add_user(self, **fields: Any) -> StaffUser:
        user = StaffUser(**fields)
        self._session.add(user)
        await self._session.flush()
        return user

    async def lock_user_by_name(self, username: str) -> StaffUser | None:
        result = await self._session.execute(
            select(StaffUser).where(StaffUser.username == username).with_for_update())
        return result.scalar_one_or_none()

    async def lock_user(self, staff_id: int) -> StaffUser | None:
        """The account, read again and locked until commit (PostgreSQL)."""
        return await self._session.get(StaffUser, staff_id, with_for_update=True, populate_existing=True)

    async def lock_user_by_subject(self, subject: str) -> StaffUser | None:
        result = await self._session.execute(
            select(StaffUser).where(StaffUser.external_subject == subject).with_for_update())
        return result.scalar_one_or_none()

    # -- recovery codes --

    async def replace_recovery_codes(self, staff_id: int, code_hashes: list[str], at: datetime) -> None:
        await self.delete_recovery_codes(staff_id)
        for code_hash in code_hashes:
            self._session.add(RecoveryCode(staff_id=staff_id, code_hash=code_hash, created_at=at))

    async def delete_recovery_codes(self, staff_id: int) -> None:
        await self._session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == staff_id))

    async def use_recovery_code(self, staff_id: int, code_hash: str, at: datetime) -> bool:
        """Mark an unused recovery code of the account used; False when there is none such."""
        found = (await self._session.execute(
            select(RecoveryCode).where(RecoveryCode.staff_id == staff_id, RecoveryCode.code_hash == code_hash,
                                       RecoveryCode.used_at.is_(None)))).scalar_one_or_none()
        if found is None:
            return False
        found.used_at = at
        return True

    # -- sessions --

    async def lock_session(self, session_id: int) -> StaffSession | None:
        return await self._session.get(StaffSession, session_id, with_for_update=True, populate_existing=True)

    async def add_session(self, **fields: Any) -> StaffSession:
        row = StaffSession(**fields)
        self._session.add(row)
        await self._session.flush()
        return row

    async def delete_expired_sessions(self, now: datetime) -> None:
        await self._session.execute(delete(StaffSession).where(StaffSession.expires_at < now))

    async def delete_session(self, session_id: int) -> None:
        await self._session.execute(delete(StaffSession).where(StaffSession.id == session_id))

    async def delete_sessions_of(self, staff_id: int) -> list[int]:
        """End every session of the account; their ids."""
        ids = [sid for (sid,) in (await self._session.execute(
            select(StaffSession.id).where(StaffSession.staff_id == staff_id))).all()]
        await self._session.execute(delete(StaffSession).where(StaffSession.staff_id == staff_id))
        return ids

    async def update_session(self, session_id: int, **values: Any) -> None:
        await self._session.execute(update(StaffSession).where(StaffSession.id == session_id).values(**values))

    # -- single sign-on --

    async def add_sso_state(self, state_hash: str, nonce: str, code_verifier: str, next_path: str,
                            now: datetime, ttl: timedelta) -> None:
        await self._session.execute(delete(SsoState).where(SsoState.created_at < now - ttl))
        self._session.add(SsoState(state_hash=state_hash, nonce=nonce, code_verifier=code_verifier,
                                   next_path=next_path, created_at=now))

    async def take_sso_state(self, state_hash: str) -> SsoStart | None:
        """The sign-on under way of this state, deleted as it is read (single use)."""
        row = (await self._session.execute(select(SsoState).where(SsoState.state_hash == state_hash)
                                           .with_for_update())).scalar_one_or_none()
        if row is None:
            return None
        await self._session.execute(delete(SsoState).where(SsoState.id == row.id))
        return SsoStart(row.nonce, row.code_verifier, row.next_path, row.created_at)


class StaffRepository:
    """Staff accounts, sessions, the audit log and single sign-on states in the database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[StaffWrites]:
        async with self.store.transaction() as tx:
            yield StaffWrites(tx)

    # -- accounts --

    async def users(self) -> list[StaffUser]:
        async with self.store.reading() as session:
            result = await session.execute(select(StaffUser).order_by(StaffUser.username))
            return list(result.scalars().all())

    async def user_by_name(self, username: str) -> StaffUser | None:
        async with self.store.reading() as session:
            return (await session.execute(
                select(StaffUser).where(StaffUser.username == username))).scalar_one_or_none()

    async def display_names(self, staff_ids: set[int]) -> dict[int, str]:
        if not staff_ids:
            return {}
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(staff_ids)))
            return dict(result.all())

    # -- sessions --

    async def pending_session(self, token_hash: str, now: datetime) -> tuple[StaffSession, StaffUser] | None:
        """A session between the password and the second factor, with its (enabled) account."""
        async with self.store.reading() as session:
            row = (await session.execute(
                select(StaffSession, StaffUser).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.token_hash == token_hash, StaffSession.stage == "password",
                       StaffSession.expires_at > now, StaffUser.disabled.is_(False)))).first()
        return (row[0], row[1]) if row is not None else None

    @staticmethod
    def _live(now: datetime, idle: timedelta) -> tuple[Any, ...]:
        """A usable full session: not past its absolute end nor idle too long, its account enabled."""
        return (StaffSession.stage == "full", StaffSession.expires_at > now,
                StaffSession.last_seen_at > now - idle, StaffUser.disabled.is_(False))

    async def live_session(self, token_hash: str, now: datetime,
                           idle: timedelta) -> tuple[StaffSession, StaffUser] | None:
        async with self.store.reading() as session:
            row = (await session.execute(
                select(StaffSession, StaffUser).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.token_hash == token_hash, *self._live(now, idle)))).first()
        return (row[0], row[1]) if row is not None else None

    async def live_session_ids(self, session_ids: set[int], now: datetime, idle: timedelta) -> set[int]:
        async with self.store.reading() as session:
            result = await session.execute(
                select(StaffSession.id).join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.id.in_(session_ids), *self._live(now, idle)))
            return {sid for (sid,) in result.all()}

    async def update_session(self, session_id: int, **values: Any) -> None:
        async with self.transaction() as writes:
            await writes.update_session(session_id, **values)

    # -- the audit log --

    async def record_audit(self, staff_id: int | None, action: str, conversation_id: int | None = None,
                           detail: str = "") -> None:
        """One audit row in a transaction of its own."""
        async with self.store.transaction() as tx:
            add_audit_record(tx, staff_id, action, conversation_id, detail)

    async def audit_records(self, *, limit: int = 100, before_id: int | None = None,
                            staff_id: int | None = None, conversation_id: int | None = None,
                            action: str | None = None) -> list[dict[str, Any]]:
        """The newest audit records first (with the staff member's names), filtered."""
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
