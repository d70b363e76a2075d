"""Frames that break the Engine.IO / Socket.IO protocols, sent raw over a real
websocket (issue 13): each is answered where the protocol allows, counted
(``GET /health``, one log summary a minute), never logged as a traceback; a
connection that keeps sending them is closed; no client text (unknown event
names included) reaches the log."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from bot.settings import Settings
from chat_server import logsafe
from chat_server.app import create_app
from chat_server.frames import MAX_MALFORMED_FRAMES
from chat_server.logsafe import SafeAccessLogger

from .counsellor_helpers import StaffBrowser, create_staff
from .raw_socketio import LogCapture, RawSocket

# Each breaks the Socket.IO protocol in its own way; none is a real client's.
MALFORMED_SOCKETIO = [
    "42[",                                   # JSON cut short (issue 13: 3.3 KB of traceback, twice)
    "42[123]",                               # event name not a string (issue 13: TypeError)
    "42[true]", "42[null]", "42[1.5]", "42[[1]]", "42[{}]",  # names that are not strings
    "42[]", "42{}", "42null", '42"user_uttered"', "42",      # no event list at all
    '42["connect",{}]', '42["disconnect"]', '42["*",{}]',  # the library's reserved events; the catch-all
    "4-", "4²", '42²["x"]', '4999999999999-["x"]', "44", "49",  # bad header, type, id, attachments
    '42/nowhere,["user_uttered",{}]',        # a namespace this socket never joined
    '455-["user_uttered",{"_placeholder":true,"num":0}]', b"\x00\x01",  # attachment count too high; a stray binary frame
]
MALFORMED_ENGINEIO = ["x", "", "9", "b!!!", "\ud7ff"]


@pytest.fixture
def server_log():
    logsafe.reset_repeats()
    with LogCapture() as capture:
        yield capture


async def _health(server) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/health") as response:
            assert response.status == 200
            return await response.json()


async def _raw(server, *namespaces: str, **kwargs) -> RawSocket:
    return await RawSocket(server.url, **kwargs).open(*namespaces)


@pytest.fixture
async def raw_sockets():
    sockets: list[RawSocket] = []
    yield sockets
    for sock in sockets:
        await sock.close()


async def test_each_malformed_frame_is_answered_counted_and_not_logged(launch, sqlite_settings, server_log,
                                                                          raw_sockets):
    server = await launch(sqlite_settings)
    mark = server_log.mark()
    for frame in MALFORMED_SOCKETIO:
        sock = await _raw(server)
        raw_sockets.append(sock)
        await sock.send(frame)
        event = await sock.next_event()
        assert event is not None and event[0] == "error", (frame, event)
        assert event[1]["code"] == "malformed_payload" and event[1]["message"], (frame, event)
        # The socket still works: a real request after it is answered.
        await sock.send('42["session_request",{"session_id":null}]')
        assert (await sock.next_event())[0] == "session_confirm", frame
    logged = server_log.since(mark)
    assert "Traceback" not in logged and not server_log.errors(), logged
    # At most a line per connection (the access log); nothing per frame.
    assert len(logged) < 200 * len(MALFORMED_SOCKETIO), len(logged)
    counts = (await _health(server))["refused"]
    assert counts["malformed_frame"] == len(MALFORMED_SOCKETIO)
    assert counts["refused_malformed_payload"] == len(MALFORMED_SOCKETIO)


async def test_a_connection_that_keeps_sending_malformed_frames_is_closed(launch, sqlite_settings, server_log,
                                                                         raw_sockets):
    server = await launch(sqlite_settings)
    mark = server_log.mark()
    sock = await _raw(server)
    raw_sockets.append(sock)
    sent = 0
    for _ in range(1000):
        if not await sock.send("42["):
            break
        sent += 1
    assert await sock.wait_closed(), "the server kept the connection open"
    errors = []
    while (event := await sock.next_event()) is not None:
        errors.append(event)
    # Answered until it was closed, then nothing more.
    assert errors == [("error", errors[0][1])] * (MAX_MALFORMED_FRAMES - 1), errors
    assert errors[0][1]["code"] == "malformed_payload"
    # Another connection is served as ever.
    other = await _raw(server)
    raw_sockets.append(other)
    await other.send('42["session_request",{}]')
    assert (await other.next_event())[0] == "session_confirm"
    server.server.sio.frame_stats.flush()  # the periodic summary, now
    logged = server_log.since(mark)
    assert "Traceback" not in logged and not server_log.errors(), logged
    # Issue 13: 1,000 of them added 3.3 MB of log. Now: the access lines and one summary.
    assert len(logged) < 1000, logged
    summary = [r.getMessage() for r in server_log.records if "refused client input" in r.getMessage()]
    assert len(summary) == 1 and f"malformed_frame {MAX_MALFORMED_FRAMES}" in summary[0], summary
    assert "connection_closed 1" in summary[0]
    counts = (await _health(server))["refused"]
    assert counts["malformed_frame"] == MAX_MALFORMED_FRAMES and counts["connection_closed"] == 1


@pytest.mark.parametrize("frame", MALFORMED_ENGINEIO)
async def test_frames_that_are_not_engineio_packets_are_dropped_then_the_connection_closed(
        launch, sqlite_settings, server_log, raw_sockets, frame):
    server = await launch(sqlite_settings)
    mark = server_log.mark()
    sock = await _raw(server)
    raw_sockets.append(sock)
    await sock.send(frame)
    # Dropped (Engine.IO has no error packet): the connection still serves.
    await sock.send('42["session_request",{}]')
    assert (await sock.next_event())[0] == "session_confirm"
    for _ in range(MAX_MALFORMED_FRAMES + 5):
        await sock.send(frame)
    assert await sock.wait_closed()
    logged = server_log.since(mark)
    assert "Traceback" not in logged and not server_log.errors(), logged
    counts = (await _health(server))["refused"]
    assert counts["malformed_frame"] == MAX_MALFORMED_FRAMES and counts["connection_closed"] == 1


async def test_malformed_long_polling_posts_are_dropped_without_a_traceback(launch, sqlite_settings, server_log):
    server = await launch(sqlite_settings)
    mark = server_log.mark()
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as response:
            sid = json.loads((await response.text())[1:])["sid"]
        url = f"{base}&sid={sid}"
        async with http.post(url, data="40") as response:
            assert response.status == 200
        async with http.get(url) as response:
            assert (await response.text()).startswith("40")
        statuses = []
        for body in ["x", "9", "", "\x1e".join(["42["] * 3), b"\xff\xfe", "4" + "\x1e" * 40]:
            async with http.post(url, data=body) as response:
                statuses.append(response.status)
        async with http.get(url) as response:
            answered = await response.text()
    assert "malformed_payload" in answered  # the Socket.IO ones were answered
    logged = server_log.since(mark)
    assert "Traceback" not in logged and not server_log.errors(), logged
    counts = (await _health(server))["refused"]
    assert counts["malformed_frame"] >= 6


async def test_unknown_event_names_are_answered_and_never_logged(launch, sqlite_settings, server_log, raw_sockets):
    server = await launch(sqlite_settings)
    mark = server_log.mark()
    sock = await _raw(server)
    raw_sockets.append(sock)
    secret = "jussi-040-1234567-salainen"
    for name in (secret, secret * 100, "\u202e" + secret, ""):
        await sock.send("42" + json.dumps([name, {"message": secret}]))
        event = await sock.next_event()
        assert event[0] == "error" and event[1]["code"] == "unknown_event", (name, event)
    server.server.sio.frame_stats.flush()
    logged = server_log.since(mark)
    assert secret not in logged and "salainen" not in logged, logged
    assert "refused_unknown_event 4" in logged
    assert not sock.closed.is_set()  # unknown events are refused, not a reason to close


async def test_library_messages_that_quote_the_client_are_scrubbed(launch, sqlite_settings, server_log):
    server = await launch(sqlite_settings, POLKU_ALLOWED_ORIGINS="https://kunta.example")
    mark = server_log.mark()
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/socket.io/?EIO=4&transport=polling&sid=secret-sid-4242") as response:
            assert response.status == 400
        async with http.get(server.url + "/socket.io/?EIO=4&transport=polling",
                            headers={"Origin": "https://secret-origin-4242.example"}) as response:
            assert response.status == 400
    logged = "".join(server_log.format(r) for r in server_log.records[-10:] if r.name != "aiohttp.access")
    assert "4242" not in logged and "secret" not in logged, logged
    assert "Invalid session <id>" in logged  # withheld, not silenced


async def test_the_access_log_keeps_routes_not_request_lines(sqlite_settings, real_bot, server_log):
    app = create_app(Settings(environ={}, **sqlite_settings), bot=real_bot)
    runner = web.AppRunner(app, handle_signals=False, access_log_class=SafeAccessLogger)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        mark = server_log.mark()
        async with aiohttp.ClientSession() as http:
            for path in ("/socket.io/?EIO=4&transport=polling&sid=secret-sid-4242", "/secret-path-4242",
                         "/health?secret=4242"):
                async with http.get(url + path) as response:
                    await response.read()
        logged = server_log.since(mark)
        assert "4242" not in logged and "secret" not in logged, logged
        assert '"GET /socket.io/" 400' in logged and '"GET <unknown path>" 404' in logged
        assert '"GET /health" 200' in logged
    finally:
        await runner.cleanup()


async def test_counsellor_namespace_without_a_staff_cookie(launch, sqlite_settings, server_log, raw_sockets):
    server = await launch(sqlite_settings)
    mark = server_log.mark()
    sock = await RawSocket(server.url).open("/counsellor")  # refused: 44/counsellor,{"message":"not_signed_in"}
    raw_sockets.append(sock)
    for _ in range(MAX_MALFORMED_FRAMES + 5):
        await sock.send('42/counsellor,1["send",{"conversation_id":1,"text":"hei"}]')
    assert await sock.wait_closed()
    logged = server_log.since(mark)
    assert "Traceback" not in logged and not server_log.errors(), logged
    assert (await _health(server))["refused"]["connection_closed"] == 1


async def test_counsellor_namespace_refuses_malformed_frames_in_the_acknowledgement(
        launch, sqlite_settings, server_log, raw_sockets):
    server = await launch(sqlite_settings)
    await create_staff(server, "anna")
    browser = StaffBrowser(server)
    try:
        await browser.sign_in("anna")
        sock = await RawSocket(server.url, headers={"Cookie": browser.cookie_header()}).open()
        raw_sockets.append(sock)
        joined = await sock.join("/counsellor")
        assert joined.startswith("40/counsellor,"), joined
        mark = server_log.mark()
        for frame, expected in (('42/counsellor,7[123]', '43/counsellor,7[{"ok":false,"error":"malformed_payload"}]'),
                                ('42/counsellor,8["nosuch",{}]', '43/counsellor,8[{"ok":false,"error":"unknown_event"}]'),
                                ('42/counsellor,9["hello",', None)):
            await sock.send(frame)
            if expected is not None:
                answer = await sock.next_frame()
                while isinstance(answer, str) and not answer.startswith("43"):
                    answer = await sock.next_frame()  # the console's own events (queue...)
                assert answer == expected
        await sock.send('42/counsellor,10["hello",{}]')
        answer = await sock.next_frame()
        while isinstance(answer, str) and not answer.startswith("43/counsellor,10"):
            answer = await sock.next_frame()
        assert '"ok":true' in answer  # still served
        logged = server_log.since(mark)
        assert "Traceback" not in logged and not server_log.errors(), logged
    finally:
        await browser.close()


def test_log_filters_scrub_and_limit_repeats():
    import logging

    from chat_server.logsafe import ClientTextFilter, RepeatFilter

    library = ClientTextFilter(burst=2, window_secs=3600)
    records = []
    for i in range(5):
        try:
            raise ValueError(f"secret-{i}")
        except ValueError:
            import sys
            record = logging.LogRecord("engineio.server", logging.ERROR, __file__, 1,
                                       "received event %s from %s", ("secret-name", 42), sys.exc_info())
        if library.filter(record):
            records.append(record)
    assert len(records) == 2
    text = logging.Formatter().format(records[0])
    assert text == "received event <str 11> from <int> (ValueError)" and "secret" not in text
    own = RepeatFilter(burst=1, window_secs=0.0)  # every record starts a new window
    first = logging.LogRecord("chat_server.resident", logging.ERROR, __file__, 1, "x failed: %s", ("E",), None)
    assert own.filter(first) and first.getMessage() == "x failed: E"
