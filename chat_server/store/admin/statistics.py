"""The counts behind Polku's statistics: what each conversation adds to a
(day, measure, key) count, read from the live tables, and the daily
aggregates (``stats_daily``) that retention rolls them up into before it
deletes a conversation. Counts only, never who or what was said."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, column, func, inspect, select, table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..admin_models import DailyStat
from ..core import Store
from ..models import Conversation, HandoffTransition, Message, UtcDateTime

Key = tuple[date, str, str]

# The counsellor side's tables, read when they exist (only what counting needs).
CALLBACKS = table("callback_requests", column("conversation_id"), column("created_at", UtcDateTime()))
_TAGS = table("conversation_tags", column("conversation_id"), column("tag"))


def local_day_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of the start of ``first`` and the end of ``last`` in ``tz``."""
    lo = datetime.combine(first, time(0), tz).astimezone(timezone.utc)
    hi = datetime.combine(last + timedelta(days=1), time(0), tz).astimezone(timezone.utc)
    return lo, hi


def conversation_counts(conversation: Any, transitions: Iterable[Any], tags: Iterable[str],
                        tz: ZoneInfo) -> Counter:
    """The counts one conversation adds (to the day it started)."""
    counts: Counter = Counter()
    local = conversation.created_at.astimezone(tz)
    day = local.date()
    counts[(day, "conversations", "all")] += 1
    counts[(day, "conversations_by_hour", f"{local.hour:02d}")] += 1
    counts[(day, "conversations_by_topic", conversation.topic or "none")] += 1
    counts[(day, "conversations_by_language", conversation.language or "unknown")] += 1
    handed_over = False
    entered: datetime | None = None
    for move in transitions:
        if move.from_state == move.to_state:
            continue  # not a move: a crisis flag raised while waiting or talking
        if move.to_state == "queued":
            entered = move.at
            if move.from_state == "bot":
                handed_over = True
                counts[(day, "handoffs_by_reason", move.reason or "unknown")] += 1
        elif move.from_state == "queued":
            outcome = {"counsellor": "counsellor", "bot": "left", "closed": "closed"}.get(move.to_state, "other")
            counts[(day, "queue_outcomes", outcome)] += 1
            if move.to_state == "counsellor" and entered is not None:
                wait = max(0, int((move.at - entered).total_seconds()))
                counts[(day, "queue_wait_secs", str(wait))] += 1
            entered = None
    counts[(day, "answered_by_bot", "handoff" if handed_over else "bot")] += 1
    for tag in tags:
        counts[(day, "counsellor_tags", tag)] += 1
    return counts


class StatisticsRepository:
    def __init__(self, store: Store, tz: ZoneInfo) -> None:
        self.store = store
        self.tz = tz
        self._tables: set[str] | None = None

    async def tables(self, session: AsyncSession) -> set[str]:
        """The optional tables of other features (callbacks, tags) that exist."""
        if self._tables is None:
            conn = await session.connection()
            names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            self._tables = names & {"callback_requests", "conversation_tags"}
        return self._tables

    async def counts(self, session: AsyncSession, conversations: Select,
                     callbacks_where: ColumnElement[bool]) -> Counter:
        """Counts of the conversations selected by ``conversations`` (a select of ids) and of
        the callback requests matching ``callbacks_where``."""
        ids = conversations
        rows = (await session.execute(
            select(Conversation.id, Conversation.created_at, Conversation.language, Conversation.topic)
            .where(Conversation.id.in_(ids)))).all()
        wrote = set((await session.execute(
            select(Message.conversation_id).where(Message.conversation_id.in_(ids),
                                                  Message.sender == "resident")
            .group_by(Message.conversation_id))).scalars())
        moves: dict[int, list] = defaultdict(list)
        for move in (await session.execute(
                select(HandoffTransition.conversation_id, HandoffTransition.from_state,
                       HandoffTransition.to_state, HandoffTransition.reason, HandoffTransition.at)
                .where(HandoffTransition.conversation_id.in_(ids)).order_by(HandoffTransition.id))).all():
            moves[move.conversation_id].append(move)
        present = await self.tables(session)
        tags: dict[int, list[str]] = defaultdict(list)
        if "conversation_tags" in present:
            for cid, tag in (await session.execute(
                    select(_TAGS.c.conversation_id, _TAGS.c.tag).where(_TAGS.c.conversation_id.in_(ids)))).all():
                tags[cid].append(tag)
        total: Counter = Counter()
        for row in rows:
            if row.id in wrote:
                total.update(conversation_counts(row, moves[row.id], tags[row.id], self.tz))
        if "callback_requests" in present:
            for (created_at,) in (await session.execute(select(CALLBACKS.c.created_at).where(callbacks_where))).all():
                total[(created_at.astimezone(self.tz).date(), "callback_requests", "all")] += 1
        return total

    async def counts_of_conversations(self, session: AsyncSession, ids: list[int]) -> Counter:
        """What retention rolls up before deleting these conversations (and their callbacks)."""
        return await self.counts(session, select(Conversation.id).where(Conversation.id.in_(ids)),
                                 CALLBACKS.c.conversation_id.in_(ids))

    async def add_aggregates(self, session: AsyncSession, counts: Counter) -> None:
        """Add ``counts`` to stats_daily (insert or increment)."""
        if not counts:
            return
        dialect = session.bind.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        for (day, measure, key), count in sorted(counts.items()):
            statement = insert(DailyStat).values(day=day, measure=measure, key=key[:80], count=count)
            statement = statement.on_conflict_do_update(
                index_elements=["day", "measure", "key"],
                set_={"count": DailyStat.count + statement.excluded.count})
            await session.execute(statement)

    async def period_counts(self, first: date, last: date) -> Counter:
        """Every count of the local days ``first``..``last``: the live tables' plus the aggregates."""
        lo, hi = local_day_bounds(first, last, self.tz)
        async with self.store.reading() as session:
            live = await self.counts(
                session,
                select(Conversation.id).where(Conversation.created_at >= lo, Conversation.created_at < hi),
                (CALLBACKS.c.created_at >= lo) & (CALLBACKS.c.created_at < hi))
            for day, measure, key, count in (await session.execute(
                    select(DailyStat.day, DailyStat.measure, DailyStat.key, func.sum(DailyStat.count))
                    .where(DailyStat.day >= first, DailyStat.day <= last)
                    .group_by(DailyStat.day, DailyStat.measure, DailyStat.key))).all():
                live[(day, measure, key)] += int(count)
        return live
