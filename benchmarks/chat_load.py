"""The chat benchmark's load machinery: client workers (processes or a thread), the
servers under test and their process figures, one load run spread over the workers,
and the figures of a run's window (latency, throughput, errors, CPU, memory).
Used by ``benchmarks.chat``."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import chat_servers as srv
from .chat_client import Control, run_job, worker_main
from .stats import percentile


# --- client workers ------------------------------------------------------------------


class ProcessWorker:
    """A client worker process (its own event loop and core)."""

    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child,), daemon=True, name="polku-bench-client")
        self.proc.start()
        child.close()

    def send(self, obj: Any) -> None:
        self.conn.send(obj)

    def recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"client worker {self.proc.pid} silent for {timeout:.0f} s")
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


class ThreadWorker:
    """The client in a thread of this process (small runs and tests)."""

    def __init__(self) -> None:
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True, name="polku-bench-client")
        self.thread.start()

    def _run(self) -> None:
        control = Control(self.outbox.put, self.inbox.get)
        while True:
            job = self.inbox.get()
            if job is None:
                return
            try:
                self.outbox.put(("done", asyncio.run(run_job(job, control))))
            except Exception as exc:  # noqa: BLE001 - reported to the coordinator
                self.outbox.put(("failed", f"{type(exc).__name__}: {exc}"))

    def send(self, obj: Any) -> None:
        self.inbox.put(obj)

    def recv(self, timeout: float) -> Any:
        try:
            return self.outbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"client thread silent for {timeout:.0f} s") from None

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(10)


def make_workers(count: int) -> list:
    if count <= 0:
        return [ThreadWorker()]
    ctx = multiprocessing.get_context("spawn")
    return [ProcessWorker(ctx) for _ in range(count)]


# --- targets and probes --------------------------------------------------------------


@dataclass
class Target:
    """A server under test: the URLs residents connect to and the processes to watch."""

    name: str
    flavour: str
    urls: list[str]
    socket_pids: list[int]  # the processes holding the residents' sockets
    helper_pids: dict[str, int] = field(default_factory=dict)  # e.g. our Rasa NLU server


def sample(pids: dict[str, int]) -> dict[str, tuple[int, float, float]]:
    """name -> (RSS KB, CPU seconds, run-queue wait seconds)."""
    return {name: (srv.proc_rss_kb(pid), srv.proc_cpu_secs(pid), srv.proc_runqueue_wait_secs(pid))
            for name, pid in pids.items()}


def all_pids(target: Target) -> dict[str, int]:
    pids = {f"server{i + 1}" if len(target.socket_pids) > 1 else "server": pid
            for i, pid in enumerate(target.socket_pids)}
    pids.update(target.helper_pids)
    return pids


def socket_rss(sample: dict[str, tuple[int, float]], target: Target) -> int:
    names = [n for n in all_pids(target) if n.startswith("server")]
    return sum(sample[n][0] for n in names)


def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_on_workers(workers: list, job: dict, residents: int, window_secs: float, target: Target,
                   *, connect_timeout: float, on_ready: Callable[[], None] | None = None,
                   lead_secs: float = 0.5) -> dict:
    """Spread one job's residents over the workers, run it, and measure the target
    before connecting, once all are connected, and over the window."""
    pids = all_pids(target)
    pids.update({f"client{i + 1}": w.proc.pid for i, w in enumerate(workers) if isinstance(w, ProcessWorker)})
    before = sample(pids)
    shares = [residents // len(workers) + (1 if i < residents % len(workers) else 0) for i in range(len(workers))]
    active = [(w, n) for w, n in zip(workers, shares) if n > 0]
    for i, (worker, share) in enumerate(active):
        worker.send({**job, "residents": share, "seed": job.get("seed", 0) * 1000 + i})
    infos = []
    for worker, _ in active:
        kind, info = worker.recv(connect_timeout)
        if kind != "ready":
            raise RuntimeError(f"client worker failed while connecting: {info}")
        infos.append(info)
    time.sleep(0.5)  # let the last session's writes settle
    connected = sample(pids)
    if on_ready is not None:
        on_ready()
    start = time.monotonic() + lead_secs
    end = start + window_secs
    for worker, _ in active:
        worker.send({"start": start, "end": end})
    _sleep_until(start)
    window_start = sample(pids)
    _sleep_until(end)
    window_end = sample(pids)
    results = []
    for worker, _ in active:
        kind, result = worker.recv(job.get("answer_timeout", 10.0) + 120)
        if kind != "done":
            raise RuntimeError(f"client worker failed: {result}")
        results.append(result)
    merged = _merge(results)
    merged.update(start=start, end=end, infos=infos, before=before, connected_sample=connected,
                  window_start=window_start, window_end=window_end)
    return merged


def _merge(results: list[dict]) -> dict:
    stats: dict[str, Any] = {"samples": [], "sent": [], "timeouts": [], "errors": {}, "connect_failures": {},
                             "disconnects": 0, "unexpected": 0, "handoffs": 0, "degraded": 0}
    for result in results:
        s = result["stats"]
        for key in ("samples", "sent", "timeouts"):
            stats[key].extend(s[key])
        for key in ("errors", "connect_failures"):
            for code, count in s[key].items():
                stats[key][code] = stats[key].get(code, 0) + count
        for key in ("disconnects", "unexpected", "handoffs", "degraded"):
            stats[key] += s.get(key, 0)
    return {
        "stats": stats,
        "connected": sum(r.get("connected", 0) for r in results),
        "connect_secs": max((r.get("connect_secs", 0.0) for r in results), default=0.0),
        "client_cpu_secs": [r.get("client_cpu_secs", 0.0) for r in results],
        "loop_lag": [x for r in results for x in r.get("loop_lag", [])],
        "client_rss_kb": [r.get("client_rss_kb", 0) for r in results],
    }


# --- figures --------------------------------------------------------------------------


def window_figures(run: dict, target: Target, t0: float, t1: float, *, by_send: bool) -> dict:
    """Latency, throughput, errors and resources of the messages of a window.

    by_send: latencies of the messages sent in the window (steady load: all of
    them); throughput is always the answers that arrived inside the window."""
    stats = run["stats"]
    samples = stats["samples"]
    chosen = [(a, b) for a, b in samples if t0 <= a < t1] if by_send else samples
    latencies_ms = [(b - a) * 1000 for a, b in chosen]
    answered_in_window = sum(1 for _, b in samples if t0 <= b < t1)
    sent = sum(1 for a in stats["sent"] if t0 <= a < t1) if by_send else len(stats["sent"])
    secs = max(t1 - t0, 1e-9)
    ws, we = run["window_start"], run["window_end"]
    span = run["end"] - run["start"]
    cpu = {name: 100 * (we[name][1] - ws[name][1]) / span for name in we}
    runq = {name: 100 * (we[name][2] - ws[name][2]) / span for name in we}
    answered_window = sum(1 for _, b in samples if run["start"] <= b < run["end"])
    cpu_ms_per_answer = {name: 1000 * (we[name][1] - ws[name][1]) / max(answered_window, 1) for name in we}
    # The chat server's own processes (the ones holding the sockets), not the NLU's.
    server_cpu_secs = sum(we[name][1] - ws[name][1] for name in we if name.startswith("server"))
    connected = max(run["connected"], 1)
    rss_before = socket_rss(run["before"], target)
    rss_connected = socket_rss(run["connected_sample"], target)
    rss_end = socket_rss(we, target)
    client_cpu = 100 * sum(run["client_cpu_secs"]) / (run["end"] - run["start"])
    lag = run["loop_lag"]
    return {
        "connected": run["connected"],
        "sent": sent,
        "answered": len(latencies_ms),
        "answered_per_sec": answered_in_window / secs,
        "p50_ms": percentile(latencies_ms, 50),
        "p90_ms": percentile(latencies_ms, 90),
        "p95_ms": percentile(latencies_ms, 95),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms) if latencies_ms else float("nan"),
        "mean_ms": statistics.fmean(latencies_ms) if latencies_ms else float("nan"),
        "errors": sum(stats["errors"].values()),
        "error_codes": stats["errors"],
        "timeouts": len(stats["timeouts"]),
        "connect_failures": sum(stats["connect_failures"].values()),
        "disconnects": stats["disconnects"],
        "unexpected": stats["unexpected"],
        "handoffs": stats["handoffs"],
        "degraded": stats.get("degraded", 0),
        "rss_before_mb": rss_before / 1024,
        "rss_connected_mb": rss_connected / 1024,
        "rss_end_mb": rss_end / 1024,
        "rss_per_conn_kb": (rss_connected - rss_before) / connected,
        "rss_by_process_mb": {name: we[name][0] / 1024 for name in we},
        "cpu_pct": cpu,
        "runqueue_wait_pct": runq,
        "cpu_ms_per_answer": cpu_ms_per_answer,
        "server_cpu_ms_per_answer": 1000 * server_cpu_secs / max(answered_window, 1),
        "client_cpu_pct": client_cpu,
        "client_procs": len(run["client_cpu_secs"]),
        "client_lag_p99_ms": percentile([x * 1000 for x in lag], 99),
        "connect_secs": run["connect_secs"],
    }


def failures(f: dict) -> int:
    """Messages that did not get a real answer: errors, timeouts, NLU-unavailable answers."""
    return f["errors"] + f["timeouts"] + f["degraded"]


def sound(f: dict) -> bool:
    """At most 1% of a level's messages failed."""
    return failures(f) <= 0.01 * max(f["sent"], 1)


def fmt(value: float, width: int = 7, digits: int = 1) -> str:
    if value != value:  # NaN
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def print_load_table(title: str, rows: list[tuple[str, dict]], out: Callable[[str], None]) -> None:
    out("")
    out(title)
    out(f"  {'server':<40} {'conn':>6} {'sent':>7} {'answd':>7} {'ans/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'errors':>6} {'t/outs':>6} {'CPU ms/answer':>13}")
    for name, f in rows:
        out(f"  {name:<40} {f['connected']:>6} {f['sent']:>7} {f['answered']:>7} {fmt(f['answered_per_sec'])} "
            f"{fmt(f['p50_ms'])} {fmt(f['p95_ms'])} {fmt(f['p99_ms'])} {fmt(f['max_ms'])} "
            f"{f['errors']:>6} {f['timeouts']:>6} {fmt(f['server_cpu_ms_per_answer'], 13, 2)}")
    out("  (CPU ms/answer: CPU time of the chat server process(es) over the window / answers in it; "
        "ours without the NLU's Rasa)")
    for name, f in rows:
        cpu = "  ".join(f"{k} {v:.0f}% ({f['cpu_ms_per_answer'][k]:.1f} ms/answer, waited for a core "
                        f"{f['runqueue_wait_pct'][k]:.0f}%)" for k, v in f["cpu_pct"].items())
        rss = "  ".join(f"{k} {v:.0f}" for k, v in f["rss_by_process_mb"].items())
        out(f"  {name:<40} RSS MB: {rss}; sockets' process(es) {f['rss_before_mb']:.0f} -> "
            f"{f['rss_connected_mb']:.0f} connected -> {f['rss_end_mb']:.0f} end, "
            f"{f['rss_per_conn_kb']:.1f} KB/connection")
        notes = []
        if f["connect_failures"]:
            notes.append(f"connect failures {f['connect_failures']}")
        if f["disconnects"]:
            notes.append(f"disconnects {f['disconnects']}")
        if f["error_codes"]:
            notes.append(f"error codes {f['error_codes']}")
        if f["unexpected"]:
            notes.append(f"unmatched answers {f['unexpected']}")
        if f["handoffs"]:
            notes.append(f"handoffs left {f['handoffs']}")
        if f["degraded"]:
            notes.append(f"answers saying the NLU was unavailable {f['degraded']}")
        out(f"  {'':<40} CPU (% of one core) over the window: {cpu}; client {f['client_cpu_pct']:.0f}% "
            f"over {f['client_procs']} process(es), client loop lag p99 {f['client_lag_p99_ms']:.1f} ms; "
            f"connected in {f['connect_secs']:.1f} s" + (f"; {'; '.join(notes)}" if notes else ""))


class Ramp:
    """One server's saturation ramp: more concurrent residents each level, until
    the throughput stops rising (two levels without 5% more) or answers fail."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.levels: list[dict] = []
        self.best = 0.0
        self.flat = 0
        self.done = False

    def add(self, f: dict, answer_timeout: float) -> None:
        self.levels.append(f)
        if f["answered_per_sec"] > self.best * 1.05:
            self.best, self.flat = f["answered_per_sec"], 0
        else:
            self.flat += 1
        self.done = self.flat >= 2 or not sound(f) or f["p99_ms"] > 1000 * answer_timeout / 2

    def result(self) -> dict:
        # A level where more than 1% failed (the bot answering "the service is not
        # answering" when Rasa timed out is quick, but not an answer) is no peak.
        healthy = [f for f in self.levels if sound(f)] or self.levels
        peak = max(healthy, key=lambda f: f["answered_per_sec"])
        return {"levels": self.levels, "peak_answered_per_sec": peak["answered_per_sec"],
                "peak_concurrency": peak["concurrency"], "load_after": srv.loadavg()}
