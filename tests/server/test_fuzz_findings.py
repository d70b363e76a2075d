"""What the fuzzer (test_fuzz.py, ``python -m benchmarks fuzz``) found, each
kept as a focused case on both backends. (Frame-level findings are in
test_frames.py.)"""

from __future__ import annotations

import pytest

from .counsellor_helpers import conversation_id_of, queued_resident
from .raw_socketio import LogCapture


@pytest.mark.parametrize("client_id", ["\x00", "viesti-\x00-1"])
async def test_a_client_id_with_nul_is_a_malformed_payload_not_a_server_fault(server, resident, client_id):
    # On PostgreSQL this was server_busy and "on_user_uttered failed: DataError" at ERROR.
    messages = await server.count("messages")
    with LogCapture() as log:
        await resident.sio.emit("user_uttered", {"message": "hei", "session_id": resident.session_id,
                                                 "customData": {"client_id": client_id}})
        error = await resident.error()
    assert error["code"] == "malformed_payload" and error["message"]
    assert await server.count("messages") == messages
    assert not log.errors(), [log.format(r) for r in log.errors()]
    await resident.ack(await resident.say("hei taas"))  # the session goes on


@pytest.mark.parametrize("payload", [
    {"text": "hei \ud800 siellä"},                         # lone surrogate in the text
    {"text": "hei", "client_id": "a\x00b"},                # NUL in the client_id
    {"text": "hei", "client_id": "a\udfffb"},              # lone surrogate in the client_id
])
async def test_console_send_with_text_no_database_can_store_is_refused(server, connect, console, payload):
    resident = await queued_resident(connect, server)
    cid = await conversation_id_of(server, resident)
    await console.ok("pick_up", {"conversation_id": cid})
    messages = await server.count("messages")
    with LogCapture() as log:
        answer = await console.call("send", {"conversation_id": cid, **payload})
    assert answer == {"ok": False, "error": "malformed_payload"}
    assert await server.count("messages") == messages
    assert not log.errors(), [log.format(r) for r in log.errors()]
