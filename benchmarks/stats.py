"""Small helpers for benchmark figures."""

from __future__ import annotations

import statistics


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values_secs: list[float]) -> str:
    ms = [v * 1000 for v in values_secs]
    return (f"p50 {percentile(ms, 50):7.2f} ms  p90 {percentile(ms, 90):7.2f} ms  "
            f"p99 {percentile(ms, 99):7.2f} ms  mean {statistics.fmean(ms) if ms else float('nan'):7.2f} ms  n={len(ms)}")


def rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
