"""Handoff benchmark: a counsellor's message to the resident's screen, across
processes, and twenty counsellors clicking "take" at once.

Two real chat server processes (``python -m chat_server``) share a fresh
PostgreSQL database and Redis (a key prefix of this run's own). The resident's
socket is on process B, the counsellor's console on process A, so every line
crosses Redis: console emit -> A stores it (PostgreSQL commit) -> A publishes
-> B delivers to the resident's socket. Measured in this process from just
before the console's ``send`` to the resident's ``bot_uttered`` arriving,
one message at a time. Target: p99 <= 10 ms.

Then COUNSELLORS counsellors (half on each process) all click "take" on the
same queued chat at the same moment, for several chats: exactly one may win
each, and the database must agree.

Then the queue's fan-out: QUEUE residents wait in the queue (half on each
process) while CONSOLES consoles are connected, and the front of the queue is
picked up, new residents join and some leave. Printed: the time, the server
processes' CPU, and the events and bytes the residents and consoles received
for those queue changes (every queue change used to reach every queued
resident and send a whole snapshot to every console: O(queue²)).

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (or
HANDOFF_BENCH_PG_DSN / HANDOFF_BENCH_REDIS_URL). Rasa is not needed: the
resident joins the queue with the /join_queue button payload.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import psycopg
import pyotp
import redis as redis_lib
import socketio

from bot.rasa_server import free_port
from bot.settings import Settings

from .chat_servers import ChatServerProcess, proc_cpu_secs
from .stats import percentile, summary_ms

PG_ADMIN_DSN = os.environ.get("HANDOFF_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HANDOFF_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "benchmark-password-123"
EVENT_TIMEOUT_SECS = 10.0
TARGET_P99_MS = 10.0
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7 ]+)</code>')
_SECRETS: dict[str, str] = {}  # the TOTP secret each benchmark account enrolled
_LAST_STEP: dict[str, int] = {}


def add_arguments(parser) -> None:
    parser.add_argument("--messages", type=int, default=2000, help="counsellor messages timed (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed messages first (default 200)")
    parser.add_argument("--counsellors", type=int, default=20, help="counsellors clicking at once (default 20)")
    parser.add_argument("--races", type=int, default=10, help="chats raced for (default 10)")
    parser.add_argument("--queue", type=int, default=500, help="queued residents of the fan-out (default 500)")
    parser.add_argument("--queue-consoles", type=int, default=5, help="consoles connected meanwhile (default 5)")
    parser.add_argument("--queue-changes", type=int, default=30,
                        help="queue changes timed: pick-ups, joins and leaves in turn (default 30)")
    parser.add_argument("--only-queue", action="store_true", help="only the queue fan-out")


class Inbox:
    """Events of one socket, awaited in order."""

    def __init__(self, timeout_secs: float = EVENT_TIMEOUT_SECS) -> None:
        self.queue: asyncio.Queue[tuple[str, object, float]] = asyncio.Queue()
        self.timeout_secs = timeout_secs

    def record(self, event: str, payload: object) -> None:
        self.queue.put_nowait((event, payload, time.perf_counter()))

    async def wait(self, event: str, where=None) -> tuple[object, float]:
        async with asyncio.timeout(self.timeout_secs):
            while True:
                name, payload, at = await self.queue.get()
                if name == event and (where is None or where(payload)):
                    return payload, at


async def _resident(url: str) -> tuple[socketio.AsyncClient, Inbox, str]:
    sio = socketio.AsyncClient(reconnection=False)
    inbox = Inbox()
    sio.on("*", lambda event, *args: inbox.record(event, args[0] if args else None))
    await sio.connect(url, transports=["websocket"], wait_timeout=EVENT_TIMEOUT_SECS)
    await sio.emit("session_request", {"session_id": None, "language": "fi"})
    session_id, _ = await inbox.wait("session_confirm")
    # /join_queue: queued whether or not a counsellor is online yet (chat always open here).
    await sio.emit("user_uttered", {"message": "/join_queue", "session_id": session_id,
                                    "customData": {"language": "fi", "client_id": secrets.token_hex(8)}})
    await inbox.wait("handoff_state", lambda p: p["state"] in ("queued", "unavailable"))
    return sio, inbox, session_id


async def _console(http: aiohttp.ClientSession, url: str, username: str) -> socketio.AsyncClient:
    """Sign in through the real form and open the console's socket with the session cookie."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(url + "/login") as response:
            csrf = _CSRF_RE.search(await response.text()).group(1)
        async with browser.post(url + "/login", allow_redirects=False, data={
                "username": username, "password": PASSWORD, "csrf_token": csrf}) as response:
            if response.status != 303:
                raise RuntimeError(f"sign-in of {username} failed: HTTP {response.status}")
            location = response.headers["Location"]
        # The second factor: the first sign-in enrols the account's authenticator (the key shown as
        # text); a later one gives the code of a time step not used yet (each is taken once).
        async with browser.get(url + location) as response:
            page = await response.text()
        enrol = _SECRET_RE.search(page)
        if enrol:
            _SECRETS[username] = enrol.group(1).replace(" ", "")
        totp = pyotp.TOTP(_SECRETS[username])
        step = max(totp.timecode(datetime.now(timezone.utc)), _LAST_STEP.get(username, -1) + 1)
        _LAST_STEP[username] = step
        action = "/login/enrol" if enrol else "/login/second-factor"
        async with browser.post(url + action, allow_redirects=False, data={
                "code": totp.generate_otp(step), "csrf_token": _CSRF_RE.search(page).group(1)}) as response:
            if response.status not in (200, 303):
                raise RuntimeError(f"second factor of {username} failed: HTTP {response.status}")
        cookie = "; ".join(f"{m.key}={m.value}" for m in jar)
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, headers={"Cookie": cookie}, namespaces=["/counsellor"], transports=["websocket"],
                      wait_timeout=EVENT_TIMEOUT_SECS)
    return sio


async def _call(sio: socketio.AsyncClient, event: str, payload: dict) -> dict:
    return await sio.call(event, payload, namespace="/counsellor", timeout=EVENT_TIMEOUT_SECS)


async def _create_users(settings: Settings, count: int, prefix: str = "c") -> None:
    from chat_server.store import db
    from chat_server.staff.service import StaffAuth
    from chat_server.store.core import Store
    from chat_server.store.staff import StaffRepository

    engine = db.create_engine(settings.database_url)
    try:
        auth = StaffAuth(StaffRepository(Store(engine)), session_hours=1, rate_address_per_min=1000)
        await asyncio.gather(*(auth.create_user(f"{prefix}{i:02d}", f"Ohjaaja {prefix}{i}", "counsellor", PASSWORD)
                               for i in range(count)))
    finally:
        await engine.dispose()


async def _latency(a: ChatServerProcess, b: ChatServerProcess, messages: int,
                   warmup: int) -> tuple[list[float], str | None]:
    """The samples, and what stopped the run early (a lost socket, a message that never came), if anything."""
    async with aiohttp.ClientSession() as http:
        counsellor = await _console(http, a.url, "c00")
    resident, inbox, _ = await _resident(b.url)
    try:
        hello = await _call(counsellor, "hello", {})
        cid = hello["queue"]["conversations"][-1]["conversation_id"]
        answer = await _call(counsellor, "pick_up", {"conversation_id": cid})
        assert answer["ok"], answer
        await inbox.wait("handoff_state", lambda p: p["state"] == "counsellor")
        samples: list[float] = []
        for i in range(warmup + messages):
            text = f"Viesti {i}"
            started = time.perf_counter()
            try:
                await counsellor.emit("send", {"conversation_id": cid, "text": text}, namespace="/counsellor")
                _, arrived = await inbox.wait("bot_uttered", lambda p, text=text: p["text"] == text)
            except (socketio.exceptions.SocketIOError, TimeoutError) as exc:
                # Reported with the figures instead of ending the benchmark.
                return samples, f"stopped at message {i + 1}: {type(exc).__name__} {exc}".strip()
            if i >= warmup:
                samples.append(arrived - started)
        return samples, None
    finally:
        await resident.disconnect()
        await counsellor.disconnect()


async def _races(a: ChatServerProcess, b: ChatServerProcess, counsellors: int, races: int,
                 database_url: str) -> tuple[int, int, list[int]]:
    """(chats raced, chats with exactly one winner, winners per chat)."""
    async with aiohttp.ClientSession() as http:
        consoles = await asyncio.gather(*(_console(http, (a if i % 2 else b).url, f"c{i:02d}")
                                          for i in range(counsellors)))
    winners_per_chat: list[int] = []
    single = 0
    try:
        for r in range(races):
            resident, inbox, _ = await _resident((a if r % 2 else b).url)
            hello = await _call(consoles[0], "hello", {})
            cid = hello["queue"]["conversations"][-1]["conversation_id"]
            answers = await asyncio.gather(*(_call(c, "pick_up", {"conversation_id": cid}) for c in consoles))
            winners = sum(1 for answer in answers if answer.get("ok"))
            with psycopg.connect(database_url) as conn:
                (takes,) = conn.execute("SELECT count(*) FROM handoff_transitions WHERE conversation_id = %s "
                                        "AND to_state = 'counsellor'", (cid,)).fetchone()
            winners_per_chat.append(winners)
            if winners == 1 and takes == 1:
                single += 1
            await resident.disconnect()
    finally:
        for console in consoles:
            await console.disconnect()
    return races, single, winners_per_chat


class Traffic:
    """What a set of sockets received: events and bytes (the payload as JSON), by event."""

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.last = time.perf_counter()

    def record(self, event: str, payload: object) -> None:
        self.events[event] = self.events.get(event, 0) + 1
        self.bytes[event] = self.bytes.get(event, 0) + len(json.dumps(payload, separators=(",", ":")))
        self.last = time.perf_counter()

    def total(self) -> tuple[int, int]:
        return sum(self.events.values()), sum(self.bytes.values())

    def reset(self) -> None:
        self.events.clear()
        self.bytes.clear()

    async def quiet(self, secs: float = 1.0, limit_secs: float = 120.0) -> float:
        """Wait until nothing arrived for ``secs``; the time the last event arrived."""
        deadline = time.perf_counter() + limit_secs
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
            if time.perf_counter() - self.last >= secs:
                break
        return self.last


async def _queued(url: str, traffic: Traffic) -> tuple[socketio.AsyncClient, str]:
    """A resident who asked for a person, counted in ``traffic`` from then on."""
    sio = socketio.AsyncClient(reconnection=False)
    inbox = Inbox()
    counting = False

    def on_any(event: str, *args: object) -> None:
        payload = args[0] if args else None
        inbox.record(event, payload)
        if counting:
            traffic.record(event, payload)

    sio.on("*", on_any)
    await sio.connect(url, transports=["websocket"], wait_timeout=EVENT_TIMEOUT_SECS)
    await sio.emit("session_request", {"session_id": None, "language": "fi"})
    session_id, _ = await inbox.wait("session_confirm")
    counting = True
    await sio.emit("user_uttered", {"message": "/request_counsellor", "session_id": session_id,
                                    "customData": {"language": "fi", "client_id": secrets.token_hex(8)}})
    await inbox.wait("handoff_state", lambda p: p["state"] in ("queued", "unavailable"))
    return sio, session_id


async def _queue_fanout(a: ChatServerProcess, b: ChatServerProcess, size: int, consoles_n: int,
                        changes: int) -> None:
    residents_traffic, consoles_traffic = Traffic(), Traffic()
    async with aiohttp.ClientSession() as http:
        consoles = [await _console(http, (a if i % 2 else b).url, f"q{i:02d}") for i in range(consoles_n)]
    for console in consoles:
        console.on("*", lambda event, *args: consoles_traffic.record(event, args[0] if args else None),
                   namespace="/counsellor")
    pids = [a.pid, b.pid]
    residents: list[tuple[socketio.AsyncClient, str]] = []
    gate = asyncio.Semaphore(16)

    async def join(i: int) -> None:
        async with gate:
            residents.append(await _queued((a if i % 2 else b).url, residents_traffic))

    def line(what: str, started: float, ended: float, cpu: float, n: int) -> None:
        r_events, r_bytes = residents_traffic.total()
        c_events, c_bytes = consoles_traffic.total()
        print(f"  {what}: {ended - started:.2f} s wall, {cpu:.2f} s server CPU; residents got {r_events:,} "
              f"events ({r_bytes / 1e6:.2f} MB), consoles {c_events:,} ({c_bytes / 1e6:.2f} MB); "
              f"per change {(r_events + c_events) / max(n, 1):,.0f} events, "
              f"{(r_bytes + c_bytes) / max(n, 1) / 1e3:,.1f} KB")
    try:
        print(f"Queue fan-out: {size} residents queued (half on each process), {consoles_n} consoles "
              f"connected (PostgreSQL + Redis):")
        cpu0, started = sum(map(proc_cpu_secs, pids)), time.perf_counter()
        await asyncio.gather(*(join(i) for i in range(size)))
        ended = max(await residents_traffic.quiet(), consoles_traffic.last)
        line(f"filling the queue to {size} ({size} joins)", started, ended, sum(map(proc_cpu_secs, pids)) - cpu0, size)
        lost = sum(1 for sio, _ in residents if not sio.connected)
        if lost:
            print(f"  {lost} of {size} residents lost their socket meanwhile (pings unanswered: servers overloaded)")

        residents_traffic.reset()
        consoles_traffic.reset()
        hello = await _call(consoles[0], "hello", {})
        print(f"  a console's hello: {len(json.dumps(hello['queue'])) / 1e3:,.1f} KB of queue, "
              f"{len(hello['queue']['conversations'])} conversations listed")
        cpu0, started = sum(map(proc_cpu_secs, pids)), time.perf_counter()
        done, failed = 0, []
        for i in range(changes):
            kind = i % 3
            try:
                if kind == 0:  # the front is picked up
                    queue = (await _call(consoles[0], "hello", {}))["queue"]["conversations"]
                    answer = await _call(consoles[i % consoles_n], "pick_up",
                                         {"conversation_id": queue[0]["conversation_id"]})
                    assert answer["ok"], answer
                elif kind == 1:  # a new resident joins at the end
                    residents.append(await _queued((a if i % 2 else b).url, residents_traffic))
                else:  # someone in the middle (still connected) leaves
                    connected = [r for r in residents if r[0].connected]
                    if not connected:
                        continue
                    sio, session_id = connected[len(connected) // 2]
                    await sio.emit("leave_queue", {"session_id": session_id})
                    residents.remove((sio, session_id))
                    await sio.disconnect()
            except (socketio.exceptions.SocketIOError, TimeoutError) as exc:
                failed.append(f"{('pick-up', 'join', 'leave')[kind]}: {type(exc).__name__}")
                continue
            done += 1
            await asyncio.sleep(0.05)
        if failed:
            print(f"  {len(failed)} changes failed (no answer in {EVENT_TIMEOUT_SECS:.0f} s): {failed[:5]}")
        ended = max(await residents_traffic.quiet(), consoles_traffic.last)
        line(f"{done} changes (pick up the front, join, leave from the middle, in turn)", started, ended,
             sum(map(proc_cpu_secs, pids)) - cpu0, done)
    finally:
        await asyncio.gather(*(sio.disconnect() for sio, _ in residents), return_exceptions=True)
        for console in consoles:
            await console.disconnect()


def main(args) -> None:
    name = "polku_bench_" + secrets.token_hex(5)
    prefix = f"polkubench:{secrets.token_hex(4)}:"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="polku-handoff-bench-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("POLKU_")},
           "POLKU_DATABASE_URL": database_url, "POLKU_REDIS_URL": REDIS_URL, "POLKU_REDIS_PREFIX": prefix,
           "POLKU_DATA_DIR": str(tmp), "POLKU_RASA_URL": f"http://127.0.0.1:{free_port()}",
           "POLKU_CHAT_ALWAYS_OPEN": "1", "POLKU_LOG_LEVEL": "WARNING",
           "POLKU_LOGIN_RATE_ADDRESS_PER_MIN": "1000", "POLKU_RATE_ADDRESS_PER_MIN": "100000",
           "POLKU_RATE_SESSION_PER_MIN": "100000",
           # every simulated resident comes from 127.0.0.1
           "POLKU_SOCKETS_PER_ADDRESS": "100000", "POLKU_QUEUED_PER_ADDRESS": "100000"}
    a = ChatServerProcess(env, tmp / "a.log")
    b = ChatServerProcess(env, tmp / "b.log")
    try:
        a.start()
        a.wait_ready()  # migrates first; then the second finds the schema ready
        b.start()
        b.wait_ready()
        asyncio.run(_create_users(Settings(environ=env), max(args.counsellors, 1)))
        # The fan-out's consoles are counsellors of their own (each sign-in takes a fresh second-factor code).
        asyncio.run(_create_users(Settings(environ=env), args.queue_consoles, prefix="q"))

        if getattr(args, "only_queue", False):
            asyncio.run(_queue_fanout(a, b, args.queue, args.queue_consoles, args.queue_changes))
            return
        samples, stopped = asyncio.run(_latency(a, b, args.messages, args.warmup))
        print(f"Counsellor message -> resident's socket, console on process A, resident on process B "
              f"(PostgreSQL + Redis), {len(samples)} of {args.messages} messages one at a time:")
        if stopped:
            print(f"  INCOMPLETE, {stopped}")
        if samples:
            p99_ms = percentile(samples, 99) * 1000
            print(f"  {summary_ms(samples)}")
            print(f"  p99 {p99_ms:.2f} ms: {'within' if p99_ms <= TARGET_P99_MS else 'OVER'} "
                  f"the {TARGET_P99_MS:.0f} ms target")

        races, single, winners = asyncio.run(_races(a, b, args.counsellors, args.races, database_url))
        doubles = sum(1 for w in winners if w > 1)
        print(f"Pick-up race: {args.counsellors} counsellors on 2 processes clicking the same chat at once, "
              f"{races} chats:")
        print(f"  exactly one winner (and one transition in the database) for {single}/{races} chats; "
              f"double assignments: {doubles}; winners per chat: {winners}")
        if args.queue > 0:
            asyncio.run(_queue_fanout(a, b, args.queue, args.queue_consoles, args.queue_changes))
    finally:
        a.stop()
        b.stop()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis_lib.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
