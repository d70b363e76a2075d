"""The inbox's rows: resident messages the bot did not understand, their
stored guesses (``admin_message_guesses``) and the admins' decisions on them
(``admin_inbox_decisions``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, or_, select
from sqlalchemy.exc import IntegrityError

from bot.types import FALLBACK_INTENT

from ..admin_models import InboxDecision, MessageGuess
from ..core import Store
from ..models import Message, utcnow


class InboxRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def open_messages(self, threshold: float, limit: int) -> list[Row[Any]]:
        """The newest resident messages that got the fallback or less than ``threshold``
        confidence and that no admin has decided on, with their stored guesses."""
        query = (
            select(Message.id, Message.text, Message.language, Message.intent, Message.confidence,
                   Message.created_at, MessageGuess.guesses)
            .outerjoin(MessageGuess, MessageGuess.message_id == Message.id)
            .outerjoin(InboxDecision, InboxDecision.message_id == Message.id)
            .where(Message.sender == "resident", Message.intent.is_not(None),
                   InboxDecision.message_id.is_(None),
                   or_(Message.intent == FALLBACK_INTENT, Message.confidence < threshold))
            .order_by(Message.id.desc()).limit(limit))
        async with self.store.reading() as session:
            return list((await session.execute(query)).all())

    async def add_guesses(self, found: dict[int, list]) -> None:
        """Store guesses recomputed for messages stored without them."""
        try:
            async with self.store.transaction() as tx:
                for message_id, guesses in found.items():
                    tx.session.add(MessageGuess(message_id=message_id, guesses=guesses))
        except IntegrityError:
            pass  # another view stored them first

    async def resident_messages(self, ids: list[int]) -> list[Row[Any]]:
        """(id, text, language) of the resident messages among ``ids``, by id."""
        async with self.store.reading() as session:
            rows = (await session.execute(
                select(Message.id, Message.text, Message.language).where(
                    Message.id.in_(ids), Message.sender == "resident"))).all()
        return sorted(rows, key=lambda r: r.id)

    async def decide(self, ids: list[int], action: str, intent: str | None, *, staff_id: str,
                     staff_name: str, change_ids: dict[int, int]) -> None:
        """Record a decision on each message (replacing an earlier one)."""
        now = utcnow()
        async with self.store.transaction() as tx:
            await tx.session.execute(delete(InboxDecision).where(InboxDecision.message_id.in_(ids)))
            for message_id in ids:
                tx.session.add(InboxDecision(message_id=message_id, action=action, intent=intent,
                                             change_id=change_ids.get(message_id), staff_id=staff_id,
                                             staff_name=staff_name, at=now))

    async def restore_dismissed(self, ids: list[int]) -> None:
        """Take back the dismissals of these messages (they are in the inbox again)."""
        async with self.store.transaction() as tx:
            await tx.session.execute(delete(InboxDecision).where(
                InboxDecision.message_id.in_(ids), InboxDecision.action == "dismissed"))
