"""Fuzzing the chat server over its real sockets: random Socket.IO events and
raw Engine.IO frames (hypothesis strategies), sent by a plain websocket
client, with the checks every answer must pass.

Used by ``tests/server/test_fuzz.py`` (a few thousand events, in the suite)
and by ``python -m benchmarks fuzz`` (100,000 events against a
``python -m chat_server`` process: events/s, problems found, the worst
``/health`` latency during the run, the server's RSS before and after).

What is sent: every JSON type (NaN and infinities too), deep nesting, long
strings, lone surrogates, NUL, bidi marks, digits that are not ASCII, binary
attachments, ids of every shape (well-formed ones never issued, and the
socket's own), every event of the resident protocol in any order
(``user_uttered`` before ``session_request``, ``leave_queue`` twice,
``callback_request`` with garbage...), unknown and non-string event names,
the library's reserved ones, and frames that are no packet at all; on the
resident namespace and, without a staff cookie, on ``/counsellor``.

What every answer must pass (``Findings``): the resident gets only the
protocol's events; no ``error`` is ``server_busy`` (that is a fault of
ours: Redis and the database are up); the answers are in order (a sentinel
acknowledged after everything sent); a connection is closed only after it
sent frames that break the protocol; no answer carries another resident's
text.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import websocket  # websocket-client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

SENTINEL_ID = 987654321
MAX_FRAME_BYTES = 60_000  # below chat_server.app.MIN_PACKET_BYTES
FRAME_TIMEOUT_SECS = 10.0
RESIDENT_EVENTS = ("session_request", "user_uttered", "history_request", "leave_queue",
                   "resident_typing", "callback_request")
COUNSELLOR_EVENTS = ("hello", "open", "close_view", "pick_up", "send", "typing", "put_back", "close", "note",
                     "callback_done")
SERVER_EVENTS = {"session_confirm", "bot_uttered", "message_ack", "history", "error", "handoff_state",
                 "typing", "callback_ack"}
ERROR_CODES = {"message_too_long", "rate_limited", "unknown_session", "malformed_payload", "unknown_event",
               "callback_invalid", "server_busy",
               "queue_limited"}  # the address's queued conversations (POLKU_QUEUED_PER_ADDRESS)
OWN = "$OWN-SESSION$"  # replaced, when sent, by the session id the socket was given (if any)

# --- strategies ----------------------------------------------------------------------

SPECIAL_STRINGS = [
    "", " ", "\x00", "hei\x00", "\ud800", "hei \ud800 apua", "\udfff\ud800", "\u202e040 123 4567\u202c",
    "\u200f\u200e\u2066\u2069", "\ufeff", "\u00a0\u2007\u202f", "²³¹", "٠١٢٣", "𝟘𝟙𝟚", "１２３",
    "040\u00a0123\u00a04567", "131052\u2011308T", "358" + "1" * 200 + ".5", "a" * 2001, "👍🏽" * 300,
    "/request_counsellor", "/greet", "/restart", "/", "{\"json\": true}", "<script>x</script>",
    "haluan kuolla", "null", "\\", "\r\n\t",
]
LANGUAGES = ["fi", "sv", "en", "de", "", "FI", None, 1, "x" * 100]

characters = st.one_of(st.characters(), st.characters(categories=["Cs"]))  # lone surrogates too
texts = st.one_of(
    st.sampled_from(SPECIAL_STRINGS),
    st.text(characters, max_size=12),
    st.builds(lambda s, n: s * n, st.text(characters, min_size=1, max_size=4), st.integers(1, 3000)),
)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), texts)
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)), max_leaves=8)
session_ids = st.one_of(
    st.just(OWN), st.just(OWN), st.none(),
    st.builds(lambda: secrets.token_urlsafe(32)),  # well-formed, never issued
    texts, json_values)
client_ids = st.one_of(st.builds(lambda: secrets.token_hex(8)), st.none(), texts, json_values)
custom_data = st.one_of(
    st.fixed_dictionaries({}, optional={"client_id": client_ids, "language": st.sampled_from(LANGUAGES)}),
    json_values)


def _with_extra(fixed: dict, optional: dict | None = None) -> st.SearchStrategy:
    base = st.fixed_dictionaries(fixed, optional=optional or {})
    return st.one_of(base, base, st.builds(lambda d, extra: {**extra, **d}, base,
                                           st.dictionaries(texts, json_values, max_size=3)), json_values)


RESIDENT_PAYLOADS: dict[str, st.SearchStrategy] = {
    "session_request": _with_extra({}, {"session_id": session_ids, "language": st.sampled_from(LANGUAGES)}),
    "user_uttered": _with_extra({"message": texts}, {"session_id": session_ids, "customData": custom_data,
                                                     "metadata": custom_data}),
    "history_request": _with_extra({}, {"session_id": session_ids}),
    "leave_queue": _with_extra({}, {"session_id": session_ids}),
    "resident_typing": _with_extra({"typing": st.one_of(st.booleans(), json_values)}, {"session_id": session_ids}),
    "callback_request": _with_extra({}, {
        "session_id": session_ids, "consent": st.one_of(st.just(True), json_values),
        "phone": st.one_of(st.sampled_from(["040 123 4567", "+358401234567", "0401234567" * 30]), texts,
                           json_values),
        "name": st.one_of(texts, json_values), "preferred_time": st.one_of(texts, json_values),
        "topic": st.one_of(texts, json_values)}),
}
event_names = st.one_of(st.sampled_from(RESIDENT_EVENTS), st.sampled_from(RESIDENT_EVENTS),
                        st.sampled_from(("connect", "disconnect", "connect_error", "message", "error", "*",
                                         "session_confirm",
                                         "bot_uttered")), texts)


@dataclass(frozen=True)
class Frame:
    """One thing to send: ``text`` (a websocket text frame) and, for a binary
    event, the ``attachments`` that follow it. ``breaks_protocol``: a frame the
    server may count towards closing the connection."""

    text: str | bytes
    attachments: tuple[bytes, ...] = ()
    breaks_protocol: bool = False
    learns_session: bool = False  # a session_request: the driver reads the session id it gets


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def _event_frame(name: Any, args: list, ack: int | None, namespace: str = "") -> Frame:
    prefix = "42" + (f"{namespace}," if namespace else "") + ("" if ack is None else str(ack))
    breaks = not isinstance(name, str) or name in ("connect", "disconnect", "connect_error", "*")
    return Frame(prefix + _encode([name, *args]), breaks_protocol=breaks,
                 learns_session=name == "session_request" and not namespace)


@st.composite
def resident_events(draw) -> Frame:
    name = draw(event_names)
    payload = draw(RESIDENT_PAYLOADS[name]) if name in RESIDENT_PAYLOADS else draw(json_values)
    args = draw(st.sampled_from([[payload], [payload], [payload], [], [payload, payload]]))
    ack = draw(st.one_of(st.none(), st.none(), st.integers(0, 10**6)))
    return _event_frame(name, args, ack)


@st.composite
def odd_names(draw) -> Frame:
    name = draw(st.one_of(st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False),
                          st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                               max_size=2)))
    return _event_frame(name, [draw(json_values)], None)


@st.composite
def binary_events(draw) -> Frame:
    name = draw(st.sampled_from(RESIDENT_EVENTS))
    count = draw(st.integers(1, 6))
    placeholder = {"_placeholder": True, "num": 0}
    payload = draw(st.sampled_from([placeholder, {"message": placeholder}, {"message": "hei", "session_id":
                                                                           placeholder}]))
    blobs = tuple(draw(st.binary(max_size=64)) for _ in range(count))
    return Frame(f"45{count}-" + _encode([name, payload]), attachments=blobs, breaks_protocol=count > 4)


@st.composite
def deep_nesting(draw) -> Frame:
    depth = draw(st.integers(50, 5000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    name = draw(st.sampled_from(RESIDENT_EVENTS))
    return Frame(f'42["{name}",{{"message":' + opener * depth + "1" + closer * depth + "}]",
                 breaks_protocol=depth > 500)


@st.composite
def junk_frames(draw) -> Frame:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        text: str | bytes = draw(st.text(characters.filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF), max_size=30))
    elif kind == 1:
        text = draw(st.binary(max_size=30))
    elif kind == 2:
        text = "4" + draw(st.text(string.printable, max_size=30))
    elif kind == 3:
        text = "42" + draw(st.text(string.printable, max_size=30))
    elif kind == 4:
        text = draw(st.sampled_from(["42[", "42[123]", "42{}", "4-", "44", "41", "40", "2", "3", "5", "6", "1x",
                                     "b!!", "4²", '4999999999999-["x"]', '42/counsellor,["send",{}]']))
    elif draw(st.booleans()):
        # The console's namespace without a staff cookie: the connect is refused, events go nowhere.
        text = "40/counsellor," + draw(st.sampled_from(["", _encode({"token": "x"}), _encode(draw(json_values))]))
    else:
        text = '42/counsellor,' + draw(st.sampled_from(["", "1"])) + _encode(
            [draw(st.sampled_from(COUNSELLOR_EVENTS)), draw(json_values)])
    # "1" (Engine.IO close) and "41" (Socket.IO disconnect) end the connection or namespace: fine.
    return Frame(text, breaks_protocol=True)


# Mostly the protocol's own events with fuzzed payloads; about one in eight breaks the protocol
# itself (a connection is closed after 10 of those, which ends its sequence).
frames = st.one_of(*[resident_events()] * 12, odd_names(), binary_events(), deep_nesting(), junk_frames())
SESSION_START = Frame('42["session_request",{"session_id":null}]', learns_session=True)
USUAL = st.builds(lambda text, cid: Frame("42" + _encode(["user_uttered", {
    "message": text, "session_id": OWN, "customData": {"client_id": cid, "language": "fi"}}])),
    texts, st.builds(lambda: secrets.token_hex(8)))
# Half the sequences start as a widget does (a session, then messages), so that
# the handlers past the session check get their share of the fuzz.
sequences = st.builds(
    lambda start, body: ([SESSION_START] if start else []) + body,
    st.booleans(), st.lists(st.one_of(frames, frames, USUAL), min_size=20, max_size=60))


# --- the driver ------------------------------------------------------------------------


@dataclass
class Findings:
    """What the fuzzing found: counts, and the problems (each one a bug)."""

    events: int = 0
    sequences: int = 0
    closed_by_server: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # events received, by name
    problems: list[str] = field(default_factory=list)
    failing: list[list[Frame]] = field(default_factory=list)  # the whole input of each sequence with a problem
    max_health_secs: float = 0.0

    def problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)


class FuzzSocket:
    """One raw Engine.IO websocket connection on the resident namespace (sync)."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
                                              timeout=FRAME_TIMEOUT_SECS, enable_multithread=True)
        opening = self.ws.recv()
        assert isinstance(opening, str) and opening.startswith("0"), opening
        self.ws.send("40")
        joined = self.recv()
        assert isinstance(joined, str) and joined.startswith("40"), joined
        self.session_id: str | None = None
        self.closed = False
        self.timed_out = False
        self.received: list[tuple[str, Any]] = []

    def recv(self) -> str | bytes | None:
        while True:
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                self.timed_out = True
                self.closed = True
                return None
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                self.closed = True
                return None
            if frame == "2":
                self.send("3")
                continue
            if frame == "" and not self.ws.connected:
                self.closed = True
                return None
            return frame

    def send(self, frame: str | bytes) -> None:
        if self.closed:
            return
        try:
            if isinstance(frame, bytes):
                self.ws.send_binary(frame)
            else:
                self.ws.send(frame)
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            self.closed = True

    def round_trip(self) -> bool:
        """Send the sentinel (an event that asks for an acknowledgement) and read
        everything up to its acknowledgement: False when the connection closed first."""
        self.send(f'42{SENTINEL_ID}["fuzz_sentinel"]')
        while not self.closed:
            frame = self.recv()
            if frame is None:
                return False
            if isinstance(frame, str) and frame.startswith(f"43{SENTINEL_ID}"):
                return True
            if isinstance(frame, str) and frame.startswith("42"):
                name, *args = json.loads(frame[2:])
                self.received.append((name, args[0] if args else None))
                if name == "session_confirm" and isinstance(args[0], str):
                    self.session_id = args[0]
            # else: the server closes ("1"), leaves the namespace ("41"), answers an ack of the fuzz
        return False

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


def _show(sequence: list[Frame], limit: int = 3000) -> str:
    """The input of a sequence, to reproduce a finding (long frames shortened)."""
    shown = [f.text if len(f.text) <= 300 else f.text[:150] + f"...<{len(f.text)}>..." + f.text[-50:]
             for f in sequence]
    return repr(shown)[:limit]


def check_received(sock: FuzzSocket, findings: Findings, secrets_: tuple[str, ...]) -> None:
    for name, payload in sock.received:
        findings.answers[str(name)[:40]] = findings.answers.get(str(name)[:40], 0) + 1
        if name not in SERVER_EVENTS:
            findings.problem(f"unexpected event {name!r}")
        if name == "error":
            code = payload.get("code") if isinstance(payload, dict) else None
            findings.errors_by_code[str(code)] = findings.errors_by_code.get(str(code), 0) + 1
            if code not in ERROR_CODES or not payload.get("message"):
                findings.problem(f"error event without a known code or text: {payload!r:.200}")
            elif code == "server_busy":
                findings.problem("server_busy: a handler failed")
        blob = json.dumps(payload, ensure_ascii=False)
        for secret in secrets_:
            if secret in blob:
                findings.problem("another resident's text reached this socket")
    sock.received.clear()


def run_sequence(url: str, sequence: list[Frame], findings: Findings, secrets_: tuple[str, ...] = ()) -> None:
    """Send one sequence on a fresh connection, checking everything that comes back."""
    sock = FuzzSocket(url)
    findings_before = len(findings.problems)
    broke = 0
    left = False  # the client closed the connection or left the namespace itself ("1...", "41...")
    try:
        for frame in sequence:
            text = frame.text
            if isinstance(text, str) and (text.startswith("1") or text.startswith("41")):
                left = True
            if isinstance(text, str) and OWN in text:
                text = text.replace(_encode(OWN), _encode(sock.session_id))
            sock.send(text)
            for blob in frame.attachments:
                sock.send(blob)
            findings.events += 1
            # Over the transport's packet cap (64 KB; a 2,000-character message is at most
            # 12 KB of JSON) the websocket is closed by aiohttp: the client's doing.
            broke += frame.breaks_protocol or bool(frame.attachments) or len(text) > MAX_FRAME_BYTES
            if frame.learns_session and not left and not sock.round_trip():
                break
        if left:
            sock.closed = True  # nothing to expect
        ok = not left and sock.round_trip()
        before = len(findings.problems)
        check_received(sock, findings, secrets_)
        if len(findings.problems) > before:
            findings.problems[before:] = [f"{p}; input: {_show(sequence)}" for p in findings.problems[before:]]
        if sock.timed_out:
            findings.problem(f"no answer within {FRAME_TIMEOUT_SECS:.0f} s; input: {_show(sequence)}")
        elif not ok and not left:
            findings.closed_by_server += 1
            if broke == 0:
                findings.problem(f"the server closed a connection that sent nothing breaking the protocol; "
                                 f"input: {_show(sequence)}")
    finally:
        sock.close()
        if len(findings.problems) > findings_before and len(findings.failing) < 20:
            findings.failing.append(sequence)
    findings.sequences += 1


def health_secs(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url + "/health", timeout=30) as response:
        assert response.status == 200
        response.read()
    return time.perf_counter() - start


class HealthWatch:
    """GET /health every ``interval`` seconds in a thread; the worst latency seen."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        self.url = url
        self.interval = interval
        self.worst = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.worst = max(self.worst, health_secs(self.url))
            except Exception:
                self.worst = max(self.worst, 30.0)
            self.samples += 1

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def fuzz(url: str, *, examples: int, seed: int | None = None, secrets_: tuple[str, ...] = ()) -> Findings:
    """Run ``examples`` hypothesis-generated sequences against the server at ``url``."""
    findings = Findings()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(sequences)
    def one(sequence: list[Frame]) -> None:
        run_sequence(url, sequence, findings, secrets_)

    if seed is not None:
        one = settings(derandomize=False)(one)
        from hypothesis import seed as hseed
        one = hseed(seed)(one)
    one()
    return findings


# --- the benchmark -------------------------------------------------------------------


def generate_pool(examples: int, seed: int | None = None) -> list[list[Frame]]:
    """``examples`` sequences drawn by hypothesis (generating costs about 6 ms a frame,
    more than sending it: the benchmark replays recombinations of this pool).
    The same pool every time unless a ``seed`` is given."""
    from hypothesis import seed as hypothesis_seed

    pool: list[list[Frame]] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(sequences)
    def collect(sequence: list[Frame]) -> None:
        pool.append(sequence)

    if seed is not None:
        collect = hypothesis_seed(seed)(collect)
    collect()
    return pool


def replay(url: str, pool: list[list[Frame]], events: int, seed: int, findings: Findings,
           threads: int = 2) -> None:
    """Sequences recombined from the pool's frames (each connection: a pool sequence's start,
    then frames of any sequence), on ``threads`` connections at a time, until ``events`` were sent."""
    import random

    frames_ = [frame for sequence in pool for frame in sequence]
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while True:
            with lock:
                if findings.events >= events:
                    return
            length = rng.randint(20, 60)
            head = rng.choice(pool)[:rng.randint(0, 5)]
            sequence = head + [rng.choice(frames_) for _ in range(length - len(head))]
            local = Findings()
            try:
                run_sequence(url, sequence, local)
            except Exception as exc:  # the connection could not even be opened
                local.problem(f"connection failed: {type(exc).__name__}")
            with lock:
                findings.events += local.events
                findings.sequences += local.sequences
                findings.closed_by_server += local.closed_by_server
                for key, value in local.errors_by_code.items():
                    findings.errors_by_code[key] = findings.errors_by_code.get(key, 0) + value
                for key, value in local.answers.items():
                    findings.answers[key] = findings.answers.get(key, 0) + value
                for problem in local.problems:
                    findings.problem(problem)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=100_000, help="events to send (default 100,000)")
    parser.add_argument("--pool", type=int, default=300, help="sequences hypothesis draws for the replay")
    parser.add_argument("--threads", type=int, default=2, help="connections sending at a time")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the pool and the recombination (default: the same run every time)")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: a database of its own on 127.0.0.1:5432 and Redis (127.0.0.1:6379)")


def main(args) -> None:
    import contextlib
    import logging
    import tempfile
    from pathlib import Path

    from bot.rasa_server import free_port

    from .chat_servers import (ChatServerProcess, TempPostgres, TempRedisPrefix, chat_server_env, proc_cpu_secs,
                               proc_rss_kb)

    logging.getLogger("websocket").setLevel(logging.CRITICAL)  # the client's own close codes
    t0 = time.perf_counter()
    pool = generate_pool(args.pool, args.seed)
    generated = time.perf_counter() - t0
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="polku-fuzz-"))
        backend: dict[str, str] = {}
        if args.backend == "postgres":
            database, redis_prefix = stack.enter_context(TempPostgres()), stack.enter_context(TempRedisPrefix())
            backend = {"POLKU_DATABASE_URL": database.url, "POLKU_REDIS_URL": redis_prefix.url,
                       "POLKU_REDIS_PREFIX": redis_prefix.prefix}
        closed_rasa = f"http://127.0.0.1:{free_port()}"  # the bot answers nlu_unavailable at once
        port = free_port()
        log_path = Path(tmp) / "chat_server.log"
        server = ChatServerProcess(chat_server_env(Path(tmp) / "data", closed_rasa, f"http://127.0.0.1:{port}",
                                                   POLKU_CHAT_ALWAYS_OPEN="true",
                                                   POLKU_ADMIN_PREWARM_TRAINER="false", **backend),
                                   log_path, port=port).start()
        try:
            server.wait_ready()
            idle_health = min(health_secs(server.url) for _ in range(5))
            rss_before = proc_rss_kb(server.pid)
            cpu_before = proc_cpu_secs(server.pid)
            findings = Findings()
            start = time.perf_counter()
            with HealthWatch(server.url) as watch:
                replay(server.url, pool, args.events, args.seed or 1, findings, threads=args.threads)
            elapsed = time.perf_counter() - start
            cpu = proc_cpu_secs(server.pid) - cpu_before
            health_after = health_secs(server.url)
            rss_after = proc_rss_kb(server.pid)
            with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
                refused = json.loads(response.read()).get("refused", {})
        finally:
            server.stop()
        log_text = log_path.read_text(errors="replace")
    errors = [line for line in log_text.splitlines() if " ERROR " in line or "Traceback" in line]
    pool_frames = sum(len(sequence) for sequence in pool)
    print(f"backend: {args.backend}; pool: {len(pool)} sequences, {pool_frames} frames drawn by hypothesis "
          f"in {generated:.1f} s (seed {args.seed})")
    print(f"fuzz: {findings.events} events on {findings.sequences} connections ({args.threads} at a time) "
          f"in {elapsed:.1f} s: {findings.events / elapsed:.0f} events/s; server CPU {cpu:.1f} s "
          f"({cpu / max(1, findings.events) * 1e6:.0f} us/event)")
    print(f"  problems found: {len(findings.problems)}; ERROR/traceback lines in the server log: {len(errors)}")
    for problem in findings.problems[:10]:
        print(f"    - {problem[:600]}")
    for line in errors[:10]:
        print(f"    log: {line[:200]}")
    print(f"  connections the server closed: {findings.closed_by_server}")
    print("  answers: " + ", ".join(f"{k} {v}" for k, v in sorted(findings.answers.items())))
    print("  error events: " + ", ".join(f"{k} {v}" for k, v in sorted(findings.errors_by_code.items())))
    print("  server's counts (GET /health): " + ", ".join(f"{k} {v}" for k, v in refused.items()))
    print(f"  /health: {idle_health * 1000:.1f} ms idle; worst {watch.worst * 1000:.0f} ms over "
          f"{watch.samples} probes during the run; {health_after * 1000:.1f} ms after")
    print(f"  server RSS: {rss_before / 1024:.0f} MB before, {rss_after / 1024:.0f} MB after")
    print(f"  server log: {len(log_text)} bytes ({len(log_text) / max(1, findings.events):.1f} per event); "
          "lines by logger: " + ", ".join(f"{name} {n}" for name, n in _log_lines_by_logger(log_text)[:6]))


def _log_lines_by_logger(log_text: str) -> list[tuple[str, int]]:
    """(logger, lines) of a server log in the chat server's format, most first."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for line in log_text.splitlines():
        parts = line.split(" ", 4)  # date time level name: message
        if len(parts) == 5 and parts[3].endswith(":"):
            counts[f"{parts[2]} {parts[3][:-1]}"] += 1
    return counts.most_common()
