"""The resident protocol's core and extensions, driven over real sockets on
both backends with the real Bot (Rasa unreachable: it answers nlu_unavailable)."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid

import pytest

from chat_server.resident import service as resident_service
from chat_server.resident.sessions import hash_session_id, mint_session_id

from .helpers import OWN_BOT


SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def assert_rasa_bot_uttered(payload: dict) -> None:
    """Exactly what Rasa's socketio channel sends, so rasa-webchat renders it."""
    assert set(payload) <= {"text", "quick_replies", "metadata"}
    assert isinstance(payload["text"], str) and payload["text"]
    for qr in payload.get("quick_replies", []):
        assert set(qr) == {"content_type", "title", "payload"}
        assert qr["content_type"] == "text" and qr["payload"].startswith("/")
    meta = payload["metadata"]
    assert meta["sender"] in ("bot", "counsellor", "system")
    # null only for the welcome of a session not written yet (docs/protocol.md)
    assert isinstance(meta["message_id"], int) or (meta["message_id"] is None and meta["sender"] == "system")
    assert ISO_TIME.fullmatch(meta["time"])
    assert meta["language"] in ("fi", "sv", "en")


async def test_new_session_gets_a_minted_id_and_the_welcome(server, connect):
    client = await connect(server)
    session_id = await client.session(None)
    assert isinstance(session_id, str) and SESSION_ID.fullmatch(session_id)
    welcome = await client.next("bot_uttered")
    assert_rasa_bot_uttered(welcome)
    assert welcome["metadata"]["sender"] == "system"
    # Nothing is written until the resident writes (a socket that never does costs no row).
    assert await server.count("conversations") == 0 and await server.count("messages") == 0
    assert welcome["metadata"]["message_id"] is None
    ack = await client.ack(await client.say("hei"))
    rows = await server.sql("SELECT session_hash, handoff_state FROM conversations")
    # Only the hash of the id is stored.
    assert rows == [(hash_session_id(session_id), "bot")]
    stored = await server.sql("SELECT sender, response_id, text FROM messages WHERE id < :id ORDER BY id",
                              id=ack["message_id"])
    assert stored == [("system", "welcome", welcome["text"])]  # the welcome they were shown, first


async def test_a_session_never_written_to_resumes_and_is_written_on_its_first_message(server, connect):
    first = await connect(server)
    session_id = await first.session(None, language="sv")
    welcome = await first.next("bot_uttered")
    await first.close()

    # A reload before the first message: the same session, its welcome in the history.
    again = await connect(server)
    assert await again.session(session_id) == session_id
    assert (await again.next("handoff_state"))["state"] == "bot"
    await again.emit("history_request", {})
    history = await again.next("history")
    assert [(m["sender"], m["text"], m["message_id"]) for m in history["messages"]] == [
        ("system", welcome["text"], None)]
    await again.emit("resident_typing", {"typing": True})  # nobody to tell yet; no error either
    await again.emit("leave_queue", {})
    assert (await again.next("handoff_state"))["state"] == "bot"
    assert await server.count("conversations") == 0
    assert again.pending("error") == []

    ack = await again.ack(await again.say("hej"))
    assert await server.sql("SELECT session_hash, language FROM conversations") == [
        (hash_session_id(session_id), "sv")]
    # From now on it is an ordinary written session: another socket resumes it with its history.
    third = await connect(server)
    assert await third.session(session_id) == session_id
    await third.emit("history_request", {})
    senders = [(m["sender"], m["message_id"]) for m in (await third.next("history"))["messages"]]
    assert senders[0][0] == "system" and ("resident", ack["message_id"]) in senders


async def test_an_unwritten_session_expires_with_the_ttl_from_its_minting(server, connect):
    import time

    hours = server.settings.session_ttl_hours
    old = server.server.session_ids.mint(time.time() - hours * 3600 - 60, "fi")
    recent = server.server.session_ids.mint(time.time() - hours * 3600 + 60, "fi")
    client = await connect(server)
    assert await client.session(old) != old
    assert await client.session(recent) == recent


async def test_an_id_minted_under_another_key_is_not_resumed(server, connect):
    from chat_server.resident.sessions import SessionIds

    forged = SessionIds(b"not the installation's key 12345").mint()
    client = await connect(server)
    assert await client.session(forged) != forged
    await client.emit("user_uttered", {"message": "hei", "session_id": forged})
    await client.error("unknown_session")
    assert await server.count("conversations") == 0


async def test_session_request_without_payload_is_a_new_session(server, connect):
    client = await connect(server)
    await client.emit("session_request")
    assert SESSION_ID.fullmatch(await client.next("session_confirm"))


@pytest.mark.parametrize("asked", [mint_session_id(), "not-an-id", 12345, "", {"x": 1}])
async def test_unknown_or_malformed_id_gets_a_fresh_one(server, connect, asked):
    client = await connect(server)
    await client.emit("session_request", {"session_id": asked})
    confirmed = await client.next("session_confirm")
    assert SESSION_ID.fullmatch(confirmed) and confirmed != asked


async def test_known_id_resumes_with_state_and_history(server, resident, connect):
    client_id = await resident.say("Hei, mistä saan apua?")
    ack = await resident.ack(client_id)
    answer = await resident.next("bot_uttered")
    await resident.close()

    again = await connect(server)
    assert await again.session(resident.session_id) == resident.session_id
    state = await again.next("handoff_state")
    assert state == {"state": "bot", "position": None, "estimated_wait_secs": None,
                     "counsellor_name": None}
    assert again.pending("bot_uttered") == []  # no second welcome on resume
    await again.emit("history_request", {"session_id": resident.session_id})
    history = await again.next("history")
    assert history["session_id"] == resident.session_id
    assert history["handoff_state"]["state"] == "bot"
    senders = [(m["sender"], m["message_id"]) for m in history["messages"]]
    assert senders[0][0] == "system"  # the welcome
    assert ("resident", ack["message_id"]) in senders
    assert ("bot", answer["metadata"]["message_id"]) in senders
    mine = next(m for m in history["messages"] if m["sender"] == "resident")
    assert set(mine) == {"message_id", "sender", "text", "quick_replies", "time", "language", "client_id"}
    assert mine["client_id"] == client_id and mine["text"] == "Hei, mistä saan apua?"


async def test_expired_id_gets_a_fresh_session(server, resident, connect):
    await resident.ack(await resident.say("hei"))  # written: its expiry runs from its last message
    await server.sql("UPDATE conversations SET last_activity_at = :t",
                     t=__import__("datetime").datetime(2020, 1, 1))
    again = await connect(server)
    fresh = await again.session(resident.session_id)
    assert fresh != resident.session_id
    await resident.say("still there?")
    assert (await resident.error("unknown_session"))["client_id"]


async def test_message_is_stored_redacted_before_it_is_acked(server, resident):
    client_id = await resident.say("Numeroni on 040 1234567 ja posti maija@example.fi")
    ack = await resident.ack(client_id)
    assert ISO_TIME.fullmatch(ack["time"])
    # The ack arrived: the message is already in the database, redacted.
    rows = await server.sql("SELECT sender, text, client_id, intent FROM messages WHERE id = :id",
                            id=ack["message_id"])
    # (Rasa is closed here: unread, not "not understood", chat_server.store.conversations.NLU_UNAVAILABLE_INTENT.)
    assert rows == [("resident", "Numeroni on [PHONE] ja posti [EMAIL]", client_id, "nlu_unavailable")]
    dump = " ".join(str(r) for r in await server.sql("SELECT * FROM messages"))
    assert "1234567" not in dump and "maija@example.fi" not in dump


async def test_answer_has_rasa_shape_and_is_stored(server, resident):
    client_id = await resident.say("Tarvitsen apua vuokran kanssa")
    ack = await resident.ack(client_id)
    answer = await resident.next("bot_uttered")
    assert_rasa_bot_uttered(answer)
    assert answer["metadata"]["sender"] == "bot"
    assert answer["metadata"]["message_id"] > ack["message_id"]
    # Rasa is unreachable: the nlu_unavailable answer, which offers a counsellor.
    assert [qr["payload"] for qr in answer["quick_replies"]] == ["/request_counsellor"]
    rows = await server.sql("SELECT sender, text, response_id FROM messages WHERE id = :id",
                            id=answer["metadata"]["message_id"])
    assert rows == [("bot", answer["text"], "nlu_unavailable")]


async def test_a_quick_answer_comes_without_a_typing_indicator(resident):
    await resident.ack(await resident.say("moi"))
    await resident.next("bot_uttered")  # Rasa refuses at once: the answer is quick
    await asyncio.sleep(resident_service.BOT_TYPING_DELAY_SECS + 0.2)
    assert resident.pending("typing") == []


async def test_a_slow_answer_is_wrapped_in_the_typing_indicator(launch, sqlite_settings, connect):
    # A "Rasa" that accepts connections and never answers: the bot waits for its timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        server = await launch(sqlite_settings, bot=OWN_BOT, POLKU_RASA_TIMEOUT_SECS=1.0,
                              POLKU_RASA_URL=f"http://127.0.0.1:{silent.getsockname()[1]}")
        slow = await connect(server)
        await slow.session()
        await slow.next("bot_uttered")  # the welcome
        await slow.ack(await slow.say("Tarvitsen apua vuokran kanssa"))
        assert await slow.next("typing") == {"sender": "bot", "typing": True}
        answer = await slow.next("bot_uttered")
        assert answer["metadata"]["sender"] == "bot"
        assert await slow.next("typing") == {"sender": "bot", "typing": False}
        events = [name for name, _ in slow.received if name in ("typing", "bot_uttered")]
        assert events[-3:] == ["typing", "bot_uttered", "typing"]
    finally:
        silent.close()


class _GatedBot:
    """The real bot, except that its answers wait for the test's go."""

    def __init__(self, bot) -> None:
        self._bot = bot
        self.thinking = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str):
        return getattr(self._bot, name)

    async def handle(self, *args, **kwargs):
        self.thinking.set()
        await self.go.wait()
        return await self._bot.handle(*args, **kwargs)


async def test_a_chat_queued_while_the_bot_thinks_gets_no_bot_answer(launch, backend_settings, real_bot, connect):
    # The state read before the answer is stale by the time it is stored: the
    # write sees the new state under its lock and stores the message for the
    # counsellor instead.
    bot = _GatedBot(real_bot)
    server = await launch(backend_settings, bot=bot)
    resident = await connect(server)
    await resident.session()
    await resident.next("bot_uttered")  # the welcome
    bot.go.set()
    await resident.ack(await resident.say("moi"))  # written with its first message
    await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "bot")
    bot.go.clear()
    bot.thinking.clear()
    client_id = await resident.say("Tarvitsen apua vuokran kanssa")
    await asyncio.wait_for(bot.thinking.wait(), 10)
    [(conversation_id,)] = await server.sql("SELECT id FROM conversations")
    async with server.server.store.transaction() as tx:
        conversation = await server.server.conversations.lock(tx, conversation_id)
        conversation.handoff_state = "queued"
    bot.go.set()
    ack = await resident.ack(client_id)
    rows = await server.sql("SELECT id, sender, intent FROM messages WHERE conversation_id = :c ORDER BY id",
                            c=conversation_id)
    assert rows[-1] == (ack["message_id"], "resident", None)
    # the welcome, the first message and its answer, then the message: no answer
    assert [sender for _, sender, _ in rows] == ["system", "resident", "bot", "resident"]
    await asyncio.sleep(0.3)
    assert [p for _, p in resident.pending("bot_uttered") if p["metadata"]["sender"] == "bot"] == []


async def test_resent_client_id_is_acked_again_not_stored_or_answered_twice(server, resident, connect):
    client_id = str(uuid.uuid4())
    await resident.say("Tarvitsen apua", client_id=client_id)
    first = await resident.ack(client_id)
    await resident.say("Tarvitsen apua", client_id=client_id)
    second = await resident.ack(client_id)
    assert second["message_id"] == first["message_id"]
    # After a reconnect too, from another socket of the session.
    await resident.close()
    again = await connect(server)
    await again.session(resident.session_id)
    await again.say("Tarvitsen apua", client_id=client_id)
    assert (await again.ack(client_id))["message_id"] == first["message_id"]
    await again.settle()
    assert await server.sql("SELECT count(*) FROM messages WHERE sender = 'resident'") == [(1,)]
    assert await server.sql("SELECT count(*) FROM messages WHERE sender = 'bot'") == [(1,)]
    assert again.pending("bot_uttered") == []


async def test_rasa_webchat_payload_without_extensions(server, connect):
    """rasa-webchat sends no client_id and puts its language in customData."""
    client = await connect(server, transports=("polling", "websocket"))
    session_id = await client.session(None)
    await client.next("bot_uttered")
    await client.emit("user_uttered", {"message": "/request_counsellor", "customData": {"language": "en"},
                                       "session_id": session_id})
    ack = await client.next("message_ack")
    assert ack["client_id"] is None
    answer = await client.next("bot_uttered")
    assert_rasa_bot_uttered(answer)
    assert answer["metadata"]["language"] == "en"


async def test_every_socket_of_a_conversation_gets_its_answers(server, resident, connect):
    other_tab = await connect(server)
    await other_tab.session(resident.session_id)
    await resident.ack(await resident.say("moi"))
    mine = await resident.next("bot_uttered")
    theirs = await other_tab.next("bot_uttered")
    assert mine == theirs


async def test_user_uttered_binds_a_socket_that_skipped_session_request(server, resident, connect):
    other = await connect(server)
    client_id = await other.say("moi", session_id=resident.session_id)
    await other.ack(client_id)
    assert (await other.next("bot_uttered"))["metadata"]["sender"] == "bot"


async def test_resident_typing_is_accepted_silently(resident):
    await resident.emit("resident_typing", {"session_id": resident.session_id, "typing": True})
    await resident.settle()
    assert resident.pending("error") == []


async def test_many_residents_at_once_each_answered_in_order(server, connect):
    clients = list(await asyncio.gather(*(connect(server) for _ in range(8))))
    await asyncio.gather(*(c.session() for c in clients))

    async def chat(client):
        sent = [await client.say(f"viesti {n}") for n in range(3)]  # without waiting in between
        acks = [await client.ack(client_id) for client_id in sent]
        answers = [await client.next("bot_uttered", lambda p: p["metadata"]["sender"] == "bot")
                   for _ in sent]
        return acks, answers

    for acks, answers in await asyncio.gather(*(chat(c) for c in clients)):
        ids = [a["message_id"] for a in acks]
        assert ids == sorted(ids)  # stored in the order sent
        assert all(ans["metadata"]["message_id"] > ids[i] for i, ans in enumerate(answers))
    assert await server.sql("SELECT count(*) FROM messages WHERE sender = 'resident'") == [(24,)]
