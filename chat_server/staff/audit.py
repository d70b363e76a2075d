"""The audit log: who (a staff member, or the server itself) did what to which
conversation, and when. Append-only; it keeps ids, never message text.

- ``add_audit(tx, staff, ...)``: a record in the caller's transaction, so it is
  committed with the action it tells of (the console's pick-up, a callback done).
- ``audit(server, staff, ...)``: a record on its own (an admin page's action).
- ``AuditLog`` (part of ``StaffAuth``, ``server.auth.audit`` /
  ``server.auth.audit_records``): write one, read them for the audit page.
"""

from __future__ import annotations

from typing import Any

from ..context import ServerContext
from ..store.core import Transaction
from ..store.staff import StaffRepository, add_audit_record
from .sessions import Staff


def add_audit(tx: Transaction, staff: Staff | None, action: str, conversation_id: int | None,
              detail: str = "") -> None:
    """Record an audit row in the caller's transaction (committed with the action it tells of)."""
    add_audit_record(tx, staff.id if staff else None, action, conversation_id, detail)


async def audit(server: ServerContext, staff: Staff | None, action: str, conversation_id: int | None,
                detail: str = "") -> None:
    """Write an audit record: who (``staff``), what (``action``), which conversation, now."""
    await server.auth.audit(staff, action, conversation_id, detail)


class AuditLog:
    """Writing and reading the audit log (part of ``StaffAuth``)."""

    repo: StaffRepository

    async def audit(self, staff: Staff | None, action: str, conversation_id: int | None,
                    detail: str = "") -> None:
        await self.repo.record_audit(staff.id if staff else None, action, conversation_id, detail)

    async def audit_records(self, *, limit: int = 100, before_id: int | None = None,
                            staff_id: int | None = None, conversation_id: int | None = None,
                            action: str | None = None) -> list[dict[str, Any]]:
        return await self.repo.audit_records(limit=limit, before_id=before_id, staff_id=staff_id,
                                             conversation_id=conversation_id, action=action)
