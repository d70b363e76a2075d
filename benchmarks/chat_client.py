"""Light resident clients for the chat benchmark: Socket.IO v4 over a raw
Engine.IO v4 websocket on aiohttp (one socket and one reader task per
resident, no python-socketio client), and the load jobs that run them.

Protocol, as both python-socketio 5.18 (ours) and 5.9 (Rasa's) speak it:
the server opens with ``0{"sid": ..., "pingInterval": ...}``, the client
connects the default namespace with ``40`` and gets ``40{"sid": ...}``,
events travel as ``42["event", payload]``, and the server's ping ``2`` is
answered with ``3``.

Jobs run either in client worker processes (``worker_main``) or in a thread
of the calling process (small runs, tests). Every job connects its residents,
reports ``ready`` to the coordinator, waits for ``go`` (with the measurement
window in ``time.monotonic()`` seconds, one clock for every process on
Linux), runs, and returns its samples.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import resource
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp

EIO_PATH = "/socket.io/?EIO=4&transport=websocket"
POLKU = "polku"  # our chat server: answers are bot_uttered with metadata.sender "bot", after a message_ack
RASA = "rasa"  # stock Rasa socketio channel: the first bot_uttered after the send
HANDOFF_STATES = ("queued", "unavailable", "counsellor")


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (10,000 sockets need it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def own_rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Stats:
    """What one job saw. Samples are (sent, answered) monotonic times."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)  # send times of unanswered messages
    errors: collections.Counter = field(default_factory=collections.Counter)
    connect_failures: collections.Counter = field(default_factory=collections.Counter)
    disconnects: int = 0
    unexpected: int = 0  # answers nobody waited for (Rasa: after a timeout)
    handoffs: int = 0
    # Answers that only say the NLU did not answer in time (our server, when
    # Rasa is overloaded): quick, but not the answer. Counted apart, as failures.
    degraded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "sent": self.sent, "timeouts": self.timeouts,
                "errors": dict(self.errors), "connect_failures": dict(self.connect_failures),
                "disconnects": self.disconnects, "unexpected": self.unexpected,
                "handoffs": self.handoffs, "degraded": self.degraded}


@dataclass
class Pending:
    sent_at: float
    client_id: str
    future: asyncio.Future
    ack_id: int | None = None
    expiry: asyncio.TimerHandle | None = None


class Resident:
    """One resident's socket."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, flavour: str, stats: Stats, *,
                 origin: str, compress: bool, answer_timeout: float,
                 degraded_texts: frozenset[str] = frozenset()) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + EIO_PATH
        self.flavour = flavour
        self.stats = stats
        self.origin = origin
        self.compress = compress
        self.answer_timeout = answer_timeout
        self.degraded_texts = degraded_texts
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.session_id: str | None = None
        self.handoff_state = "bot"
        self.closed = False
        self.pending: collections.deque[Pending] = collections.deque()
        self._bot_ids: collections.deque[tuple[int, float]] = collections.deque()
        self._late = 0
        self._waiters: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    # --- connection ---------------------------------------------------------------

    async def open(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            self.ws = await self.http.ws_connect(
                self.url, headers={"Origin": self.origin}, compress=15 if self.compress else 0,
                autoping=True, heartbeat=None, max_msg_size=0)
            opened = await self.ws.receive()
            if opened.type != aiohttp.WSMsgType.TEXT or not opened.data.startswith("0"):
                raise ConnectionError(f"no Engine.IO open packet: {opened.type} {str(opened.data)[:60]}")
            await self.ws.send_str("40")
            connected = await self.ws.receive()
            if connected.type != aiohttp.WSMsgType.TEXT or not connected.data.startswith("40"):
                raise ConnectionError(f"namespace not connected: {str(connected.data)[:60]}")
        self._reader = asyncio.create_task(self._read())

    async def start_session(self, language: str = "fi", timeout: float = 10.0) -> str:
        payload: dict[str, Any] = {"session_id": None}
        if self.flavour == POLKU:
            payload["language"] = language
        confirm = self._wait_for("session_confirm")
        await self.emit("session_request", payload)
        async with asyncio.timeout(timeout):
            self.session_id = await confirm
        return self.session_id

    async def close(self) -> None:
        self.closed = True
        for item in self.pending:
            if item.expiry:
                item.expiry.cancel()
        if self.ws is not None and not self.ws.closed:
            try:
                async with asyncio.timeout(5):
                    await self.ws.close()
            except (asyncio.TimeoutError, OSError, aiohttp.ClientError):
                pass
        if self._reader is not None:
            self._reader.cancel()

    async def emit(self, event: str, payload: Any) -> None:
        await self.ws.send_str("42" + json.dumps([event, payload], ensure_ascii=False, separators=(",", ":")))

    def _wait_for(self, event: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters[event] = future
        return future

    # --- receiving ----------------------------------------------------------------

    async def _read(self) -> None:
        ws = self.ws
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = msg.data
                if data == "2":
                    await ws.send_str("3")
                elif data.startswith("42"):
                    try:
                        event, *args = json.loads(data[2:])
                    except ValueError:
                        continue
                    self._on_event(event, args[0] if args else None)
                elif data.startswith("41") or data == "1":
                    break
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            return
        if not self.closed:
            self.closed = True
            self.stats.disconnects += 1
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("disconnected"))

    def _on_event(self, event: str, payload: Any) -> None:
        now = time.monotonic()
        if event == "bot_uttered":
            if self.flavour == POLKU:
                meta = payload.get("metadata") if isinstance(payload, dict) else None
                if not isinstance(meta, dict) or meta.get("sender") != "bot":
                    return  # the welcome and handoff notices
                if payload.get("text") in self.degraded_texts:
                    self.stats.degraded += 1
                self._bot_ids.append((int(meta.get("message_id") or 0), now))
                self._match_polku()
            else:
                if self._late:
                    self._late -= 1  # the late answer of a message that timed out
                    self.stats.unexpected += 1
                elif self.pending:
                    self._answer(self.pending.popleft(), now)
                else:
                    self.stats.unexpected += 1
        elif event == "message_ack":
            client_id = payload.get("client_id") if isinstance(payload, dict) else None
            for item in self.pending:
                if item.client_id == client_id:
                    item.ack_id = int(payload.get("message_id") or 0)
                    break
            self._match_polku()
        elif event == "session_confirm":
            waiter = self._waiters.pop("session_confirm", None)
            if waiter is not None and not waiter.done():
                waiter.set_result(payload)
        elif event == "handoff_state":
            state = payload.get("state") if isinstance(payload, dict) else None
            if state in HANDOFF_STATES and self.handoff_state not in HANDOFF_STATES:
                self.stats.handoffs += 1
            self.handoff_state = state or "bot"
            waiter = self._waiters.get("handoff_bot")
            if state == "bot" and waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif event == "error":
            code = payload.get("code") if isinstance(payload, dict) else "?"
            client_id = payload.get("client_id") if isinstance(payload, dict) else None
            self.stats.errors[str(code)] += 1
            for item in list(self.pending):
                if item.client_id == client_id:
                    self.pending.remove(item)
                    self._finish(item, None)
                    break

    def _match_polku(self) -> None:
        """Our answer to a message is the first bot message stored after it (id above its ack's)."""
        while self.pending and self.pending[0].ack_id is not None:
            first = self.pending[0]
            while self._bot_ids and self._bot_ids[0][0] <= first.ack_id:
                self._bot_ids.popleft()  # a further reply to an earlier message
            if not self._bot_ids:
                return
            _, at = self._bot_ids.popleft()
            self.pending.popleft()
            self._answer(first, at)

    def _answer(self, item: Pending, at: float) -> None:
        self.stats.samples.append((item.sent_at, at))
        self._finish(item, at - item.sent_at)

    @staticmethod
    def _finish(item: Pending, result: float | None) -> None:
        if item.expiry:
            item.expiry.cancel()
        if not item.future.done():
            item.future.set_result(result)

    def _expire(self, item: Pending) -> None:
        if item in self.pending:
            self.pending.remove(item)
            self.stats.timeouts.append(item.sent_at)
            if self.flavour == RASA:
                self._late += 1
            self._finish(item, None)

    # --- sending ------------------------------------------------------------------

    async def leave_queue_if_handed_off(self, timeout: float = 5.0) -> None:
        """A message the bot answered with a handoff parks the conversation in the
        counsellor queue; leave it so the bot answers the next message again."""
        if self.flavour != POLKU or self.handoff_state not in HANDOFF_STATES:
            return
        back = self._wait_for("handoff_bot")
        await self.emit("leave_queue", {})
        try:
            async with asyncio.timeout(timeout):
                await back
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.pop("handoff_bot", None)

    async def say(self, text: str, language: str | None = None) -> Pending:
        loop = asyncio.get_running_loop()
        client_id = uuid.uuid4().hex
        custom: dict[str, Any] = {"client_id": client_id}
        if language:
            custom["language"] = language
        payload: dict[str, Any] = {"message": text, "session_id": self.session_id}
        payload["customData" if self.flavour == POLKU else "metadata"] = custom
        item = Pending(time.monotonic(), client_id, loop.create_future())
        item.expiry = loop.call_later(self.answer_timeout, self._expire, item)
        self.pending.append(item)
        self.stats.sent.append(item.sent_at)
        await self.emit("user_uttered", payload)
        return item


# --- jobs ---------------------------------------------------------------------------


class LoopLag:
    """How late the event loop wakes up: the client's own saturation shows here."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.period)
            self.samples.append(max(0.0, time.monotonic() - before - self.period))

    def stop(self) -> list[float]:
        if self._task:
            self._task.cancel()
        return self.samples


async def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _connect_all(residents: list[Resident], rate_per_sec: float, concurrency: int,
                       stats: Stats, language_of: Callable[[int], str]) -> list[Resident]:
    """Open and start a session on every resident, paced; returns those that made it."""
    gate = asyncio.Semaphore(concurrency)
    start = time.monotonic()

    async def one(i: int, resident: Resident) -> bool:
        await _sleep_until(start + i / rate_per_sec)
        async with gate:
            try:
                await resident.open()
                await resident.start_session(language_of(i))
                return True
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                stats.connect_failures[type(exc).__name__] += 1
                await resident.close()
                return False

    ok = await asyncio.gather(*(one(i, r) for i, r in enumerate(residents)))
    return [r for r, good in zip(residents, ok) if good]


class Control:
    """The job's line to its coordinator: ready -> go, done."""

    def __init__(self, send: Callable[[Any], None], recv: Callable[[], Any]) -> None:
        self._send = send
        self._recv = recv

    async def ready(self, info: dict) -> dict:
        self._send(("ready", info))
        return await asyncio.get_running_loop().run_in_executor(None, self._recv)


async def run_job(job: dict, control: Control) -> dict:
    """Run one job: {"kind": steady|closed|idle, "targets": [url...], "flavour", "residents", ...}."""
    raise_nofile_limit()
    stats = Stats()
    rng = random.Random(job.get("seed", 0))
    texts: list[tuple[str, str]] = job.get("texts") or [("hei", "fi")]
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
    lag = LoopLag()
    targets = job["targets"]
    degraded_texts = frozenset(job.get("degraded_texts") or ())
    residents = [Resident(http, targets[i % len(targets)], job["flavour"], stats,
                          origin=job["origin"], compress=job.get("compress", True),
                          answer_timeout=job.get("answer_timeout", 10.0), degraded_texts=degraded_texts)
                 for i in range(job["residents"])]
    languages = [rng.choice(texts)[1] for _ in residents]
    rss_before = own_rss_kb()
    connect_started = time.monotonic()
    try:
        live = await _connect_all(residents, job.get("connect_rate", 500.0), job.get("connect_concurrency", 100),
                                  stats, lambda i: languages[i])
        connect_secs = time.monotonic() - connect_started
        go = await control.ready({"connected": len(live), "connect_secs": connect_secs,
                                  "connect_failures": dict(stats.connect_failures),
                                  "client_rss_kb": own_rss_kb(), "client_rss_before_kb": rss_before})
        if go.get("stop"):
            return {"stats": stats.to_dict(), "connected": len(live)}
        lag.start()
        start, end = go["start"], go["end"]
        cpu_start = None

        async def mark_cpu() -> None:
            nonlocal cpu_start
            await _sleep_until(start)
            cpu_start = time.process_time()

        marker = asyncio.create_task(mark_cpu())
        if job["kind"] == "steady":
            await asyncio.gather(*(_steady(r, rng.random(), job["interval"], start, end, texts, rng)
                                   for r in live))
        elif job["kind"] == "closed":
            await asyncio.gather(*(_closed(r, start, end, texts, random.Random(rng.random()),
                                           job.get("conversation_messages", 10)) for r in live))
        elif job["kind"] == "idle":
            pass  # connected and confirmed is all an idle resident does
        await _sleep_until(end)
        await marker
        cpu = time.process_time() - (cpu_start if cpu_start is not None else time.process_time())
        # Whatever is still unanswered gets its full answer timeout.
        drain_until = time.monotonic() + job.get("answer_timeout", 10.0) + 0.5
        while any(r.pending for r in live) and time.monotonic() < drain_until:
            await asyncio.sleep(0.05)
        return {"stats": stats.to_dict(), "connected": len(live), "connect_secs": connect_secs,
                "client_cpu_secs": cpu, "window_secs": end - start, "loop_lag": lag.stop(),
                "client_rss_kb": own_rss_kb()}
    finally:
        lag.stop()
        await asyncio.gather(*(r.close() for r in residents), return_exceptions=True)
        await http.close()


async def _steady(resident: Resident, phase: float, interval: float, start: float, end: float,
                  texts: list[tuple[str, str]], rng: random.Random) -> None:
    """Open loop: one message every `interval` s, from a random phase, while the window lasts."""
    at = start + phase * interval
    while at < end:
        await _sleep_until(at)
        if resident.closed:
            return
        await resident.leave_queue_if_handed_off()
        text, lang = rng.choice(texts)
        try:
            await resident.say(text, lang)
        except (aiohttp.ClientError, OSError, ConnectionError, RuntimeError):
            return
        at += interval


async def _closed(resident: Resident, start: float, end: float, texts: list[tuple[str, str]],
                  rng: random.Random, conversation_messages: int) -> None:
    """Closed loop: the next message as soon as the answer (or its timeout) is in. After
    `conversation_messages` messages the resident starts a new conversation (session_request
    with no id), as real conversations are short: stock Rasa's cost per message grows with
    the length of the conversation's tracker."""
    await _sleep_until(start + rng.random() * 0.05)
    said = 0
    while time.monotonic() < end and not resident.closed:
        if said and conversation_messages and said % conversation_messages == 0:
            text, lang = rng.choice(texts)
            try:
                await resident.start_session(lang)
            except (aiohttp.ClientError, OSError, ConnectionError, RuntimeError, asyncio.TimeoutError):
                resident.stats.errors["session_request_failed"] += 1
                return
            resident.handoff_state = "bot"
        said += 1
        await resident.leave_queue_if_handed_off()
        text, lang = rng.choice(texts)
        try:
            item = await resident.say(text, lang)
        except (aiohttp.ClientError, OSError, ConnectionError, RuntimeError):
            return
        await item.future


def worker_main(conn) -> None:
    """Entry point of a client worker process: jobs in, results out, until None."""
    raise_nofile_limit()
    control = Control(conn.send, conn.recv)
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            result = asyncio.run(run_job(job, control))
            conn.send(("done", result))
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
