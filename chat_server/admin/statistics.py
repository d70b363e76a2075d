"""Statistics for Polku's reporting: counts only, never who or what was said.

Every measure is a count of (day, measure, key). The same function derives
them from the live tables and, just before retention deletes a
conversation, for the daily aggregate table (``stats_daily``); a report adds
the aggregates to what is still live, so deleting conversations changes no
figure. A conversation counts on the local day (and hour) it started, all of
its handoffs and waits with it; a callback request on the day it was made.
Conversations in which the resident wrote nothing (the widget opened and
closed) are not counted.

Queue waits keep their exact seconds as keys, so medians and percentiles
stay exact after roll-up (nearest-rank method).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import Select, column, func, inspect, select, table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.admin_models import DailyStat
from ..store.models import Conversation, HandoffTransition, Message, UtcDateTime

Key = tuple[date, str, str]

WAIT_BUCKETS = ((60, "0-1"), (120, "1-2"), (300, "2-5"), (600, "5-10"), (1200, "10-20"),
                (1800, "20-30"), (math.inf, "30+"))
MAX_REPORT_DAYS = 731

# id -> kind. daily: a count per day; keyed: totals per key; waits: queue waits.
MEASURES: dict[str, str] = {
    "conversations": "daily",
    "conversations_by_hour": "keyed",
    "conversations_by_topic": "keyed",
    "conversations_by_language": "keyed",
    "answered_by_bot": "keyed",
    "handoffs_by_reason": "keyed",
    "queue_wait_secs": "waits",
    "queue_outcomes": "keyed",
    "callback_requests": "daily",
    "counsellor_tags": "keyed",
}

# The counsellor side's tables, read when they exist (only what counting needs).
_callbacks = table("callback_requests", column("conversation_id"), column("created_at", UtcDateTime()))
_tags = table("conversation_tags", column("conversation_id"), column("tag"))


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


class Statistics:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.tz = ZoneInfo(server.settings.report_timezone)
        self._tables: set[str] | None = None

    async def tables(self, session: AsyncSession) -> set[str]:
        """The optional tables of other features (callbacks, tags) that exist."""
        if self._tables is None:
            conn = await session.connection()
            names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            self._tables = names & {"callback_requests", "conversation_tags"}
        return self._tables

    # --- counting --------------------------------------------------------------------------

    async def counts(self, session: AsyncSession, conversations: Select, callbacks_where) -> Counter:
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
                    select(_tags.c.conversation_id, _tags.c.tag).where(_tags.c.conversation_id.in_(ids)))).all():
                tags[cid].append(tag)
        total: Counter = Counter()
        for row in rows:
            if row.id in wrote:
                total.update(conversation_counts(row, moves[row.id], tags[row.id], self.tz))
        if "callback_requests" in present:
            for (created_at,) in (await session.execute(select(_callbacks.c.created_at).where(callbacks_where))).all():
                total[(created_at.astimezone(self.tz).date(), "callback_requests", "all")] += 1
        return total

    async def counts_of_conversations(self, session: AsyncSession, ids: list[int]) -> Counter:
        """What retention rolls up before deleting these conversations (and their callbacks)."""
        return await self.counts(session, select(Conversation.id).where(Conversation.id.in_(ids)),
                                 _callbacks.c.conversation_id.in_(ids))

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

    # --- reports ------------------------------------------------------------------------

    async def report(self, first: date, last: date) -> dict[str, Any]:
        if last < first:
            first, last = last, first
        if (last - first).days >= MAX_REPORT_DAYS:
            first = last - timedelta(days=MAX_REPORT_DAYS - 1)
        lo, hi = local_day_bounds(first, last, self.tz)
        async with self.server.store.reading() as session:
            live = await self.counts(
                session,
                select(Conversation.id).where(Conversation.created_at >= lo, Conversation.created_at < hi),
                (_callbacks.c.created_at >= lo) & (_callbacks.c.created_at < hi))
            for day, measure, key, count in (await session.execute(
                    select(DailyStat.day, DailyStat.measure, DailyStat.key, func.sum(DailyStat.count))
                    .where(DailyStat.day >= first, DailyStat.day <= last)
                    .group_by(DailyStat.day, DailyStat.measure, DailyStat.key))).all():
                live[(day, measure, key)] += int(count)
        return build_report(live, first, last)


def build_report(counts: Counter, first: date, last: date) -> dict[str, Any]:
    per_measure: dict[str, Counter] = defaultdict(Counter)
    per_day: dict[str, Counter] = defaultdict(Counter)
    for (day, measure, key), count in counts.items():
        if first <= day <= last:
            per_measure[measure][key] += count
            per_day[measure][day] += count
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    measures: dict[str, Any] = {}
    for measure, kind in MEASURES.items():
        if kind == "daily":
            rows = [[d.isoformat(), per_day[measure][d]] for d in days]
        elif measure == "conversations_by_hour":
            rows = [[f"{h:02d}", per_measure[measure][f"{h:02d}"]] for h in range(24)]
        elif kind == "waits":
            rows = wait_buckets(per_measure[measure])
        else:
            rows = sorted(([k, n] for k, n in per_measure[measure].items()), key=lambda r: (-r[1], r[0]))
        entry: dict[str, Any] = {"kind": kind, "rows": rows, "total": sum(per_measure[measure].values())}
        if kind == "waits":
            entry.update(wait_summary(per_measure[measure]))
        measures[measure] = entry
    answered = per_measure["answered_by_bot"]
    decided = answered["bot"] + answered["handoff"]
    measures["answered_by_bot"]["share_bot"] = round(answered["bot"] / decided, 4) if decided else None
    return {"from": first.isoformat(), "to": last.isoformat(), "measures": measures}


def percentile(histogram: Counter, share: float) -> int | None:
    """Nearest-rank percentile of a {seconds: count} histogram."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(share * total))
    seen = 0
    for secs in sorted(histogram, key=int):
        seen += histogram[secs]
        if seen >= rank:
            return int(secs)
    return None


def wait_summary(histogram: Counter) -> dict[str, Any]:
    return {"answered": sum(histogram.values()), "median_secs": percentile(histogram, 0.5),
            "p90_secs": percentile(histogram, 0.9)}


def wait_buckets(histogram: Counter) -> list[list[Any]]:
    counts = [0] * len(WAIT_BUCKETS)
    for secs, n in histogram.items():
        for i, (limit, _) in enumerate(WAIT_BUCKETS):
            if int(secs) < limit:
                counts[i] += n
                break
    return [[label, counts[i]] for i, (_, label) in enumerate(WAIT_BUCKETS)]


def to_csv(report: dict[str, Any], measure: str) -> str:
    """One measure as CSV: day,count / key,count; waits add their median and 90th percentile."""
    entry = report["measures"][measure]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = {"daily": ["day", "count"], "waits": ["wait_minutes", "count"]}.get(entry["kind"], ["key", "count"])
    writer.writerow(header)
    writer.writerows(entry["rows"])
    if entry["kind"] == "waits":
        writer.writerow([])
        writer.writerow(["statistic", "seconds"])
        writer.writerow(["median", "" if entry["median_secs"] is None else entry["median_secs"]])
        writer.writerow(["p90", "" if entry["p90_secs"] is None else entry["p90_secs"]])
    return out.getvalue()
