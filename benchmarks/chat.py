"""Chat load benchmark: many concurrent Socket.IO residents against our chat
server and, in the same run, against stock ``rasa run`` with its socketio
channel on the same NLU data and pipeline.

Scenarios (``--scenario``, default all):

1. steady      N residents (``--residents``, 1000) each send a message every
               ``--interval`` s (20) from a random phase, for ``--duration`` s (60),
               against each configuration of ``--configs`` in turn (default all):
               ``sqlite`` our embedded default (one process, SQLite, no Redis),
               ``postgresql`` one process on PostgreSQL + Redis, ``postgresql-2``
               two processes on PostgreSQL + Redis (residents split between them),
               ``rasa`` stock ``rasa run`` socketio. Each PostgreSQL configuration
               gets a database and a Redis key prefix of its own, removed afterwards.
2. saturation  closed loop (the next message when the answer is in), concurrency
               ramped over ``--sat-levels``; the peak answered/s of each server.
               The two servers take turns level by level. Answers saying the
               NLU was unavailable (Rasa timed out) count as failures.
3. idle        ``--idle-sockets`` (10,000) connected residents with a confirmed
               session in one fresh server process: RSS per connection.

Latency is from sending ``user_uttered`` to the first ``bot_uttered`` that
answers it: for ours the first with ``metadata.sender == "bot"`` stored after
the message (our welcome and handoff notices are system messages), for Rasa
the first ``bot_uttered`` after the send. Everything runs on 127.0.0.1, every
phase is bounded in time, and every process, database and key made here is
removed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import random
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from bot.rasa_server import RasaProcess
from bot.types import LANGUAGES
from bot.settings import PROJECT_ROOT, Settings

from . import chat_servers as srv
from .chat_client import POLKU, RASA, Control, raise_nofile_limit, run_job, worker_main
from .stats import percentile

SCENARIOS = ("steady", "saturation", "idle")
# The steady load's configurations: name -> (row title, our server processes, PostgreSQL + Redis);
# "rasa" is the stock reference.
CONFIGS = {
    "sqlite": ("ours (1 process, SQLite)", 1, False),
    "postgresql": ("ours (1 process, PostgreSQL + Redis)", 1, True),
    "postgresql-2": ("ours (2 processes, PostgreSQL + Redis)", 2, True),
    "rasa": ("stock rasa run (socketio)", 0, False),
}
# Issue 18: one process on PostgreSQL + Redis within this factor of the embedded default's p99;
# two processes under stock Rasa's p99.
TARGET_PRODUCTION_P99_FACTOR = 1.5
ORIGIN = "http://bench.polku.invalid"
NO_ANSWER_INTENTS = frozenset({"crisis", "request_counsellor", "nlu_fallback"})
TARGET_P99_MS = 50.0
TARGET_SATURATION_RATIO = 2.0
TARGET_IDLE_KB = 50.0


@dataclass
class Options:
    residents: int = 1000
    duration: float = 60.0
    interval: float = 20.0
    scenario: str = "all"
    configs: tuple[str, ...] = tuple(CONFIGS)  # of the steady load, in this order
    skip_reference: bool = False
    reference_polku_components: bool = False  # the reference trained with our Rasa components
    idle_sockets: int = 10_000
    sat_levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    sat_step: float = 10.0
    sat_warmup: float = 2.0
    conversation_messages: int = 10  # closed loop: a new conversation after this many messages
    answer_timeout: float = 10.0
    client_procs: int = 1
    compress: bool = True
    database: str = "sqlite"  # of the single-process server in saturation and idle: sqlite or postgresql
    connect_rate: float = 400.0
    seed: int = 20261123
    rasa_url: str | None = None  # NLU Rasa server(s) to use instead of starting them (comma-separated)
    rasa_processes: int = 0  # NLU Rasa processes to start for our server; 0: as many as POLKU_RASA_URL lists
    server_root: str | None = None  # a checkout whose chat_server/ and bot/ to serve (a candidate fix)
    out: str | None = None  # where the JSON results go (default var/bench/chat-<time>.json)
    quiet: bool = False

    def scenarios(self) -> list[str]:
        if self.scenario in ("all", ""):
            return list(SCENARIOS)
        names = [s.strip() for s in self.scenario.split(",") if s.strip()]
        unknown = [s for s in names if s not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)} or all")
        return names

    def steady_configs(self) -> list[str]:
        configs = [c for c in self.configs if not (c == "rasa" and self.skip_reference)]
        unknown = [c for c in configs if c not in CONFIGS]
        if unknown:
            raise SystemExit(f"unknown configuration {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
        return configs


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


def _sample(pids: dict[str, int]) -> dict[str, tuple[int, float, float]]:
    """name -> (RSS KB, CPU seconds, run-queue wait seconds)."""
    return {name: (srv.proc_rss_kb(pid), srv.proc_cpu_secs(pid), srv.proc_runqueue_wait_secs(pid))
            for name, pid in pids.items()}


def _all_pids(target: Target) -> dict[str, int]:
    pids = {f"server{i + 1}" if len(target.socket_pids) > 1 else "server": pid
            for i, pid in enumerate(target.socket_pids)}
    pids.update(target.helper_pids)
    return pids


def _socket_rss(sample: dict[str, tuple[int, float]], target: Target) -> int:
    names = [n for n in _all_pids(target) if n.startswith("server")]
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
    pids = _all_pids(target)
    pids.update({f"client{i + 1}": w.proc.pid for i, w in enumerate(workers) if isinstance(w, ProcessWorker)})
    before = _sample(pids)
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
    connected = _sample(pids)
    if on_ready is not None:
        on_ready()
    start = time.monotonic() + lead_secs
    end = start + window_secs
    for worker, _ in active:
        worker.send({"start": start, "end": end})
    _sleep_until(start)
    window_start = _sample(pids)
    _sleep_until(end)
    window_end = _sample(pids)
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
    rss_before = _socket_rss(run["before"], target)
    rss_connected = _socket_rss(run["connected_sample"], target)
    rss_end = _socket_rss(we, target)
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


def _failures(f: dict) -> int:
    """Messages that did not get a real answer: errors, timeouts, NLU-unavailable answers."""
    return f["errors"] + f["timeouts"] + f["degraded"]


def _sound(f: dict) -> bool:
    """At most 1% of a level's messages failed."""
    return _failures(f) <= 0.01 * max(f["sent"], 1)


def _fmt(value: float, width: int = 7, digits: int = 1) -> str:
    if value != value:  # NaN
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def print_load_table(title: str, rows: list[tuple[str, dict]], out: Callable[[str], None]) -> None:
    out("")
    out(title)
    out(f"  {'server':<40} {'conn':>6} {'sent':>7} {'answd':>7} {'ans/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'errors':>6} {'t/outs':>6} {'CPU ms/answer':>13}")
    for name, f in rows:
        out(f"  {name:<40} {f['connected']:>6} {f['sent']:>7} {f['answered']:>7} {_fmt(f['answered_per_sec'])} "
            f"{_fmt(f['p50_ms'])} {_fmt(f['p95_ms'])} {_fmt(f['p99_ms'])} {_fmt(f['max_ms'])} "
            f"{f['errors']:>6} {f['timeouts']:>6} {_fmt(f['server_cpu_ms_per_answer'], 13, 2)}")
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
        self.done = self.flat >= 2 or not _sound(f) or f["p99_ms"] > 1000 * answer_timeout / 2

    def result(self) -> dict:
        # A level where more than 1% failed (the bot answering "the service is not
        # answering" when Rasa timed out is quick, but not an answer) is no peak.
        sound = [f for f in self.levels if _sound(f)] or self.levels
        peak = max(sound, key=lambda f: f["answered_per_sec"])
        return {"levels": self.levels, "peak_answered_per_sec": peak["answered_per_sec"],
                "peak_concurrency": peak["concurrency"], "load_after": srv.loadavg()}


# --- the benchmark run ------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options, out: Callable[[str], None] = print) -> None:
        self.o = options
        self.out = out
        self.settings = Settings()
        self.tmp = Path(tempfile.mkdtemp(prefix="polku-bench-chat-"))
        self.rasa_nlus: list[RasaProcess] = []
        self.reference: RasaProcess | None = None
        self.nlu_url = options.rasa_url
        self.workers: list = []
        self.servers: list[srv.ChatServerProcess] = []
        self.texts: list[tuple[str, str]] = []
        self.degraded_texts: list[str] = []  # the bot's "the service is not answering" in every language
        self.single_env: dict[str, str] = {}  # settings of the single-process server (scenarios 1-3)
        self.single_name = f"ours (1 process, {'PostgreSQL' if options.database == 'postgresql' else 'SQLite'})"
        self.results: dict[str, Any] = {"options": asdict(options), "scenarios": {}}

    def log(self, text: str) -> None:
        if not self.o.quiet:
            self.out(text)

    # --- set up -------------------------------------------------------------------

    def setup(self) -> None:
        scenarios = self.o.scenarios()
        need_reference = not self.o.skip_reference and (
            ("steady" in scenarios and "rasa" in self.o.steady_configs())
            or any(s in ("saturation", "idle") for s in scenarios))
        ref_model = credentials = None
        if need_reference:
            ref_model, credentials = srv.reference_model(self.settings, self.log, self.o.reference_polku_components)
        if self.nlu_url is None:
            model = srv.nlu_model(self.settings, self.log)
            count = self.o.rasa_processes or len(self.settings.rasa_urls)
            self.log(f"Starting {count} Rasa process(es) (NLU for our server) on {model.name} ...")
            self.rasa_nlus = [srv.start_rasa(self.settings, model, self.tmp, f"rasa-nlu-{i + 1}")
                              for i in range(count)]
        if need_reference:
            classes = ("our Rasa components (--reference-polku-components)" if self.o.reference_polku_components
                       else "Rasa's own featurizer and classifier")
            self.log(f"Starting stock `rasa run` with the socketio channel on {ref_model.parent.name} "
                     f"(the same pipeline, {classes}) ...")
            self.reference = srv.start_rasa(self.settings, ref_model, self.tmp, "rasa-reference",
                                            extra_args=("--credentials", str(credentials)))
        if self.rasa_nlus:
            for process in self.rasa_nlus:
                process.wait_ready()
            self.nlu_url = ",".join(process.url for process in self.rasa_nlus)
        if self.reference is not None:
            self.reference.wait_ready()
        self.texts = asyncio.run(self._select_texts())
        self.log(f"Message mix: {len(self.texts)} held-out texts the bot answers without handing off")
        raise_nofile_limit()
        self.workers = make_workers(self.o.client_procs)

    async def _select_texts(self) -> list[tuple[str, str]]:
        """Held-out texts our bot answers itself: no crisis, counsellor request or fallback,
        which would move the conversation to the counsellor queue (and then only be acked)."""
        from bot.policy import Bot

        items = yaml.safe_load((PROJECT_ROOT / "tests" / "data" / "heldout.yml").read_text(encoding="utf-8"))
        bot = Bot.from_settings(self.settings.replace(POLKU_RASA_URL=self.nlu_url))
        gate = asyncio.Semaphore(8)

        async def keep(item: dict) -> bool:
            async with gate:
                parse = await bot.parse(item["text"], item.get("lang"))
            return parse.nlu_available and parse.safety_category is None and parse.intent not in NO_ANSWER_INTENTS

        self.degraded_texts = [bot.content.reply("nlu_unavailable", lang).text for lang in LANGUAGES]
        try:
            flags = await asyncio.gather(*(keep(item) for item in items))
        finally:
            await bot.close()
        return [(item["text"], item.get("lang") or "fi") for item, ok in zip(items, flags) if ok]

    def start_ours(self, count: int = 1, **extra: str) -> list[srv.ChatServerProcess]:
        servers = []
        data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=self.tmp))
        for i in range(count):
            env = srv.chat_server_env(data_dir, self.nlu_url, ORIGIN, **extra)
            server = srv.ChatServerProcess(env, self.tmp / f"chat-server-{len(self.servers) + 1}.log",
                                           root=self.o.server_root)
            self.servers.append(server)
            servers.append(server.start())
            if i == 0 and count > 1:
                server.wait_ready()  # the first one migrates the database alone
        for server in servers:
            server.wait_ready()
        return servers

    def ours_target(self, servers: list[srv.ChatServerProcess], name: str) -> Target:
        helpers = {f"rasa-nlu-{i + 1}" if len(self.rasa_nlus) > 1 else "rasa-nlu": process.proc.pid
                   for i, process in enumerate(self.rasa_nlus) if process.proc}
        return Target(name, POLKU, [s.url for s in servers], [s.pid for s in servers], helpers)

    def reference_target(self) -> Target:
        return Target(CONFIGS["rasa"][0], RASA, [self.reference.url], [self.reference.proc.pid])

    def job(self, kind: str, target: Target, **extra: Any) -> dict:
        return {"kind": kind, "targets": target.urls, "flavour": target.flavour, "origin": ORIGIN,
                "texts": self.texts, "degraded_texts": self.degraded_texts, "answer_timeout": self.o.answer_timeout, "compress": self.o.compress,
                "connect_rate": self.o.connect_rate, "seed": self.o.seed, **extra}

    def connect_timeout(self, residents: int) -> float:
        return 60 + 0.05 * residents  # session starts cost our server a database write each

    # --- scenarios ----------------------------------------------------------------

    def steady(self, target: Target) -> dict:
        o = self.o
        self.log(f"[{time.strftime('%H:%M:%S')}] steady: {target.name}, {o.residents} residents, load {srv.loadavg()}")
        run = run_on_workers(self.workers, self.job("steady", target, interval=o.interval), o.residents,
                             o.duration, target, connect_timeout=self.connect_timeout(o.residents))
        figures = window_figures(run, target, run["start"], run["end"], by_send=True)
        figures["load_after"] = srv.loadavg()
        return figures

    def saturation_level(self, target: Target, level: int) -> dict:
        o = self.o
        self.log(f"[{time.strftime('%H:%M:%S')}] saturation: {target.name}, {level} concurrent residents, "
                 f"load {srv.loadavg()}")
        run = run_on_workers(self.workers, self.job("closed", target,
                                                    conversation_messages=o.conversation_messages),
                             level, o.sat_step, target, connect_timeout=self.connect_timeout(level))
        f = window_figures(run, target, run["start"] + o.sat_warmup, run["end"], by_send=True)
        f["concurrency"] = level
        return f

    def idle(self, target: Target) -> dict:
        o = self.o
        # Warm up (lazy imports, statement caches, pools), then measure the baseline.
        run_on_workers(self.workers, self.job("idle", target), 100, 0.0, target,
                       connect_timeout=self.connect_timeout(100), lead_secs=0.0)
        time.sleep(2.0)
        self.log(f"[{time.strftime('%H:%M:%S')}] idle: {target.name}, {o.idle_sockets} sockets, load {srv.loadavg()}")
        held: dict[str, Any] = {}

        def measure_held() -> None:
            first = _socket_rss(_sample(_all_pids(target)), target)
            time.sleep(3.0)  # a moment later: pings went back and forth, nothing is in flight
            held["rss_kb"] = _socket_rss(_sample(_all_pids(target)), target)
            held["rss_first_kb"] = first

        run = run_on_workers(self.workers, self.job("idle", target, connect_rate=max(o.connect_rate, 500.0)),
                             o.idle_sockets, 0.0, target, connect_timeout=self.connect_timeout(o.idle_sockets),
                             on_ready=measure_held, lead_secs=0.0)
        before = _socket_rss(run["before"], target)
        connected = max(run["connected"], 1)
        return {"sockets": run["connected"], "rss_before_mb": before / 1024, "rss_after_mb": held["rss_kb"] / 1024,
                "rss_per_conn_kb": (held["rss_kb"] - before) / connected,
                "connect_secs": run["connect_secs"], "connect_failures": sum(run["stats"]["connect_failures"].values()),
                "connect_failure_kinds": run["stats"]["connect_failures"], "disconnects": run["stats"]["disconnects"],
                "client_rss_mb": sum(run["client_rss_kb"]) / 1024, "load_after": srv.loadavg()}

    # --- the whole run ------------------------------------------------------------

    def run(self) -> dict:
        o = self.o
        scenarios = o.scenarios()
        self.results["load_start"] = srv.loadavg()
        self.out(f"Chat load benchmark: scenarios {', '.join(scenarios)}; {os.cpu_count()} cores; "
                 f"load average at start {self.results['load_start']}")
        try:
            self.setup()
            if "steady" in scenarios:
                self._steady_configs()
            with contextlib.ExitStack() as stack:
                if o.database == "postgresql":
                    pg = stack.enter_context(srv.TempPostgres())
                    self.single_env = {"POLKU_DATABASE_URL": pg.url}
                if "saturation" in scenarios:
                    (server,) = self.start_ours(**self.single_env)
                    self._saturation_pair(self.ours_target([server], self.single_name))
                    server.stop()
                if "idle" in scenarios:
                    self._idle_pair()
        finally:
            self.teardown()
        self.results["load_end"] = srv.loadavg()
        self.out(f"\nLoad average at end {self.results['load_end']} (start {self.results['load_start']})")
        self._save()
        return self.results

    def _steady_config(self, config: str) -> dict:
        """The steady load against one configuration (its servers started and stopped here)."""
        if config == "rasa":
            return self.steady(self.reference_target())
        name, processes, production = CONFIGS[config]
        with contextlib.ExitStack() as stack:
            env: dict[str, str] = {}
            if production:  # a database and a key prefix of this configuration's own
                pg = stack.enter_context(srv.TempPostgres())
                prefix = stack.enter_context(srv.TempRedisPrefix())
                env = {"POLKU_DATABASE_URL": pg.url, "POLKU_REDIS_URL": prefix.url,
                       "POLKU_REDIS_PREFIX": prefix.prefix}
            servers = self.start_ours(processes, **env)
            try:
                return self.steady(self.ours_target(servers, name))
            finally:
                for server in servers:
                    server.stop()

    def _steady_configs(self) -> None:
        o = self.o
        configs = o.steady_configs()
        rows = [(CONFIGS[c][0], self._steady_config(c)) for c in configs]
        self.results["scenarios"]["steady"] = dict(rows)
        print_load_table(f"Scenario 1, steady load: {o.residents} residents, a message every {o.interval:g} s each "
                         f"(offered {o.residents / o.interval:.1f} msg/s) for {o.duration:g} s", rows, self.out)
        by_config = dict(zip(configs, (f for _, f in rows)))
        if "sqlite" in by_config:
            f = by_config["sqlite"]
            failed = _failures(f) + f["connect_failures"]
            verdict = "met" if f["p99_ms"] <= TARGET_P99_MS and failed == 0 else "MISSED"
            self.out(f"  target (embedded default p99 <= {TARGET_P99_MS:.0f} ms, no errors): {verdict} "
                     f"(p99 {f['p99_ms']:.1f} ms, errors+timeouts+NLU-unavailable answers+connect failures {failed})")
        for config, against, limit, what in (
                ("postgresql", "sqlite", TARGET_PRODUCTION_P99_FACTOR, "the embedded default's"),
                ("postgresql-2", "rasa", 1.0, "stock Rasa's")):
            if config in by_config and against in by_config:
                f, ref = by_config[config], by_config[against]
                bound = limit * ref["p99_ms"]
                clean = _failures(f) + f["connect_failures"] == 0
                verdict = "met" if f["p99_ms"] <= bound and clean else "MISSED"
                self.out(f"  target ({CONFIGS[config][0]} p99 <= "
                         f"{'' if limit == 1.0 else f'{limit:g} x '}{what} p99 {ref['p99_ms']:.1f} ms"
                         f"{f' = {bound:.1f} ms' if limit != 1.0 else ''}, no errors): {verdict} "
                         f"(p99 {f['p99_ms']:.1f} ms)")

    def _saturation_pair(self, ours: Target) -> None:
        # The two ramps take turns level by level, so that the machine's speed,
        # which drifts on these shared machines, weighs on both alike.
        ramps = [Ramp(ours)] + ([Ramp(self.reference_target())] if self.reference is not None else [])
        for level in self.o.sat_levels:
            for ramp in ramps:
                if not ramp.done:
                    ramp.add(self.saturation_level(ramp.target, level), self.o.answer_timeout)
        rows = [(ramp.target.name, ramp.result()) for ramp in ramps]
        self.results["scenarios"]["saturation"] = dict(rows)
        self.out("")
        self.out(f"Scenario 2, saturation: closed loop, {self.o.sat_step:g} s per level "
                 f"({self.o.sat_warmup:g} s warm-up not counted), a new conversation every "
                 f"{self.o.conversation_messages} messages")
        self.out(f"  {'server':<34} {'conc':>5} {'ans/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} {'t/o':>4} "
                 f"{'nlu?':>4} {'CPU% by process':<40} {'client CPU%':>11} {'lag p99':>8}")
        for name, result in rows:
            for f in result["levels"]:
                cpu = " ".join(f"{k} {v:.0f}" for k, v in f["cpu_pct"].items())
                self.out(f"  {name:<34} {f['concurrency']:>5} {_fmt(f['answered_per_sec'])} {_fmt(f['p50_ms'])} "
                         f"{_fmt(f['p99_ms'])} {f['errors']:>4} {f['timeouts']:>4} {f['degraded']:>4} {cpu:<40} "
                         f"{f['client_cpu_pct']:>11.0f} {_fmt(f['client_lag_p99_ms'], 8)}")
        for name, result in rows:
            self.out(f"  peak {name}: {result['peak_answered_per_sec']:.1f} answered/s at "
                     f"{result['peak_concurrency']} concurrent residents")
        if len(rows) == 2 and rows[1][1]["peak_answered_per_sec"] > 0:
            ratio = rows[0][1]["peak_answered_per_sec"] / rows[1][1]["peak_answered_per_sec"]
            self.results["scenarios"]["saturation_ratio"] = ratio
            self.out(f"  target (ours >= {TARGET_SATURATION_RATIO:g}x stock Rasa): "
                     f"{'met' if ratio >= TARGET_SATURATION_RATIO else 'MISSED'} ({ratio:.2f}x)")

    def _idle_pair(self) -> None:
        (server,) = self.start_ours(**self.single_env)
        rows = [(self.single_name, self.idle(self.ours_target([server], self.single_name)))]
        server.stop()
        if self.reference is not None:
            rows.append((self.reference_target().name, self.idle(self.reference_target())))
        self.results["scenarios"]["idle"] = dict(rows)
        self.out("")
        self.out(f"Scenario 3, idle sockets (connected, session confirmed; websocket compression "
                 f"{'offered, as browsers do' if self.o.compress else 'off'}):")
        for name, f in rows:
            self.out(f"  {name:<34} {f['sockets']:>6} sockets: RSS {f['rss_before_mb']:.0f} -> {f['rss_after_mb']:.0f} MB "
                     f"= {f['rss_per_conn_kb']:.1f} KB per connection; connected in {f['connect_secs']:.1f} s; "
                     f"connect failures {f['connect_failures']} {f['connect_failure_kinds'] or ''}; "
                     f"disconnects {f['disconnects']}; client RSS {f['client_rss_mb']:.0f} MB")
        f = rows[0][1]
        self.out(f"  target (ours <= {TARGET_IDLE_KB:.0f} KB per connection): "
                 f"{'met' if f['rss_per_conn_kb'] <= TARGET_IDLE_KB else 'MISSED'} ({f['rss_per_conn_kb']:.1f} KB)")

    def teardown(self) -> None:
        for worker in self.workers:
            worker.close()
        for server in self.servers:
            server.stop()
        for process in (self.reference, *self.rasa_nlus):
            if process is not None:
                process.stop()
        self.results["server_logs"] = str(self.tmp)

    def _save(self) -> None:
        path = Path(self.o.out) if self.o.out else srv.BENCH_DIR / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.results, indent=1, default=str), encoding="utf-8")
        self.out(f"Figures saved to {path}; server logs in {self.tmp}")


def add_arguments(parser) -> None:
    parser.add_argument("--residents", type=int, default=1000, help="residents in the steady load (default 1000)")
    parser.add_argument("--duration", type=float, default=60.0, help="steady load window in seconds (default 60)")
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between one resident's messages (20)")
    parser.add_argument("--scenario", default="all", help=f"all or a comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"configurations of the steady load, in order (default {','.join(CONFIGS)})")
    parser.add_argument("--skip-reference", action="store_true", help="measure our server only")
    parser.add_argument("--reference-polku-components", action="store_true",
                        help="train the stock reference with our Rasa components instead of Rasa's own classes")
    parser.add_argument("--idle-sockets", type=int, default=10_000, help="sockets of the idle scenario (10000)")
    parser.add_argument("--sat-levels", default="1,2,4,8,16,32,64,128,256,512",
                        help="closed-loop concurrency levels of the saturation ramp")
    parser.add_argument("--sat-step", type=float, default=10.0, help="seconds per saturation level (10)")
    parser.add_argument("--conversation-messages", type=int, default=10,
                        help="saturation: a resident starts a new conversation after this many messages (10)")
    parser.add_argument("--answer-timeout", type=float, default=10.0, help="an answer later than this is a timeout")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="client worker processes (0: a thread of this process)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="database of the single-process server in scenarios 2-3 (a temporary PostgreSQL "
                             "database is made and dropped)")
    parser.add_argument("--no-compress", action="store_true",
                        help="do not offer websocket permessage-deflate (browsers offer it)")
    parser.add_argument("--rasa-url", default=None,
                        help="NLU Rasa server(s) for our chat server to use, comma-separated (none are started)")
    parser.add_argument("--rasa-processes", type=int, default=0,
                        help="NLU Rasa processes to start for our server (default: as many as POLKU_RASA_URL lists)")
    parser.add_argument("--server-root", default=None,
                        help="serve chat_server/ and bot/ of this checkout instead (to measure a candidate fix)")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--out", default=None, help="JSON results file (default var/bench/chat-<time>.json)")


def options_from_args(args) -> Options:
    return Options(residents=args.residents, duration=args.duration, interval=args.interval, scenario=args.scenario,
                   configs=tuple(c.strip() for c in str(args.configs).split(",") if c.strip()),
                   skip_reference=args.skip_reference,
                   reference_polku_components=args.reference_polku_components, idle_sockets=args.idle_sockets,
                   sat_levels=tuple(int(x) for x in str(args.sat_levels).split(",") if x.strip()),
                   sat_step=args.sat_step, conversation_messages=args.conversation_messages,
                   answer_timeout=args.answer_timeout, client_procs=args.client_procs,
                   compress=not args.no_compress, rasa_url=args.rasa_url,
                   rasa_processes=args.rasa_processes, seed=args.seed, out=args.out,
                   server_root=args.server_root, database=args.database)


def run(options: Options, out: Callable[[str], None] = print) -> dict:
    return Bench(options, out).run()


def main(args) -> None:
    random.seed(args.seed)
    run(options_from_args(args))
