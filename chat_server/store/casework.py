"""What counsellors read and write on a conversation: their messages,
transcripts, notes, closing tags, who holds which chat, and the rows behind
the console's queue and the background sweeps.

Reads open their own read-only transaction; writes take the caller's
``Transaction`` (``Store.transaction()``), so that the service decides what
one change is and queues its events with ``on_commit``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update

from .core import Store, Transaction
from .models import Conversation, Message, utcnow
from .staff_models import ConversationNote, ConversationTag

# The handoff states these queries name (handoff.py's constants; the store does not import handoff).
QUEUED = "queued"
COUNSELLOR = "counsellor"
TRANSCRIPT_MAX_MESSAGES = 5000


class Casework:
    """The counsellors' reads and writes of conversations, messages, notes and tags."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- writes (in the caller's transaction) -------------------------------------------

    @staticmethod
    async def add_counsellor_message(tx: Transaction, conversation_id: int, counsellor_id: str, text: str,
                                     client_id: str | None) -> Message | None:
        """Store a counsellor's line if the conversation is theirs now, else None.

        The hot path of a live chat, so two statements: the conditional UPDATE
        checks that the conversation is this counsellor's, locks its row and
        touches its activity time at once; the INSERT returns the stored line.
        A resent ``client_id`` fails with IntegrityError."""
        now = utcnow()
        row = (await tx.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.handoff_state == COUNSELLOR,
                   Conversation.counsellor_id == counsellor_id)
            .values(last_activity_at=now)
            .returning(Conversation.language)
            .execution_options(synchronize_session=False))).first()
        if row is None:
            return None
        return (await tx.session.execute(
            insert(Message).values(conversation_id=conversation_id, sender="counsellor", text=text,
                                   language=row.language, client_id=client_id, created_at=now)
            .returning(Message))).scalar_one()

    @staticmethod
    async def add_note(tx: Transaction, conversation_id: int, staff_id: int, text: str) -> ConversationNote:
        """A counsellor's note on the conversation (flushed: it has its id)."""
        note = ConversationNote(conversation_id=conversation_id, staff_id=staff_id, text=text,
                                created_at=utcnow())
        tx.session.add(note)
        await tx.session.flush()
        return note

    @staticmethod
    def add_tags(tx: Transaction, conversation_id: int, staff_id: int, tags: tuple[str, ...],
                 other_label: str | None) -> None:
        """The topic tags a conversation is closed with (``other_label`` goes with "other")."""
        now = utcnow()
        for tag in tags:
            tx.session.add(ConversationTag(conversation_id=conversation_id, tag=tag, staff_id=staff_id,
                                           label=other_label if tag == "other" else None, created_at=now))

    # --- reads ---------------------------------------------------------------------------

    async def transcript_rows(self, conversation_id: int,
                              until: datetime | None) -> tuple[list[Message], list[ConversationNote]]:
        """The conversation's messages (at most TRANSCRIPT_MAX_MESSAGES) and notes, oldest
        first, up to ``until`` when given."""
        async with self.store.reading() as session:
            query = select(Message).where(Message.conversation_id == conversation_id)
            notes_query = select(ConversationNote).where(ConversationNote.conversation_id == conversation_id)
            if until is not None:
                query = query.where(Message.created_at <= until)
                notes_query = notes_query.where(ConversationNote.created_at <= until)
            messages = list((await session.execute(
                query.order_by(Message.id).limit(TRANSCRIPT_MAX_MESSAGES))).scalars().all())
            notes = list((await session.execute(notes_query.order_by(ConversationNote.id))).scalars().all())
        return messages, notes

    async def queued_by_id(self, ids: list[int]) -> dict[int, Conversation]:
        """The conversations of ``ids`` that are queued, by id."""
        if not ids:
            return {}
        async with self.store.reading() as session:
            result = await session.execute(select(Conversation).where(
                Conversation.id.in_(ids), Conversation.handoff_state == QUEUED))
            return {c.id: c for c in result.scalars().all()}

    async def assigned_to(self, counsellor_id: str) -> list[Conversation]:
        """The conversations this counsellor holds now, oldest first."""
        async with self.store.reading() as session:
            result = await session.execute(select(Conversation).where(
                Conversation.handoff_state == COUNSELLOR, Conversation.counsellor_id == counsellor_id)
                .order_by(Conversation.id))
            return list(result.scalars().all())

    async def assignments(self) -> list[tuple[int, str | None, datetime | None]]:
        """(id, counsellor id, queued at) of every conversation a counsellor holds."""
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation.id, Conversation.counsellor_id, Conversation.queued_at)
                .where(Conversation.handoff_state == COUNSELLOR))
            return [(cid, counsellor_id, queued_at) for cid, counsellor_id, queued_at in result.all()]

    async def queued_silent_since(self, cutoff: datetime) -> list[int]:
        """Queued conversations without activity since ``cutoff``."""
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation.id).where(Conversation.handoff_state == QUEUED,
                                              Conversation.last_activity_at < cutoff))
            return [row[0] for row in result.all()]

    async def queued_not_crisis(self) -> list[int]:
        """Queued conversations of normal priority (crisis chats stay queued)."""
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation.id).where(Conversation.handoff_state == QUEUED,
                                              Conversation.priority != "crisis"))
            return [row[0] for row in result.all()]
