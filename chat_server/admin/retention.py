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

from redis.asyncio import Redis

from bot.settings import Settings

from .. import handoff as hs
from ..errors import KeepRefused, NotFound, RetentionBusy
from ..store.admin.changes import ChangeRepository
from ..store.admin.retention import RetentionRepository
from ..store.models import utcnow
from .changes import ContentService, StaffRef
from .editing import Edit, TrainingData
from .locks import cluster_lock

log = logging.getLogger(__name__)

RETENTION_FIRST_RUN_SECS = 60.0  # after start: not while a fleet of processes is booting
RETENTION_INTERVAL_SECS = 3600.0
RETENTION_BATCH = 200  # conversations per transaction
RETENTION_LOCK_SECS = 1800
ACTIVE_STATES = (hs.QUEUED, hs.COUNSELLOR)
REMOVED_TEXT = "[removed with its conversation]"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class Retention:
    """Deleting what is past retention (periodically, or one conversation on request),
    and exporting one conversation."""

    def __init__(self, repository: RetentionRepository, changes: ChangeRepository, content: ContentService,
                 settings: Settings, redis: Redis | None = None) -> None:
        self.repository = repository
        self.changes = changes
        self.content = content  # to take examples out of the training data
        self.redis = redis
        self.days = settings.retention_days
        self.audit_days = settings.audit_retention_days
        self.lock_key = settings.redis_prefix + "admin:retention-lock"
        self._running = asyncio.Lock()

    async def forget_examples(self, change_ids: list[int]) -> int:
        """Remove the examples these changes added from the training data, and blank their text
        in the change history. The number removed."""
        if not change_ids:
            return 0
        rows = await self.changes.examples(change_ids)
        wanted = [(row.id, dict(row.item), row.after) for row in rows if isinstance(row.after, str)]

        def build(data: TrainingData) -> list[Edit]:
            edits: list[Edit] = []
            for _, key, text in wanted:
                if text in data.examples(key["intent"], key["language"]) and not any(
                        e.key == key and e.before == text for e in edits):
                    edits.append(Edit("example", key, text, None))
            return edits

        removed = await self.content.submit_edits(build, StaffRef("retention", "Retention"), source="retention")
        await self.changes.blank_texts([row_id for row_id, _, _ in wanted] + [c["id"] for c in removed],
                                       REMOVED_TEXT)
        if removed:
            log.info("retention removed %d training examples taken from deleted conversations", len(removed))
        return len(removed)

    async def keep_example(self, change_id: int, staff: StaffRef, reason: Any) -> None:
        """An admin's decision to keep an example after its conversation is gone (recorded)."""
        reason = " ".join(reason.split())[:400] if isinstance(reason, str) else ""
        if not reason:
            raise KeepRefused("a reason is needed")
        if not await self.changes.keep_example(change_id, staff_id=staff.id, staff_name=staff.name,
                                               reason=reason):
            raise NotFound("no example taken from the inbox with that change id")

    async def run(self, *, trigger: str = "schedule", now: datetime | None = None) -> int | None:
        """Delete what is past retention. The number deleted; None when another process is at it."""
        if self.days <= 0 and self.audit_days <= 0:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.days)
        async with self._running, cluster_lock(self.redis, self.lock_key, RETENTION_LOCK_SECS) as got:
            if not got:
                return None
            audit_deleted = 0
            if self.audit_days > 0:
                audit_deleted = await self.repository.prune_audit((now or utcnow()) - timedelta(days=self.audit_days))
            deleted = 0
            examples: list[int] = []
            while self.days > 0:
                count, taken = await self.repository.delete_inactive(cutoff, ACTIVE_STATES, RETENTION_BATCH)
                examples += taken
                deleted += count
                if count < RETENTION_BATCH:
                    break
            await self.repository.record_run(cutoff=cutoff, deleted=deleted, trigger=trigger)
            await self.forget_examples(examples)
            if deleted or audit_deleted:
                await self.repository.scrub()
        if deleted:
            log.info("retention deleted %d conversations older than %d days", deleted, self.days)
        if audit_deleted:
            log.info("retention deleted %d audit records older than %d days", audit_deleted, self.audit_days)
        return deleted

    async def run_now(self) -> int:
        """A run an admin asked for: the number deleted (RetentionBusy when another process is at it)."""
        deleted = await self.run(trigger="admin")
        if deleted is None:
            raise RetentionBusy("another server process is deleting old conversations right now")
        return deleted

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
        status = await self.repository.status()
        last = status.last_run
        return {"days": self.days,
                "last_run": None if last is None else {
                    "at": last.at.isoformat(), "deleted": last.conversations_deleted,
                    "trigger": last.trigger, "cutoff": last.cutoff.isoformat()},
                "oldest_activity": _iso(status.oldest_activity)}

    # --- one conversation, on request ---------------------------------------------------------

    async def export(self, conversation_id: int) -> dict[str, Any]:
        """Everything kept of one conversation, as JSON-able data (NotFound if there is none)."""
        record = await self.repository.conversation(conversation_id)
        if record is None:
            raise NotFound("no such conversation (deleted, or never existed)")
        conversation = record.conversation
        return {
            "conversation": {
                "id": conversation.id, "created_at": _iso(conversation.created_at),
                "last_activity_at": _iso(conversation.last_activity_at), "language": conversation.language,
                "topic": conversation.topic, "handoff_state": conversation.handoff_state,
                "handoff_reason": conversation.handoff_reason, "priority": conversation.priority},
            "messages": [{"id": m.id, "sender": m.sender, "text": m.text, "time": _iso(m.created_at),
                          "language": m.language, "intent": m.intent, "confidence": m.confidence,
                          "response_id": m.response_id, "quick_replies": m.quick_replies}
                         for m in record.messages],
            "handoff_transitions": [{"from": t.from_state, "to": t.to_state, "actor": t.actor,
                                     "reason": t.reason, "at": _iso(t.at)} for t in record.transitions],
            **{name: [{c: _iso(v) for c, v in row.items()} for row in rows]
               for name, rows in record.related.items()},
            "exported_at": _iso(utcnow()),
            "note": "Resident messages are stored redacted (identity codes, phone numbers, "
                    "e-mail addresses and IBANs replaced).",
        }

    async def delete_one(self, conversation_id: int) -> None:
        """Delete one conversation now (its counts rolled up first). NotFound if there is none;
        ConversationActive while it is queued or with a counsellor."""
        examples = await self.repository.delete_one(conversation_id, ACTIVE_STATES)
        if examples is None:
            raise NotFound("no such conversation (deleted, or never existed)")
        await self.forget_examples(examples)
        await self.repository.scrub()
        log.info("conversation %s deleted on request", conversation_id)
