"""Call-back requests: a resident's contact details, kept with consent until a
counsellor marks the request done (then wiped). One open request per
conversation. Writes take the caller's ``Transaction``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from .core import Store, Transaction
from .staff_models import CallbackRequest

OPEN = "open"
DONE = "done"


class CallbackRequests:
    """The rows of ``callback_requests``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    async def lock_open(tx: Transaction, conversation_id: int) -> CallbackRequest | None:
        """The conversation's open request, locked until commit; None if it has none."""
        return (await tx.session.execute(
            select(CallbackRequest).where(CallbackRequest.conversation_id == conversation_id,
                                          CallbackRequest.status == OPEN).with_for_update())).scalar_one_or_none()

    @staticmethod
    async def save(tx: Transaction, row: CallbackRequest) -> int:
        """Add ``row`` if new; flushed, its id returned."""
        if row.id is None:
            tx.session.add(row)
        await tx.session.flush()
        return row.id

    @staticmethod
    def new_open(conversation_id: int, at: datetime) -> CallbackRequest:
        """A new open request (not yet saved)."""
        return CallbackRequest(conversation_id=conversation_id, status=OPEN, created_at=at)

    @staticmethod
    async def lock(tx: Transaction, callback_id: int) -> CallbackRequest | None:
        return (await tx.session.execute(
            select(CallbackRequest).where(CallbackRequest.id == callback_id).with_for_update())
        ).scalar_one_or_none()

    @staticmethod
    def mark_done(row: CallbackRequest, staff_id: int, at: datetime) -> None:
        """Done, and the contact details wiped: they were kept only to make the call."""
        row.status, row.done_at, row.done_by = DONE, at, staff_id
        row.name = row.phone = row.preferred_time = None

    async def open_requests(self) -> list[CallbackRequest]:
        """Every open request, oldest first."""
        async with self.store.reading() as session:
            result = await session.execute(select(CallbackRequest).where(CallbackRequest.status == OPEN)
                                           .order_by(CallbackRequest.id))
            return list(result.scalars().all())
