"""Property-based fuzzing of the resident and counsellor namespaces over real
sockets (issue 13): a few thousand random events and raw frames
(``benchmarks/fuzz.py``: every JSON type, deep nesting, long strings, lone
surrogates, NUL, bidi marks, binary attachments, wrong ids, events out of
order...), then the server must answer ``/health`` at once, a normal
resident must still get the right answers, and the server's log must hold no
ERROR, no traceback and none of the text sent.

The server runs in a thread of its own (its own event loop) so that
hypothesis drives the synchronous test body; it loads its own Bot (Rasa
unreachable: text gets the nlu_unavailable answer, the crisis lexicon and
buttons work as in production). ``python -m benchmarks fuzz`` runs 100,000.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from benchmarks.fuzz import FuzzSocket, HealthWatch, fuzz, health_secs
from bot.settings import Settings
from chat_server import logsafe

from .helpers import RunningServer, start_server
from .raw_socketio import LogCapture

EXAMPLES = {"sqlite": 80, "postgres": 25}  # about 25 frames each: ~2,000 and ~600 events
VICTIM_SECRET = "Jussin-salaisuus-4242"


class ThreadedServer:
    """A chat server on a loop of its own in a thread (the test body is synchronous)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.running: RunningServer | None = None

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        self.running = self.run(start_server(self.settings, bot=None))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.running is not None:
                self.run(self.running.stop(), timeout=90.0)
        finally:
            async def cancel_the_rest() -> None:  # the library's ping tasks of closed sockets
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            self.run(cancel_the_rest())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def url(self) -> str:
        return self.running.url


def _event(sock: FuzzSocket, name: str) -> Any:
    """The next event ``name`` on a raw socket (others kept in sock.received)."""
    while True:
        frame = sock.recv()
        assert frame is not None, f"closed while waiting for {name}"
        if isinstance(frame, str) and frame.startswith("42"):
            got, *args = json.loads(frame[2:])
            if got == name:
                return args[0] if args else None
            sock.received.append((got, args[0] if args else None))


def _say(sock: FuzzSocket, text: str, client_id: str, language: str = "fi") -> dict:
    sock.send("42" + json.dumps(["user_uttered", {"message": text, "session_id": sock.session_id,
                                                  "customData": {"client_id": client_id, "language": language}}]))
    ack = _event(sock, "message_ack")
    assert ack["client_id"] == client_id
    return _event(sock, "bot_uttered")


def _resident(url: str) -> FuzzSocket:
    sock = FuzzSocket(url)
    sock.send('42["session_request",{"session_id":null,"language":"fi"}]')
    sock.session_id = _event(sock, "session_confirm")
    _event(sock, "bot_uttered")  # the welcome
    return sock


def _check_normal_resident(server: ThreadedServer) -> None:
    """After the fuzzing, a resident is answered as ever (and the answers are the bot's own)."""
    sock = _resident(server.url)
    try:
        answer = _say(sock, "Tarvitsen apua vuokran kanssa", "normal-1")
        rows = server.run(server.running.sql("SELECT response_id, text FROM messages WHERE id = :id",
                                             id=answer["metadata"]["message_id"]))
        # Rasa is unreachable: the bot says so and offers a counsellor (as in test_protocol).
        assert rows == [("nlu_unavailable", answer["text"])]
        assert [qr["payload"] for qr in answer["quick_replies"]] == ["/request_counsellor"]
        crisis = _say(sock, "en jaksa enää, haluan kuolla", "normal-2")
        rows = server.run(server.running.sql("SELECT response_id FROM messages WHERE id = :id",
                                             id=crisis["metadata"]["message_id"]))
        assert rows[0][0].startswith("crisis"), rows  # the lexicon, without Rasa
    finally:
        sock.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_fuzzed_events_and_frames_crash_nothing(request, backend):
    base = request.getfixturevalue(f"{backend}_settings")
    # One address sends everything: the per-address limits must not stop the fuzzing early.
    settings = Settings(environ={}, **{**base, "POLKU_RATE_ADDRESS_PER_MIN": 10**9,
                                       "POLKU_RATE_SESSION_PER_MIN": 10**9})
    logsafe.reset_repeats()  # earlier tests' errors must not use up this test's share of the log
    with LogCapture() as log, ThreadedServer(settings) as server:
        victim = _resident(server.url)  # a resident chatting meanwhile: none of it may leak
        try:
            _say(victim, f"Nimeni on {VICTIM_SECRET}", "victim-1")
        finally:
            victim.close()
        with HealthWatch(server.url, interval=0.05) as watch:  # the event loop never stalls meanwhile
            findings = fuzz(server.url, examples=EXAMPLES[backend], secrets_=(VICTIM_SECRET,))
        # The victim comes back (a new socket, as after a reload): the session and its history survived.
        back = FuzzSocket(server.url)
        try:
            back.send("42" + json.dumps(["session_request", {"session_id": victim.session_id}]))
            assert _event(back, "session_confirm") == victim.session_id
            back.session_id = victim.session_id
            back.send("42" + json.dumps(["history_request", {"session_id": victim.session_id}]))
            texts = [m["text"] for m in _event(back, "history")["messages"]]
            assert any(VICTIM_SECRET in t for t in texts), texts
            _say(back, "Vieläkö kuulet?", "victim-2")
        finally:
            back.close()
        worst = max(health_secs(server.url) for _ in range(3))
        _check_normal_resident(server)
        app = server.running.server
        server.run(asyncio.sleep(0.5))  # the last disconnects handled
        leaked = len(app.resident.sockets)
        held = {"engine.io sockets": len(app.sio.eio.sockets), "environs": len(app.sio.environ),
                "pending binary packets": len(app.sio._binary_packet),
                "malformed counts": len(app.sio._malformed_counts)}
        refused = app.sio.frame_stats.snapshot()
    print(f"fuzz ({backend}): {findings.events} events, {findings.sequences} connections, "
          f"/health worst {watch.worst * 1000:.0f} ms over {watch.samples} probes, "
          f"{findings.closed_by_server} closed by the server, answers {findings.answers}, refused {refused}")
    assert findings.problems == [], findings.problems
    assert findings.events >= EXAMPLES[backend] * 10, findings.events
    assert worst < 0.5, f"/health took {worst:.2f} s after the fuzzing"
    # During it, on a shared 2-core machine: generous, but a stalled event loop takes seconds.
    assert watch.samples > 10 and watch.worst < 2.0, f"/health took {watch.worst:.2f} s during the fuzzing"
    errors = [log.format(r) for r in log.errors() if r.name != "websocket"]  # not the test's own client
    assert errors == [], errors[:10]
    assert "Traceback" not in log.text
    assert VICTIM_SECRET not in log.text
    # Every socket the fuzzing opened is gone from the server's books (none left behind).
    assert leaked == 0, f"{leaked} resident sockets still held"
    assert not any(held.values()), held
    assert refused.get("malformed_frame", 0) > 0 and refused.get("refused_malformed_payload", 0) > 0, refused
    # Counted whatever the log's repeat limit let through:
    assert refused.get("handler_error", 0) == 0 and refused.get("refused_server_busy", 0) == 0, refused
