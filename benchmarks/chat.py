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
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from bot.rasa_server import RasaProcess
from bot.types import LANGUAGES
from bot.settings import PROJECT_ROOT, Settings

from . import chat_servers as srv
from .chat_client import POLKU, RASA, raise_nofile_limit
from .chat_load import (Ramp, Target, all_pids, failures, fmt, sample, socket_rss, make_workers,
                        print_load_table, run_on_workers, window_figures)

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
            first = socket_rss(sample(all_pids(target)), target)
            time.sleep(3.0)  # a moment later: pings went back and forth, nothing is in flight
            held["rss_kb"] = socket_rss(sample(all_pids(target)), target)
            held["rss_first_kb"] = first

        run = run_on_workers(self.workers, self.job("idle", target, connect_rate=max(o.connect_rate, 500.0)),
                             o.idle_sockets, 0.0, target, connect_timeout=self.connect_timeout(o.idle_sockets),
                             on_ready=measure_held, lead_secs=0.0)
        before = socket_rss(run["before"], target)
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
            failed = failures(f) + f["connect_failures"]
            verdict = "met" if f["p99_ms"] <= TARGET_P99_MS and failed == 0 else "MISSED"
            self.out(f"  target (embedded default p99 <= {TARGET_P99_MS:.0f} ms, no errors): {verdict} "
                     f"(p99 {f['p99_ms']:.1f} ms, errors+timeouts+NLU-unavailable answers+connect failures {failed})")
        for config, against, limit, what in (
                ("postgresql", "sqlite", TARGET_PRODUCTION_P99_FACTOR, "the embedded default's"),
                ("postgresql-2", "rasa", 1.0, "stock Rasa's")):
            if config in by_config and against in by_config:
                f, ref = by_config[config], by_config[against]
                bound = limit * ref["p99_ms"]
                clean = failures(f) + f["connect_failures"] == 0
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
                self.out(f"  {name:<34} {f['concurrency']:>5} {fmt(f['answered_per_sec'])} {fmt(f['p50_ms'])} "
                         f"{fmt(f['p99_ms'])} {f['errors']:>4} {f['timeouts']:>4} {f['degraded']:>4} {cpu:<40} "
                         f"{f['client_cpu_pct']:>11.0f} {fmt(f['client_lag_p99_ms'], 8)}")
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
