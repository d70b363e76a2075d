"""Where a resident's message spends its time: round trips to the database and
to Redis per message, counted and timed inside a real chat server.

The server runs in this process (``create_app``, on a real port) on each
backend asked for: ``sqlite`` (the embedded default: SQLite file, queue,
presence and limits in memory) and ``postgresql`` (a database of this run's
own, created and dropped, plus Redis under a key prefix of this run's own).
A real Socket.IO client sends the messages one at a time; after each, the run
waits until the server's handler has returned and nothing is in flight, so
every call in between belongs to that message. The bot is the real
``bot.policy.Bot``; its NLU answers a fixed intent from this process (or a
real Rasa with ``--rasa-url``), so the counts depend on the server's code only.

Counted, by patching the client libraries in this process:

* PostgreSQL: every asyncpg call that waits for the server (a statement, a
  prepare, BEGIN, COMMIT, the pool's pre-ping), by kind;
* SQLite: statements, and the trips to the database thread;
* both: transactions begun and committed (SQLAlchemy's engine events);
* Redis: every command and pipeline, by command (EVALSHA names its script);
  PUBLISH is the Socket.IO manager's cross-process emit;
* the NLU call, and the whole message from send to answer.

A wait is the time from the call to its result coming back to the handler:
the server's answer plus the event loop's delay in resuming the handler.
Counts are deterministic; waits depend on the machine.

Phases per backend: the first message of a session (writes the conversation),
messages answered by the bot, the resident joining the queue (/join_queue),
messages while queued with a counsellor online, and, after the counsellor
picked the chat up, counsellor messages and resident messages to the
counsellor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
import socketio

from bot.settings import Settings

from .handoff import Inbox
from .roundtrips_probe import PROBE, Call, FixedNlu, TimedNlu, install_probe

EVENT_TIMEOUT_SECS = 15.0
QUIET_SECS = 0.02  # nothing in flight this long after the handler returned: the message is done
BOT_TEXT = "Hei, mitä kuuluu?"


# --- one backend ------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    messages: list[list[Call]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def _count_handlers(sio: socketio.AsyncServer) -> None:
    original = sio._trigger_event

    async def trigger(*args, **kwargs):
        PROBE.handlers += 1
        try:
            return await original(*args, **kwargs)
        finally:
            PROBE.handlers -= 1
            PROBE.last_activity = time.perf_counter()

    sio._trigger_event = trigger


async def _settled() -> None:
    """Until no handler runs and nothing has been in flight for QUIET_SECS."""
    deadline = time.perf_counter() + EVENT_TIMEOUT_SECS
    while time.perf_counter() < deadline:
        await asyncio.sleep(QUIET_SECS / 2)
        if PROBE.handlers == 0 and PROBE.inflight == 0 and time.perf_counter() - PROBE.last_activity >= QUIET_SECS:
            return


async def _measured(phase: Phase, act: Callable[[], Any], arrived: Callable[[], Any]) -> None:
    await _settled()
    PROBE.take()
    PROBE.enabled = True
    started = time.perf_counter()
    try:
        await act()
        _, at = await arrived()
        await _settled()
    finally:
        PROBE.enabled = False
    phase.latencies.append(at - started)
    phase.messages.append(PROBE.take())


def _is_bot(payload: Any) -> bool:
    return isinstance(payload, dict) and (payload.get("metadata") or {}).get("sender") == "bot"


async def run_backend(kind: str, messages: int, rasa_url: str | None, log: Callable[[str], None]) -> list[Phase]:
    from bot.content import Content
    from bot.nlu import RasaClient
    from bot.policy import Bot
    from chat_server.app import create_app
    from chat_server.context import SERVER_KEY

    from . import chat_servers as srv
    from .handoff import PASSWORD, _console

    tmp = Path(tempfile.mkdtemp(prefix="polku-roundtrips-"))
    env: dict[str, Any] = {"POLKU_DATA_DIR": str(tmp / "data"), "POLKU_RASA_URL": rasa_url or "http://127.0.0.1:9",
                           "POLKU_CHAT_ALWAYS_OPEN": True, "POLKU_ADMIN_PREWARM_TRAINER": False,
                           "POLKU_LOG_LEVEL": "WARNING",
                           # Limits out of the way (the limits are still counted: that is part of a message).
                           "POLKU_RATE_SESSION_PER_MIN": 1_000_000, "POLKU_RATE_ADDRESS_PER_MIN": 1_000_000}
    with contextlib.ExitStack() as stack:
        if kind == "postgresql":
            pg = stack.enter_context(srv.TempPostgres())
            prefix = stack.enter_context(srv.TempRedisPrefix())
            env.update(POLKU_DATABASE_URL=pg.url, POLKU_REDIS_URL=prefix.url, POLKU_REDIS_PREFIX=prefix.prefix)
        settings = Settings(environ={}, **env)
        content = Content.load(settings.training_data_dir)
        nlu = RasaClient(rasa_url, settings.rasa_timeout_secs, os.environ.get("POLKU_RASA_TOKEN", ""),
                         settings.rasa_spill_below) if rasa_url else FixedNlu()
        bot = Bot(content, TimedNlu(nlu), default_language="fi")
        app = create_app(settings, bot=bot)
        runner = aiohttp.web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        server = app[SERVER_KEY]
        _count_handlers(server.sio)
        phases = {name: Phase(name) for name in (
            "first message of a session", "resident message, bot answers", "resident asks for a counsellor",
            "resident message while queued", "counsellor message", "resident message to the counsellor")}
        resident = socketio.AsyncClient(reconnection=False)
        inbox = Inbox(EVENT_TIMEOUT_SECS)
        resident.on("*", lambda event, *args: inbox.record(event, args[0] if args else None))
        console = None
        try:
            await resident.connect(url, transports=["websocket"], wait_timeout=EVENT_TIMEOUT_SECS)
            await resident.emit("session_request", {"session_id": None, "language": "fi"})
            session_id, _ = await inbox.wait("session_confirm")

            async def say(text: str) -> None:
                await resident.emit("user_uttered", {"message": text, "session_id": session_id,
                                                     "customData": {"language": "fi",
                                                                    "client_id": secrets.token_hex(8)}})

            await _measured(phases["first message of a session"], lambda: say(BOT_TEXT),
                            lambda: inbox.wait("bot_uttered", _is_bot))
            for _ in range(messages):
                await _measured(phases["resident message, bot answers"], lambda: say(BOT_TEXT),
                                lambda: inbox.wait("bot_uttered", _is_bot))
            # A counsellor signs in (online: queued messages are theirs, not the bot's).
            await server.auth.create_user("bench01", "Ohjaaja", "counsellor", PASSWORD)
            async with aiohttp.ClientSession() as http:
                console = await _console(http, url, "bench01")
            console_inbox = Inbox(EVENT_TIMEOUT_SECS)
            console.on("*", lambda event, *args: console_inbox.record(event, args[0] if args else None),
                       namespace="/counsellor")
            await _settled()
            await _measured(phases["resident asks for a counsellor"], lambda: say("/join_queue"),
                            lambda: inbox.wait("handoff_state", lambda p: p["state"] == "queued"))
            for i in range(messages):
                await _measured(phases["resident message while queued"], lambda i=i: say(f"odotan {i}"),
                                lambda: inbox.wait("message_ack"))
            hello = await console.call("hello", {}, namespace="/counsellor", timeout=EVENT_TIMEOUT_SECS)
            cid = hello["queue"]["conversations"][-1]["conversation_id"]
            taken = await console.call("pick_up", {"conversation_id": cid}, namespace="/counsellor",
                                       timeout=EVENT_TIMEOUT_SECS)
            assert taken.get("ok"), taken
            await inbox.wait("handoff_state", lambda p: p["state"] == "counsellor")
            for i in range(messages):
                text = f"Ohjaajan viesti {i}"
                await _measured(phases["counsellor message"],
                                lambda text=text: console.emit("send", {"conversation_id": cid, "text": text},
                                                               namespace="/counsellor"),
                                lambda text=text: inbox.wait("bot_uttered", lambda p: p.get("text") == text))
            for i in range(messages):
                await _measured(phases["resident message to the counsellor"], lambda i=i: say(f"kiitos {i}"),
                                lambda: inbox.wait("message_ack"))
        finally:
            PROBE.enabled = False
            if console is not None:
                await console.disconnect()
            await resident.disconnect()
            await runner.cleanup()
    log(f"  ({kind}: server at {url}, data in {tmp})")
    return list(phases.values())


# --- reference round trips ---------------------------------------------------------------


async def reference_latencies(rounds: int = 200) -> dict[str, float]:
    """Median of a bare round trip to PostgreSQL and Redis, and of a commit, from this
    process with nothing else running: what one round trip costs at the least."""
    import asyncpg
    from redis import asyncio as aioredis

    from . import chat_servers as srv

    out: dict[str, float] = {}
    with srv.TempPostgres() as pg:
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute("CREATE TABLE t (id serial primary key, v text)")
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                await conn.fetchval("SELECT 1")
                times.append(time.perf_counter() - started)
            out["pg SELECT 1"] = statistics.median(times)
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute("INSERT INTO t (v) VALUES ('x')")
                times.append(time.perf_counter() - started)
            out["pg BEGIN+INSERT+COMMIT"] = statistics.median(times)
            out["pg synchronous_commit"] = await conn.fetchval("SHOW synchronous_commit")
        finally:
            await conn.close()
    client = aioredis.Redis.from_url(srv.REDIS_URL)
    try:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            await client.ping()
            times.append(time.perf_counter() - started)
        out["redis PING"] = statistics.median(times)
    finally:
        await client.aclose()
    return out


# --- report -------------------------------------------------------------------------------


def _summary(phase: Phase) -> dict[str, Any]:
    """Per message: counts by (backend, label) (min..max over the messages) and waits."""
    per_message: list[collections.Counter] = []
    waits: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    totals: dict[str, list[float]] = collections.defaultdict(list)
    for calls in phase.messages:
        counts: collections.Counter = collections.Counter()
        total: collections.Counter = collections.Counter()
        for call in calls:
            counts[(call.backend, call.label)] += 1
            if call.backend != "tx":
                waits[(call.backend, call.label)].append(call.secs)
                total[call.backend] += call.secs
        per_message.append(counts)
        for backend in ("pg", "redis", "lane", "nlu", "pool"):
            totals[backend].append(total[backend])
    keys = sorted({k for c in per_message for k in c})
    counts = {k: (min(c[k] for c in per_message), max(c[k] for c in per_message)) for k in keys}
    return {"counts": counts, "waits": waits, "totals": totals, "n": len(phase.messages),
            "latency": phase.latencies}


def _fmt_count(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def report(results: dict[str, list[Phase]], reference: dict[str, Any] | None, out: Callable[[str], None]) -> dict:
    data: dict[str, Any] = {}
    if reference:
        out("Bare round trips from this process (median): " + ", ".join(
            f"{k} {v * 1000:.2f} ms" if isinstance(v, float) else f"{k} {v}" for k, v in reference.items()))
    phase_names = [p.name for p in next(iter(results.values()))]
    for name in phase_names:
        out("")
        out(f"== {name}")
        for kind, phases in results.items():
            phase = next(p for p in phases if p.name == name)
            if not phase.messages:
                continue
            s = _summary(phase)
            data.setdefault(name, {})[kind] = {f"{b} {l}": list(v) for (b, l), v in s["counts"].items()}
            groups: dict[str, list[str]] = collections.defaultdict(list)
            sums: dict[str, tuple[int, int]] = {}
            for (backend, label), (lo, hi) in s["counts"].items():
                mean_ms = 1000 * statistics.fmean(s["waits"][(backend, label)]) if s["waits"].get((backend, label)) else None
                groups[backend].append(f"{label} {_fmt_count(lo, hi)}" + (f" ({mean_ms:.2f} ms)" if mean_ms else ""))
                a, b = sums.get(backend, (0, 0))
                sums[backend] = (a + lo, b + hi)
            lat = [x * 1000 for x in s["latency"]]
            out(f"  {kind:<10} {s['n']} messages, send -> answer median {statistics.median(lat):.1f} ms, "
                f"max {max(lat):.1f} ms")
            for backend in ("pg", "sqlite", "lane", "pool", "tx", "redis", "nlu"):
                if backend not in groups:
                    continue
                total = ""
                if s["totals"].get(backend):
                    total = f"; waited {1000 * statistics.fmean(s['totals'][backend]):.2f} ms per message"
                title = {"pg": "PostgreSQL round trips", "sqlite": "SQLite statements",
                         "lane": "Store.run_* transactions (SQLite: trips to its thread)",
                         "pool": "pool checkouts (AsyncAdaptedQueuePool)", "tx": "SQLAlchemy transactions",
                         "redis": "Redis round trips", "nlu": "NLU"}[backend]
                out(f"    {title} {_fmt_count(*sums[backend])}{total}: " + ", ".join(groups[backend]))
    return data


def add_arguments(parser) -> None:
    parser.add_argument("--messages", type=int, default=20, help="messages per phase (default 20)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite, postgresql or both (default)")
    parser.add_argument("--rasa-url", default=None, help="a real Rasa to parse with (default: a fixed intent)")
    parser.add_argument("--no-reference", action="store_true", help="skip the bare round-trip figures")


async def _main(args, out: Callable[[str], None]) -> dict:
    from .chat_client import raise_nofile_limit

    raise_nofile_limit()
    install_probe()
    results: dict[str, list[Phase]] = {}
    for kind in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if kind not in ("sqlite", "postgresql"):
            raise SystemExit(f"unknown backend {kind}")
        results[kind] = await run_backend(kind, args.messages, args.rasa_url, out)
    reference = None if args.no_reference or "postgresql" not in results else await reference_latencies()
    return report(results, reference, out)


def main(args, out: Callable[[str], None] = print) -> dict:
    import logging
    logging.basicConfig(level=logging.WARNING)
    out(f"Round trips per message, counted inside the chat server ({args.messages} messages per phase; "
        f"load average {os.getloadavg()[0]:.2f})")
    return asyncio.run(_main(args, out))
