"""Refused input: each gets one `error` event in the resident's language and
changes nothing."""

from __future__ import annotations

import pytest

from chat_server.resident.protocol import ERROR_TEXTS
from chat_server.resident.sessions import mint_session_id



async def snapshot(server) -> tuple:
    return tuple([await server.count(t) for t in ("conversations", "messages", "handoff_transitions")]
                 + [await server.sql("SELECT handoff_state, dialogue_state FROM conversations ORDER BY id")])


def assert_error(payload: dict, code: str, language: str = "fi") -> None:
    assert set(payload) == {"code", "message", "client_id"}
    assert payload["code"] == code
    assert isinstance(payload["message"], str) and payload["message"]
    if language != "fi":
        assert payload["message"] != ERROR_TEXTS[code]["fi"]


async def test_oversized_message_is_refused_and_nothing_stored(server, resident):
    before = await snapshot(server)
    limit = server.settings.max_message_chars
    client_id = await resident.say("a" * (limit + 1))
    error = await resident.error()
    assert_error(error, "message_too_long")
    assert error["client_id"] == client_id
    assert await snapshot(server) == before
    # Exactly at the limit is fine.
    await resident.ack(await resident.say("a" * limit))


@pytest.mark.parametrize("payload", [
    "just a string",
    ["a", "list"],
    {"session_id": None},                                 # no message
    {"message": 42},                                      # not a string
    {"message": ""},                                      # empty
    {"message": "   \n "},                                # blank
    {"message": "hi\x00"},                                # NUL cannot be stored
    {"message": "hi", "customData": "fi"},                # customData not an object
    {"message": "hi", "customData": {"client_id": 7}},     # client_id not a string
    {"message": "hi", "customData": {"client_id": "x" * 65}},
    {"message": "hi", "session_id": 99},                  # session_id not a string
])
async def test_malformed_user_uttered(server, resident, payload):
    if isinstance(payload, dict) and "session_id" not in payload:
        payload = {**payload, "session_id": resident.session_id}
    before = await snapshot(server)
    await resident.emit("user_uttered", payload)
    assert_error(await resident.error(), "malformed_payload")
    assert await snapshot(server) == before


async def test_missing_payload_and_extra_arguments_are_malformed(resident):
    await resident.emit("user_uttered")
    assert_error(await resident.error(), "malformed_payload")
    await resident.emit("user_uttered", {"message": "hi", "session_id": resident.session_id}, "extra")
    assert_error(await resident.error(), "malformed_payload")
    await resident.emit("resident_typing", {"typing": "yes"})
    assert_error(await resident.error(), "malformed_payload")
    await resident.emit("history_request", "nope")
    assert_error(await resident.error(), "malformed_payload")


async def test_unknown_session(server, connect):
    client = await connect(server)
    before = await snapshot(server)
    # Before any session_request, without and with an id we never minted.
    await client.emit("user_uttered", {"message": "hei"})
    assert_error(await client.error(), "unknown_session")
    client_id = await client.say("hei", session_id=mint_session_id())
    assert (await client.error("unknown_session"))["client_id"] == client_id
    await client.say("hei", session_id="forged")
    await client.error("unknown_session")
    await client.emit("history_request", {"session_id": mint_session_id()})
    await client.error("unknown_session")
    await client.emit("leave_queue", {})
    await client.error("unknown_session")
    await client.emit("resident_typing", {"typing": True})
    await client.error("unknown_session")
    assert await snapshot(server) == before


async def test_unknown_event(server, resident):
    before = await snapshot(server)
    await resident.emit("hack_the_planet", {"x": 1})
    assert_error(await resident.error(), "unknown_event")
    await resident.emit("no_payload_event")
    assert_error(await resident.error(), "unknown_event")
    assert await snapshot(server) == before


async def test_errors_speak_the_residents_language(server, connect):
    client = await connect(server)
    await client.session(None, language="sv")
    await client.emit("user_uttered", {"message": "x" * (server.settings.max_message_chars + 1),
                                       "session_id": client.session_id})
    error = await client.error("message_too_long")
    assert "meddelande" in error["message"]
    await client.emit("user_uttered", {"message": "", "session_id": client.session_id,
                                       "customData": {"language": "en"}})
    assert "message" in (await client.error("malformed_payload"))["message"]


async def test_session_rate_limit(launch, backend_settings, connect):
    server = await launch(backend_settings, POLKU_RATE_SESSION_PER_MIN=3)
    client = await connect(server)
    await client.session()
    for _ in range(3):
        await client.ack(await client.say("moi"))
    before = await snapshot(server)
    client_id = await client.say("moi")
    error = await client.error("rate_limited")
    assert error["client_id"] == client_id
    assert await snapshot(server) == before
    # Another conversation is not limited by this one's count.
    other = await connect(server)
    await other.session()
    await other.ack(await other.say("moi"))


async def test_address_rate_limit_spans_conversations(launch, backend_settings, connect):
    # Counts session requests and messages: 1 + 2 + 1 = 4.
    server = await launch(backend_settings, POLKU_RATE_ADDRESS_PER_MIN=4)
    first = await connect(server)
    await first.session()
    await first.ack(await first.say("moi"))
    await first.ack(await first.say("moi"))
    second = await connect(server)
    await second.session()
    await second.say("moi")
    await second.error("rate_limited")
    third = await connect(server)
    await third.emit("session_request", {"session_id": None})
    await third.error("rate_limited")
    assert third.pending("session_confirm") == []
    # Only the first was written: a conversation is written with its first message, and the
    # second's was refused.
    assert await server.count("conversations") == 1


async def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(launch, sqlite_settings, connect):
    untrusted = await launch(sqlite_settings, POLKU_RATE_ADDRESS_PER_MIN=1)
    a = await connect(untrusted, headers={"X-Forwarded-For": "198.51.100.1"})
    await a.session()
    b = await connect(untrusted, headers={"X-Forwarded-For": "198.51.100.2"})
    await b.emit("session_request", {"session_id": None})
    await b.error("rate_limited")  # same real address: the header does not split it

    trusted = await launch(sqlite_settings, POLKU_RATE_ADDRESS_PER_MIN=1,
                           POLKU_TRUSTED_PROXIES=["127.0.0.1"])
    c = await connect(trusted, headers={"X-Forwarded-For": "198.51.100.1"})
    await c.session()
    d = await connect(trusted, headers={"X-Forwarded-For": "198.51.100.2"})
    await d.session()  # another resident behind the proxy
    e = await connect(trusted, headers={"X-Forwarded-For": "198.51.100.1"})
    await e.emit("session_request", {"session_id": None})
    await e.error("rate_limited")


async def test_bot_failure_is_server_busy_and_nothing_stored(launch, backend_settings, connect):
    from .helpers import FakeBot

    bot = FakeBot()
    server = await launch(backend_settings, bot=bot)
    client = await connect(server)
    await client.session()
    before = await snapshot(server)
    bot.fail = True
    client_id = await client.say("moi")
    error = await client.error("server_busy")
    assert error["client_id"] == client_id
    assert await snapshot(server) == before
    bot.fail = False
    await client.ack(await client.say("moi"))
