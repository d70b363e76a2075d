"""Retention: conversations are kept POLKU_RETENTION_DAYS after their last
message, then deleted, their statistics first rolled up into daily counts
(in the same transaction: a figure is never lost nor counted twice).

Deleting a conversation deletes its messages, handoff transitions, notes,
tags and inbox entries (foreign keys cascade) and, explicitly, its callback
requests (whose contact details would otherwise outlive it). The audit log
keeps the ids of what staff did, never text.

A periodic task in every chat server process; only one acts at a time (a
Redis lock when Redis is configured). Conversations still queued or with a
counsellor are never deleted. The same run deletes audit records older than
POLKU_AUDIT_RETENTION_DAYS.

Deletion that really removes, on SQLite: ``secure_delete`` is on for every
connection (``db.py``), so deleted rows are overwritten with zeros instead of
staying readable in free pages; after a deletion the write-ahead log, which
still holds the old pages, is checkpointed and truncated; and the first run of
a process VACUUMs when the file has free pages (left by deletions made before
``secure_delete`` was on). PostgreSQL's VACUUM (autovacuum) reclaims dead rows
itself; their bytes stay on disk until the space is reused (not covered).

Admins can also export one conversation (JSON) or delete it on request.

Examples taken from a conversation: a resident message an admin assigned to a
topic in the inbox became a training example (an ``admin_inbox_decisions``
row links the message to the change that added it). When the conversation is
deleted, that example is removed from the training data too (a change of its
own, source "retention"), and the text is blanked in the change history, in
the change that added it and in the one that removed it. An admin can keep an
example instead, by an explicit decision recorded with a reason
(``POST /admin/api/changes/{id}/keep``, ``admin_kept_examples``, audited).
Models trained before keep what they learned until the next training.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import column, delete, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from .. import handoff as hs
from ..store.admin_models import ContentChange, InboxDecision, KeptExample, RetentionRun
from ..store.models import Conversation, HandoffTransition, Message, utcnow
from ..store.staff_models import AuditRecord
from .locks import cluster_lock
from .statistics import Statistics

log = logging.getLogger(__name__)

RETENTION_FIRST_RUN_SECS = 60.0  # after start: not while a fleet of processes is booting
RETENTION_INTERVAL_SECS = 3600.0
RETENTION_BATCH = 200  # conversations per transaction
RETENTION_LOCK_SECS = 1800
ACTIVE_STATES = (hs.QUEUED, hs.COUNSELLOR)
REMOVED_TEXT = "[removed with its conversation]"

_callbacks = table("callback_requests", column("conversation_id"))

# Related rows of other features put into an export, when their tables exist.
EXPORT_TABLES = {
    "callback_requests": ("id", "status", "name", "phone", "preferred_time", "topic", "language",
                          "consent_at", "created_at", "done_at"),
    "conversation_notes": ("id", "text", "created_at"),
    "conversation_tags": ("id", "tag", "label", "created_at"),
}


class ConversationActive(ValueError):
    """The conversation is queued or with a counsellor: close it first."""


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class Retention:
    def __init__(self, server: Any, statistics: Statistics, content: Any = None) -> None:
        self.server = server
        self.statistics = statistics
        self.content = content  # the ContentService, to take examples out of the training data
        self.days = server.settings.retention_days
        self.audit_days = server.settings.audit_retention_days
        self._running = asyncio.Lock()
        self._vacuum_checked = False

    @property
    def lock_key(self) -> str:
        return self.server.settings.redis_prefix + "admin:retention-lock"

    async def _delete(self, session: AsyncSession, ids: list[int]) -> list[int]:
        """Roll the conversations' counts up, then delete them (inside the caller's transaction).
        The ids of the changes that added examples from their messages (not kept by an admin):
        the caller removes those after the commit (``forget_examples``)."""
        examples = list((await session.execute(
            select(InboxDecision.change_id).join(Message, Message.id == InboxDecision.message_id)
            .where(Message.conversation_id.in_(ids), InboxDecision.action == "assigned",
                   InboxDecision.change_id.is_not(None),
                   InboxDecision.change_id.not_in(select(KeptExample.change_id))))).scalars())
        counts = await self.statistics.counts_of_conversations(session, ids)
        await self.statistics.add_aggregates(session, counts)
        if "callback_requests" in await self.statistics.tables(session):
            await session.execute(delete(_callbacks).where(_callbacks.c.conversation_id.in_(ids)))
        await session.execute(delete(Conversation).where(Conversation.id.in_(ids)))
        return examples

    async def forget_examples(self, change_ids: list[int]) -> int:
        """Remove the examples these changes added from the training data, and blank their text
        in the change history. The number removed."""
        if not change_ids or self.content is None:
            return 0
        from .changes import StaffRef
        from .editing import Edit

        async with self.server.store.reading() as session:
            rows = list((await session.execute(select(ContentChange).where(
                ContentChange.id.in_(change_ids), ContentChange.kind == "example"))).scalars())
        wanted = [(row.id, dict(row.item), row.after) for row in rows if isinstance(row.after, str)]

        def build(data):
            edits = []
            for _, key, text in wanted:
                if text in data.examples(key["intent"], key["language"]) and not any(
                        e.key == key and e.before == text for e in edits):
                    edits.append(Edit("example", key, text, None))
            return edits

        removed = await self.content.submit_edits(build, StaffRef("retention", "Retention"), source="retention")
        scrub = [row_id for row_id, _, _ in wanted] + [c["id"] for c in removed]
        async with self.server.store.transaction() as tx:
            for row in (await tx.session.execute(select(ContentChange).where(ContentChange.id.in_(scrub)))).scalars():
                where = f"{row.item.get('intent')} ({row.item.get('language')})"
                row.before = REMOVED_TEXT if isinstance(row.before, str) else row.before
                row.after = REMOVED_TEXT if isinstance(row.after, str) else row.after
                row.summary = f"{'-' if row.source == 'retention' else '+'} {where}: {REMOVED_TEXT}"
        if removed:
            log.info("retention removed %d training examples taken from deleted conversations", len(removed))
        return len(removed)

    async def keep_example(self, change_id: int, staff: Any, reason: str) -> None:
        """An admin's decision to keep an example after its conversation is gone (recorded)."""
        reason = " ".join(reason.split())[:400] if isinstance(reason, str) else ""
        if not reason:
            raise ValueError("a reason is needed")
        async with self.server.store.transaction() as tx:
            row = await tx.session.get(ContentChange, change_id)
            if row is None or row.kind != "example" or row.source != "inbox":
                raise LookupError("no example taken from the inbox with that change id")
            if await tx.session.get(KeptExample, change_id) is None:
                tx.session.add(KeptExample(change_id=change_id, staff_id=str(staff.id),
                                           staff_name=staff.display_name, reason=reason, at=utcnow()))

    async def run(self, *, trigger: str = "schedule", now: datetime | None = None) -> int | None:
        """Delete what is past retention. The number deleted; None when another process is at it."""
        if self.days <= 0 and self.audit_days <= 0:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.days)
        async with self._running, cluster_lock(self.server.redis, self.lock_key, RETENTION_LOCK_SECS) as got:
            if not got:
                return None
            audit_deleted = await self._prune_audit(now or utcnow())
            deleted = 0
            examples: list[int] = []
            while self.days > 0:
                async with self.server.store.transaction() as tx:
                    ids = list((await tx.session.execute(
                        select(Conversation.id).where(Conversation.last_activity_at < cutoff,
                                                      Conversation.handoff_state.not_in(ACTIVE_STATES))
                        .order_by(Conversation.id).limit(RETENTION_BATCH))).scalars())
                    if ids:
                        examples += await self._delete(tx.session, ids)
                deleted += len(ids)
                if len(ids) < RETENTION_BATCH:
                    break
            async with self.server.store.transaction() as tx:
                tx.session.add(RetentionRun(at=utcnow(), cutoff=cutoff, conversations_deleted=deleted,
                                            trigger=trigger))
            await self.forget_examples(examples)
            if deleted or audit_deleted:
                await self.scrub()
        if deleted:
            log.info("retention deleted %d conversations older than %d days", deleted, self.days)
        if audit_deleted:
            log.info("retention deleted %d audit records older than %d days", audit_deleted, self.audit_days)
        return deleted

    async def _prune_audit(self, now: datetime) -> int:
        if self.audit_days <= 0:
            return 0
        async with self.server.store.transaction() as tx:
            result = await tx.session.execute(
                delete(AuditRecord).where(AuditRecord.at < now - timedelta(days=self.audit_days)))
        return result.rowcount or 0

    async def scrub(self) -> None:
        """After a deletion on SQLite: the write-ahead log, which still holds the deleted rows'
        old pages, is checkpointed and truncated; once per process, a VACUUM when the file has
        free pages (deletions from before secure_delete). Nothing to do on PostgreSQL."""
        engine = self.server.engine
        if engine is None or engine.dialect.name != "sqlite":
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

    async def loop(self) -> None:
        await asyncio.sleep(RETENTION_FIRST_RUN_SECS)
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again
                log.error("retention run failed: %s", type(exc).__name__)
            await asyncio.sleep(RETENTION_INTERVAL_SECS)

    async def status(self) -> dict[str, Any]:
        async with self.server.store.reading() as session:
            last = (await session.execute(
                select(RetentionRun).order_by(RetentionRun.id.desc()).limit(1))).scalar_one_or_none()
            oldest = (await session.execute(
                select(Conversation.last_activity_at).order_by(Conversation.last_activity_at).limit(1)
            )).scalar_one_or_none()
        return {"days": self.days,
                "last_run": None if last is None else {
                    "at": last.at.isoformat(), "deleted": last.conversations_deleted,
                    "trigger": last.trigger, "cutoff": last.cutoff.isoformat()},
                "oldest_activity": _iso(oldest)}

    # --- one conversation, on request ---------------------------------------------------------

    async def export(self, conversation_id: int) -> dict[str, Any] | None:
        """Everything kept of one conversation, as JSON-able data (None if there is none)."""
        async with self.server.store.reading() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return None
            messages = (await session.execute(select(Message).where(
                Message.conversation_id == conversation_id).order_by(Message.id))).scalars().all()
            moves = (await session.execute(select(HandoffTransition).where(
                HandoffTransition.conversation_id == conversation_id).order_by(HandoffTransition.id))).scalars().all()
            related = await self._related(session, conversation_id)
        return {
            "conversation": {
                "id": conversation.id, "created_at": _iso(conversation.created_at),
                "last_activity_at": _iso(conversation.last_activity_at), "language": conversation.language,
                "topic": conversation.topic, "handoff_state": conversation.handoff_state,
                "handoff_reason": conversation.handoff_reason, "priority": conversation.priority},
            "messages": [{"id": m.id, "sender": m.sender, "text": m.text, "time": _iso(m.created_at),
                          "language": m.language, "intent": m.intent, "confidence": m.confidence,
                          "response_id": m.response_id, "quick_replies": m.quick_replies} for m in messages],
            "handoff_transitions": [{"from": t.from_state, "to": t.to_state, "actor": t.actor,
                                     "reason": t.reason, "at": _iso(t.at)} for t in moves],
            **related,
            "exported_at": _iso(utcnow()),
            "note": "Resident messages are stored redacted (identity codes, phone numbers, "
                    "e-mail addresses and IBANs replaced).",
        }

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
            out[name] = [{c: _iso(v) for c, v in zip(cols, row)} for row in rows]
        return out

    async def delete_one(self, conversation_id: int) -> bool:
        """Delete one conversation now (its counts rolled up first). False if there is none."""
        async with self.server.store.transaction() as tx:
            conversation = await self.server.conversations.lock(tx, conversation_id)
            if conversation is None:
                return False
            if conversation.handoff_state in ACTIVE_STATES:
                raise ConversationActive(conversation.handoff_state)
            examples = await self._delete(tx.session, [conversation_id])
        await self.forget_examples(examples)
        await self.scrub()
        log.info("conversation %s deleted on request", conversation_id)
        return True
