"""Flood limits that leave real residents alone (issue 13): open sockets and queued
conversations per address (shared by every process through Redis), the rate of
resident_typing, and queue updates that go only where something changed.

Over real sockets against real servers; the "postgres" variants run two server
processes on PostgreSQL and one Redis (the test's own key prefix), so a limit
counted on one process holds on the other."""

from __future__ import annotations

import asyncio

import pytest
import socketio

from chat_server.counsellor import service as counsellor_service
from chat_server import handoff as hs

from .counsellor_helpers import (
    StaffBrowser, conversation_id_of, create_staff, queued_resident, skip_pending,
)
from .helpers import ResidentClient

CRISIS_TEXT = "mulla on halu kuolla"  # answered as crisis by the lexicon (tests/server/test_handoff.py)


@pytest.fixture(params=["one process", "two processes"])
async def two_servers(request, launch, sqlite_settings):
    """(a, b): the same server twice on SQLite, or two processes sharing PostgreSQL + Redis."""
    async def pair(**overrides):
        if request.param == "one process":
            server = await launch(sqlite_settings, **overrides)
            return server, server
        settings = request.getfixturevalue("postgres_settings")
        return await launch(settings, **overrides), await launch(settings, **overrides)
    return pair


async def refused_connect(url: str, **kwargs) -> dict:
    """Connect a resident socket that the server must refuse; the connect_error's data."""
    client = ResidentClient(url, headers=kwargs.pop("headers", None))
    errors: list = []
    client.sio.on("connect_error", lambda data=None: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(url, headers=client.headers, transports=["websocket"], wait_timeout=5, **kwargs)
    await client.close()
    assert errors, "refused without a connect_error"
    return errors[0]


# --- open sockets per address ------------------------------------------------------------


async def test_sockets_per_address_are_limited_with_a_clear_error(two_servers, connect):
    a, b = await two_servers(POLKU_SOCKETS_PER_ADDRESS=2)
    first = await connect(a)
    await connect(b)
    error = await refused_connect(a.url, headers={"Accept-Language": "sv-FI,sv;q=0.9,en;q=0.5"})
    assert error["message"] == "too_many_connections"
    assert error["data"]["code"] == "too_many_connections"
    assert "nätverk" in error["data"]["message"] and "112" in error["data"]["message"]
    # The widget's own language (Socket.IO auth) wins over the browser's.
    error = await refused_connect(b.url, headers={"Accept-Language": "sv"}, auth={"language": "en"})
    assert "network" in error["data"]["message"]
    # A closed socket frees its place, on whichever process it was.
    await first.close()
    for _ in range(50):
        try:
            again = await connect(b)
            break
        except socketio.exceptions.ConnectionError:
            await asyncio.sleep(0.1)  # the disconnect is handled on the server shortly after
    else:
        raise AssertionError("a closed socket did not free its place")
    assert await again.session()


async def test_socket_limit_counts_the_forwarded_address_behind_a_trusted_proxy(launch, sqlite_settings, connect):
    server = await launch(sqlite_settings, POLKU_SOCKETS_PER_ADDRESS=1, POLKU_TRUSTED_PROXIES=["127.0.0.1"])
    await connect(server, headers={"X-Forwarded-For": "198.51.100.1"})
    await connect(server, headers={"X-Forwarded-For": "198.51.100.2"})  # another resident behind the proxy
    error = await refused_connect(server.url, headers={"X-Forwarded-For": "198.51.100.1"})
    assert error["data"]["code"] == "too_many_connections"
    assert "verkosta" in error["data"]["message"]  # POLKU_DEFAULT_LANGUAGE: Finnish


async def test_a_dead_process_does_not_hold_its_sockets_places(launch, postgres_settings, connect):
    a = await launch(postgres_settings, POLKU_SOCKETS_PER_ADDRESS=2)
    b = await launch(postgres_settings, POLKU_SOCKETS_PER_ADDRESS=2)
    await connect(b)
    await connect(b)
    assert (await refused_connect(a.url))["data"]["code"] == "too_many_connections"
    # b dies without closing its sockets: its heartbeat key is gone (as when it expires).
    counter = b.server.socket_counter
    await b.server.redis.delete(counter._alive_prefix + counter._process)
    counter._process = "dead-" + counter._process  # its sockets' release cannot give them back either
    assert await (await connect(a)).session()


# --- queued conversations per address ----------------------------------------------------


async def test_queued_conversations_per_address_are_limited_but_a_crisis_always_gets_in(two_servers, connect):
    a, b = await two_servers(POLKU_QUEUED_PER_ADDRESS=1)
    await a.server.presence.heartbeat("anna", "Anna")
    await queued_resident(connect, a)

    second = await connect(b)
    await second.session(None, language="en")
    await second.next("bot_uttered")
    said = "SELECT count(*) FROM messages WHERE sender IN ('resident', 'bot')"
    messages_before = await b.sql(said)
    client_id = await second.say("/request_counsellor")
    error = await second.error("queue_limited")
    assert error["client_id"] == client_id and "network" in error["message"]
    # Refused: nothing stored (but the session's welcome, written with its first message), not queued,
    # no answer.
    assert await b.sql(said) == messages_before
    assert second.pending("message_ack") == [] and second.pending("handoff_state") == []
    assert await b.sql("SELECT count(*) FROM conversations WHERE handoff_state = 'queued'") == [(1,)]

    # The same resident in crisis: the crisis answer and a place in the queue, ahead of the other.
    await second.ack(await second.say(CRISIS_TEXT))
    assert (await second.next("bot_uttered", lambda p: p["metadata"]["sender"] == "bot"))["text"]
    state = await second.next("handoff_state")
    assert (state["state"], state["position"]) == ("queued", 1)
    assert await b.sql("SELECT priority FROM conversations WHERE handoff_state = 'queued' ORDER BY id") == [
        ("normal",), ("crisis",)]

    # A conversation that leaves the queue gives its place back.
    third = await connect(a)
    await third.session()
    await third.next("bot_uttered")
    await third.say("/request_counsellor")
    await third.error("queue_limited")
    await second.emit("leave_queue", {})
    await second.next("handoff_state", lambda p: p["state"] == "bot")
    first_cid = (await a.sql("SELECT id FROM conversations WHERE priority = 'normal' AND handoff_state = 'queued'"))
    assert first_cid
    await third.say("/request_counsellor")
    await third.error("queue_limited")  # the first one still waits: 1 of 1


async def test_the_queue_limit_is_per_address(launch, sqlite_settings, connect):
    server = await launch(sqlite_settings, POLKU_QUEUED_PER_ADDRESS=1, POLKU_TRUSTED_PROXIES=["127.0.0.1"])
    await server.server.presence.heartbeat("anna", "Anna")
    await queued_resident(connect, server)  # 127.0.0.1 itself
    other = await connect(server, headers={"X-Forwarded-For": "198.51.100.7"})
    await other.session()
    await other.next("bot_uttered")
    await other.ack(await other.say("/request_counsellor"))
    assert (await other.next("handoff_state"))["state"] == "queued"


# --- resident_typing ---------------------------------------------------------------------


async def test_typing_floods_are_coalesced_without_errors(launch, sqlite_settings, connect):
    server = await launch(sqlite_settings)
    await create_staff(server, "anna")
    browser = StaffBrowser(server)
    try:
        await browser.sign_in("anna")
        console = await browser.open_console()
        await console.ok("hello")
        resident = await queued_resident(connect, server)
        cid = await conversation_id_of(server, resident)
        await console.ok("open", {"conversation_id": cid})
        skip_pending(console)
        skip_pending(resident)

        for i in range(200):
            await resident.emit("resident_typing", {"session_id": resident.session_id, "typing": i % 2 == 0})
        await resident.emit("resident_typing", {"session_id": resident.session_id, "typing": False})
        for _ in range(50):  # invalid ones within the interval: dropped, not answered one by one
            await resident.emit("resident_typing", {"typing": "yes"})
        await asyncio.sleep(1.5)
        typing = [p for e, p in console.pending() if e == "resident_typing"]
        # The first at once, then the latest value when the interval ended: 2, not 251.
        assert 1 <= len(typing) <= 3, typing
        assert typing[0] == {"conversation_id": cid, "typing": True}
        assert typing[-1] == {"conversation_id": cid, "typing": False}
        assert resident.pending("error") == []

        # Once the interval after the last one sent is over, typing is checked (and answered) again.
        await asyncio.sleep(1.2)
        await resident.emit("resident_typing", {"typing": "yes"})
        await resident.error("malformed_payload")
        await asyncio.sleep(1.2)
        await resident.emit("resident_typing", {"session_id": resident.session_id, "typing": True})
        assert (await console.next("resident_typing"))["typing"] is True
    finally:
        await browser.close()


# --- queue updates -----------------------------------------------------------------------


async def test_queue_updates_go_only_where_something_changed(two_servers, connect, monkeypatch):
    monkeypatch.setattr(counsellor_service, "QUEUE_LISTED_MAX", 3)
    a, b = await two_servers(POLKU_QUEUED_PER_ADDRESS=100)  # every resident here is 127.0.0.1
    await create_staff(a, "anna")
    browser = StaffBrowser(a)
    try:
        await browser.sign_in("anna")
        console = await browser.open_console()
        waiting = [await queued_resident(connect, (a, b)[i % 2]) for i in range(5)]
        await asyncio.sleep(hs.QUEUE_UPDATE_DELAY_SECS * 3)
        for resident in waiting:
            skip_pending(resident)
        skip_pending(console)

        # One more joins at the end: nobody else's place changed, so nobody else hears of it;
        # the consoles' list of the front (3) is the same, only the total grows.
        newest = await queued_resident(connect, b)
        await asyncio.sleep(hs.QUEUE_UPDATE_DELAY_SECS * 3)
        assert all(r.pending("handoff_state") == [] for r in waiting)
        snapshot = await console.next("queue")
        assert len(snapshot["conversations"]) == 3 and snapshot["total"] == 6 and snapshot["crisis_total"] == 0
        assert [c["position"] for c in snapshot["conversations"]] == [1, 2, 3]

        # The front is picked up: everyone behind it moves up, each told once.
        front = snapshot["conversations"][0]["conversation_id"]
        await console.ok("pick_up", {"conversation_id": front})
        await waiting[0].next("handoff_state", lambda p: p["state"] == "counsellor")
        for place, resident in enumerate(waiting[1:] + [newest], start=1):
            state = await resident.next("handoff_state")
            assert (state["state"], state["position"]) == ("queued", place)
        await asyncio.sleep(hs.QUEUE_UPDATE_DELAY_SECS * 3)
        assert all(r.pending("handoff_state") == [] for r in waiting[1:] + [newest])
        assert (await console.next("queue", lambda p: p["total"] == 5))["conversations"][0]["position"] == 1
        # A console's hello lists the front too.
        hello = await console.ok("hello")
        assert len(hello["queue"]["conversations"]) == 3 and hello["queue"]["total"] == 5
    finally:
        await browser.close()
