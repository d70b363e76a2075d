"""Deleting what is past retention: conversations (their messages, handoff
transitions, notes, tags and inbox entries go with them by foreign key; their
callback requests explicitly), their counts rolled up into ``stats_daily`` in
the same transaction; old audit records; the record of each run
(``admin_retention_runs``); one conversation's export; and, on SQLite, the
scrub that makes a deletion really remove (WAL checkpoint, VACUUM)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import column, delete, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import ConversationActive
from ..admin_models import InboxDecision, KeptExample, RetentionRun
from ..conversations import Conversations
from ..core import Store
from ..models import Conversation, HandoffTransition, Message, utcnow
from ..staff_models import AuditRecord
from .statistics import CALLBACKS, StatisticsRepository

log = logging.getLogger(__name__)

# Related rows of other features put into an export, when their tables exist.
EXPORT_TABLES = {
    "callback_requests": ("id", "status", "name", "phone", "preferred_time", "topic", "language",
                          "consent_at", "created_at", "done_at"),
    "conversation_notes": ("id", "text", "created_at"),
    "conversation_tags": ("id", "tag", "label", "created_at"),
}


@dataclass(frozen=True)
class ConversationRecord:
    """Everything kept of one conversation."""

    conversation: Conversation
    messages: Sequence[Message]
    transitions: Sequence[HandoffTransition]
    related: dict[str, list[dict[str, Any]]]  # rows of EXPORT_TABLES, by table


@dataclass(frozen=True)
class RetentionStatus:
    last_run: RetentionRun | None
    oldest_activity: datetime | None


class RetentionRepository:
    def __init__(self, store: Store, statistics: StatisticsRepository) -> None:
        self.store = store
        self.statistics = statistics
        self._vacuum_checked = False

    async def _delete(self, session: AsyncSession, ids: list[int]) -> list[int]:
        """Roll the conversations' counts up, then delete them (inside the caller's transaction).
        The ids of the changes that added examples from their messages (not kept by an admin)."""
        examples = list((await session.execute(
            select(InboxDecision.change_id).join(Message, Message.id == InboxDecision.message_id)
            .where(Message.conversation_id.in_(ids), InboxDecision.action == "assigned",
                   InboxDecision.change_id.is_not(None),
                   InboxDecision.change_id.not_in(select(KeptExample.change_id))))).scalars())
        counts = await self.statistics.counts_of_conversations(session, ids)
        await self.statistics.add_aggregates(session, counts)
        if "callback_requests" in await self.statistics.tables(session):
            await session.execute(delete(CALLBACKS).where(CALLBACKS.c.conversation_id.in_(ids)))
        await session.execute(delete(Conversation).where(Conversation.id.in_(ids)))
        return examples

    async def delete_inactive(self, cutoff: datetime, active_states: Sequence[str],
                              limit: int) -> tuple[int, list[int]]:
        """Delete up to ``limit`` conversations inactive since before ``cutoff`` and in none of
        ``active_states`` (one transaction): (how many, the changes that added their examples)."""
        async with self.store.transaction() as tx:
            ids = list((await tx.session.execute(
                select(Conversation.id).where(Conversation.last_activity_at < cutoff,
                                              Conversation.handoff_state.not_in(active_states))
                .order_by(Conversation.id).limit(limit))).scalars())
            examples = await self._delete(tx.session, ids) if ids else []
        return len(ids), examples

    async def delete_one(self, conversation_id: int, active_states: Sequence[str]) -> list[int] | None:
        """Delete one conversation now (its counts rolled up first): the changes that added
        examples from it; None when there is no such conversation. ConversationActive when
        it is in one of ``active_states``."""
        async with self.store.transaction() as tx:
            conversation = await Conversations(self.store).lock(tx, conversation_id)
            if conversation is None:
                return None
            if conversation.handoff_state in active_states:
                raise ConversationActive(conversation.handoff_state)
            return await self._delete(tx.session, [conversation_id])

    async def prune_audit(self, before: datetime) -> int:
        """Delete the audit records older than ``before``; how many."""
        async with self.store.transaction() as tx:
            result = await tx.session.execute(delete(AuditRecord).where(AuditRecord.at < before))
        return result.rowcount or 0

    async def record_run(self, *, cutoff: datetime, deleted: int, trigger: str) -> None:
        async with self.store.transaction() as tx:
            tx.session.add(RetentionRun(at=utcnow(), cutoff=cutoff, conversations_deleted=deleted,
                                        trigger=trigger))

    async def status(self) -> RetentionStatus:
        """The last run, and the oldest conversation's last activity."""
        async with self.store.reading() as session:
            last = (await session.execute(
                select(RetentionRun).order_by(RetentionRun.id.desc()).limit(1))).scalar_one_or_none()
            oldest = (await session.execute(
                select(Conversation.last_activity_at).order_by(Conversation.last_activity_at).limit(1)
            )).scalar_one_or_none()
        return RetentionStatus(last, oldest)

    async def conversation(self, conversation_id: int) -> ConversationRecord | None:
        """Everything kept of one conversation (None when there is none)."""
        async with self.store.reading() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return None
            messages = (await session.execute(select(Message).where(
                Message.conversation_id == conversation_id).order_by(Message.id))).scalars().all()
            moves = (await session.execute(select(HandoffTransition).where(
                HandoffTransition.conversation_id == conversation_id).order_by(HandoffTransition.id))).scalars().all()
            related = await self._related(session, conversation_id)
        return ConversationRecord(conversation, messages, moves, related)

    async def _related(self, session: AsyncSession, conversation_id: int) -> dict[str, list]:
        conn = await session.connection()
        present = await conn.run_sync(lambda sync: {
            name: {c["name"] for c in inspect(sync).get_columns(name)}
            for name in inspect(sync).get_table_names() if name in EXPORT_TABLES})
        out: dict[str, list] = {}
        for name, wanted in EXPORT_TABLES.items():
            if name not in present:
                continue
            cols = [c for c in wanted if c in present[name]]
            t = table(name, *(column(c) for c in cols), column("conversation_id"))
            rows = (await session.execute(select(*(t.c[c] for c in cols))
                                          .where(t.c.conversation_id == conversation_id))).all()
            out[name] = [dict(zip(cols, row)) for row in rows]
        return out

    async def scrub(self) -> None:
        """After a deletion on SQLite: the write-ahead log, which still holds the deleted rows'
        old pages, is checkpointed and truncated; once per process, a VACUUM when the file has
        free pages (deletions from before secure_delete). Nothing to do on PostgreSQL."""
        engine = self.store.engine
        if engine.dialect.name != "sqlite":
            return

        def work(connection) -> None:
            # On the driver's cursor: no BEGIN around it (VACUUM cannot run in a transaction).
            cursor = connection.connection.dbapi_connection.cursor()
            try:
                if not self._vacuum_checked:
                    self._vacuum_checked = True
                    cursor.execute("PRAGMA freelist_count")
                    free = cursor.fetchone()[0]
                    if free:
                        cursor.execute("VACUUM")
                        log.info("SQLite VACUUM: %d free pages released", free)
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                cursor.fetchall()
            finally:
                cursor.close()

        try:
            async with engine.connect() as conn:
                await conn.run_sync(work)
        except Exception as exc:  # busy readers: the next run tries again
            log.warning("SQLite scrub after deletion did not finish: %s", type(exc).__name__)
