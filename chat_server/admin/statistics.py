"""Statistics for Polku's reporting: counts only, never who or what was said.

Every measure is a count of (day, measure, key). The same function
(``store/admin/statistics.py``) derives them from the live tables and, just
before retention deletes a conversation, for the daily aggregate table
(``stats_daily``); a report adds
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
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..store.admin.statistics import StatisticsRepository

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


class Statistics:
    """The reports of the statistics page (the counts come from ``repository``)."""

    def __init__(self, repository: StatisticsRepository) -> None:
        self.repository = repository

    @property
    def tz(self) -> ZoneInfo:
        return self.repository.tz

    async def report(self, first: date, last: date) -> dict[str, Any]:
        if last < first:
            first, last = last, first
        if (last - first).days >= MAX_REPORT_DAYS:
            first = last - timedelta(days=MAX_REPORT_DAYS - 1)
        return build_report(await self.repository.period_counts(first, last), first, last)


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
