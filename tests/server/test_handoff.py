"""The handoff state machine: its rules on their own, its one transition
function against a real database, and the handoff as the resident sees it."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta, timezone

import pytest

from chat_server import handoff as hs
from chat_server.errors import IllegalTransition
from chat_server.events import HandoffView
from chat_server.queue import MemoryQueue
from chat_server.queue_redis import RedisQueue
from chat_server.redis_backend import create_redis
from chat_server.resident.sessions import hash_session_id, mint_session_id

from .helpers import OWN_BOT, FakeBot


LEGAL = {
    (hs.BOT, hs.QUEUED, "bot"), (hs.BOT, hs.QUEUED, "resident"), (hs.BOT, hs.QUEUED, "system"),
    (hs.QUEUED, hs.COUNSELLOR, "counsellor:anna"),
    (hs.QUEUED, hs.BOT, "resident"), (hs.QUEUED, hs.BOT, "system"),
    (hs.QUEUED, hs.CLOSED, "counsellor:anna"), (hs.QUEUED, hs.CLOSED, "system"),
    (hs.COUNSELLOR, hs.QUEUED, "counsellor:anna"), (hs.COUNSELLOR, hs.QUEUED, "system"),
    (hs.COUNSELLOR, hs.CLOSED, "counsellor:anna"), (hs.COUNSELLOR, hs.CLOSED, "system"),
    (hs.CLOSED, hs.BOT, "resident"), (hs.CLOSED, hs.BOT, "system"),
}
ACTORS = ("resident", "bot", "system", "counsellor:anna")


def test_check_move_allows_exactly_the_documented_moves():
    for from_state, to_state, actor in itertools.product(hs.STATES, hs.STATES, ACTORS):
        if (from_state, to_state, actor) in LEGAL:
            hs.check_move(from_state, to_state, actor)
        else:
            with pytest.raises(IllegalTransition):
                hs.check_move(from_state, to_state, actor)


@pytest.mark.parametrize("actor", ["", "counsellor", "counsellor:", "admin", "counsellor:a b", None])
def test_actor_must_be_named(actor):
    with pytest.raises(ValueError):
        hs.check_move(hs.QUEUED, hs.COUNSELLOR, actor)


async def _conversation(server, tx):
    return await server.conversations.create(tx, hash_session_id(mint_session_id()), "fi")


async def test_transition_records_actor_and_time_and_rejects_illegal_moves(launch, backend_settings):
    running = await launch(backend_settings, bot=FakeBot())
    srv = running.server
    async with srv.store.transaction() as tx:
        conversation = await _conversation(srv, tx)
    cid = conversation.id

    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    async with srv.store.transaction() as tx:
        conv = await srv.conversations.lock(tx, cid)
        view = await srv.handoff.transition(tx, conv, hs.QUEUED, actor="bot", reason="crisis",
                                            priority="crisis", topic="housing_problem")
    assert view == HandoffView(hs.UNAVAILABLE, position=1)  # nobody online
    assert await srv.queue.position(cid) == 1

    with pytest.raises(IllegalTransition):
        async with srv.store.transaction() as tx:
            conv = await srv.conversations.lock(tx, cid)
            await srv.handoff.transition(tx, conv, hs.CLOSED, actor="resident")
    async with srv.store.transaction() as tx:
        conv = await srv.conversations.lock(tx, cid)
        await srv.handoff.transition(tx, conv, hs.COUNSELLOR, actor="counsellor:anna")
    async with srv.store.transaction() as tx:
        conv = await srv.conversations.lock(tx, cid)
        await srv.handoff.transition(tx, conv, hs.CLOSED, actor="counsellor:anna", reason="done")

    rows = await srv.conversations.transitions(cid)
    assert [(r.from_state, r.to_state, r.actor, r.reason) for r in rows] == [
        ("bot", "queued", "bot", "crisis"),
        ("queued", "counsellor", "counsellor:anna", None),
        ("counsellor", "closed", "counsellor:anna", "done"),
    ]
    assert all(before <= r.at <= datetime.now(timezone.utc) for r in rows)
    final = await srv.conversations.get(cid)
    assert final.handoff_state == hs.CLOSED and final.counsellor_id is None
    assert await srv.queue.position(cid) is None
    # Each move told the resident: unavailable (crisis), joined, closed.
    notices = await running.sql("SELECT response_id FROM messages WHERE sender = 'system' ORDER BY id")
    assert notices == [("handoff_crisis_unavailable",), ("handoff_joined",), ("handoff_closed",)]


async def test_failed_commit_undoes_the_queue(launch, backend_settings):
    running = await launch(backend_settings, bot=FakeBot())
    srv = running.server
    async with srv.store.transaction() as tx:
        cid = (await _conversation(srv, tx)).id
    with pytest.raises(RuntimeError):
        async with srv.store.transaction() as tx:
            conv = await srv.conversations.lock(tx, cid)
            await srv.handoff.transition(tx, conv, hs.QUEUED, actor="bot")
            raise RuntimeError("the commit fails")
    assert await srv.queue.position(cid) is None
    assert (await srv.conversations.get(cid)).handoff_state == hs.BOT
    assert await srv.conversations.transitions(cid) == []


async def test_handoff_when_nobody_is_online(server, resident):
    """Chat hours (always open here), nobody online: one honest message; the resident
    chooses to wait in the queue, and the bot keeps answering meanwhile."""
    client_id = await resident.say("/request_counsellor")
    await resident.ack(client_id)
    answer = await resident.next("bot_uttered")
    assert answer["metadata"]["sender"] == "bot"
    assert [qr["payload"] for qr in answer["quick_replies"]] == ["/join_queue", "/callback_request"]
    await resident.settle()
    assert resident.pending("bot_uttered") == [] and resident.pending("handoff_state") == []  # one message
    assert await server.sql("SELECT handoff_state FROM conversations") == [("bot",)]
    assert await server.sql("SELECT response_id FROM messages WHERE sender = 'bot'") == [("counsellors_expected",)]

    await resident.ack(await resident.say("/join_queue"))
    state = await resident.next("handoff_state")
    assert state == {"state": "unavailable", "position": 1, "estimated_wait_secs": None,
                     "counsellor_name": None}
    notice = await resident.next("bot_uttered")
    assert notice["metadata"]["sender"] == "system"
    assert [qr["payload"] for qr in notice["quick_replies"]] == ["/callback_request"]
    rows = await server.sql("SELECT handoff_state, priority, handoff_reason FROM conversations")
    assert rows == [("queued", "normal", "requested")]
    assert await server.sql("SELECT from_state, to_state, actor FROM handoff_transitions") == [
        ("bot", "queued", "bot")]
    assert await server.sql("SELECT response_id FROM messages ORDER BY id DESC LIMIT 1") == [
        ("handoff_queued_waiting",)]

    # While queued with nobody online: stored for the counsellor, and the bot answers.
    await resident.ack(await resident.say("onko ketään?"))
    assert (await resident.next("bot_uttered"))["metadata"]["sender"] == "bot"
    assert await server.sql("SELECT handoff_state FROM conversations") == [("queued",)]
    # Asking for a person again: told it is already queued, not queued twice.
    await resident.ack(await resident.say("/request_counsellor"))
    again = await resident.next("bot_uttered")
    assert await server.sql("SELECT response_id FROM messages ORDER BY id DESC LIMIT 1") == [
        ("handoff_still_queued",)]
    assert again["metadata"]["sender"] == "bot"

    # Leaving the queue: back to the bot, which answers again.
    await resident.emit("leave_queue", {"session_id": resident.session_id})
    assert (await resident.next("handoff_state"))["state"] == "bot"
    left = await resident.next("bot_uttered")
    assert left["metadata"]["sender"] == "system"
    assert await server.sql("SELECT response_id FROM messages ORDER BY id DESC LIMIT 1") == [
        ("handoff_left_queue",)]
    await resident.ack(await resident.say("moi"))
    assert (await resident.next("bot_uttered"))["metadata"]["sender"] == "bot"
    # Leaving again changes nothing, and says where the conversation is.
    await resident.emit("leave_queue", {})
    assert (await resident.next("handoff_state"))["state"] == "bot"
    assert await server.count("handoff_transitions") == 2


async def test_outside_chat_hours_a_request_is_one_message_and_never_queued(server, resident):
    server.server.handoff.is_open = lambda: False
    server.server.handoff.expected_soon = lambda: False
    await server.server.presence.heartbeat("anna", "Anna")  # online, but the chat is closed
    for text in ("/request_counsellor", "/join_queue"):
        await resident.ack(await resident.say(text))
        answer = await resident.next("bot_uttered")
        assert answer["metadata"]["sender"] == "bot"
        assert [qr["payload"] for qr in answer["quick_replies"]] == ["/callback_request", "/polku_contact"]
        assert "112" in answer["text"] and "[" not in answer["text"]
        await resident.settle()
        assert resident.pending("bot_uttered") == [] and resident.pending("handoff_state") == []
    assert await server.sql("SELECT handoff_state FROM conversations") == [("bot",)]
    assert await server.count("handoff_transitions") == 0
    # The bot goes on answering.
    await resident.ack(await resident.say("moi"))
    assert (await resident.next("bot_uttered"))["metadata"]["sender"] == "bot"


async def test_handoff_with_a_counsellor_online_tells_position_and_wait(server, resident):
    await server.server.presence.heartbeat("anna", "Anna")
    await resident.ack(await resident.say("/request_counsellor"))
    state = await resident.next("handoff_state")
    wait = int(server.settings.queue_secs_per_conversation)
    assert state == {"state": "queued", "position": 1, "estimated_wait_secs": wait,
                     "counsellor_name": None}
    notice = await resident.next("bot_uttered")
    assert re.search(r"\b1\b", notice["text"]) and f"{wait // 60} min" in notice["text"]
    assert await server.sql("SELECT response_id FROM messages WHERE sender = 'system' "
                            "ORDER BY id DESC LIMIT 1") == [("handoff_queued",)]
    # One message: the notice with the place and wait, no "just a moment" from the bot before it.
    assert await server.sql("SELECT count(*) FROM messages WHERE sender = 'bot'") == [(0,)]


async def test_crisis_goes_to_the_front_of_the_queue(server, connect):
    await server.server.presence.heartbeat("anna", "Anna")
    first = await connect(server)
    await first.session()
    await first.ack(await first.say("/request_counsellor"))
    assert (await first.next("handoff_state"))["position"] == 1

    second = await connect(server)
    await second.session()
    await second.ack(await second.say("mulla on halu kuolla"))
    crisis_answer = await second.next("bot_uttered", lambda p: p["metadata"]["sender"] == "bot")
    assert crisis_answer["text"]
    assert (await second.next("handoff_state"))["position"] == 1
    rows = await server.sql("SELECT priority FROM conversations WHERE handoff_state = 'queued' ORDER BY id")
    assert rows == [("normal",), ("crisis",)]
    # The first resident is now second; a resume shows it.
    await first.emit("history_request", {})
    assert (await first.next("history"))["handoff_state"]["position"] == 2


async def test_resume_while_queued_shows_the_queue_state(server, resident, connect):
    await resident.ack(await resident.say("/join_queue"))
    await resident.next("handoff_state")
    again = await connect(server)
    await again.session(resident.session_id)
    assert (await again.next("handoff_state"))["state"] == "unavailable"


async def test_queue_restored_from_the_database_at_startup(launch, backend_settings, connect):
    first = await launch(backend_settings)
    client = await connect(first)
    await client.session()
    await client.ack(await client.say("/join_queue"))
    await client.next("handoff_state")
    await client.close()
    await first.server.queue.remove(1)  # as if the in-memory queue died with its process
    second = await launch(backend_settings, bot=OWN_BOT)
    assert await second.server.queue.conversation_ids() == [1]


@pytest.fixture(params=["memory", "redis"])
async def queue(request):
    if request.param == "memory":
        yield MemoryQueue()
        return
    redis = create_redis(request.getfixturevalue("redis_url"))
    yield RedisQueue(redis, request.getfixturevalue("redis_prefix"))
    await redis.aclose()


async def test_queue_order_is_crisis_first_then_fifo(queue):
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
    await queue.add(1, "normal", t0)
    await queue.add(2, "normal", t0 + timedelta(seconds=1))
    await queue.add(3, "crisis", t0 + timedelta(seconds=2))
    await queue.add(4, "crisis", t0 + timedelta(seconds=3))
    await queue.add(1, "normal", t0 + timedelta(hours=1))  # adding again keeps the place
    assert await queue.conversation_ids() == [3, 4, 1, 2]
    assert [await queue.position(c) for c in (3, 4, 1, 2, 99)] == [1, 2, 3, 4, None]
    await queue.remove(3)
    assert await queue.position(4) == 1
    await queue.restore([(5, "normal", t0 - timedelta(seconds=1)), (4, "crisis", t0)])
    assert await queue.conversation_ids() == [4, 5, 1, 2]
