"""Never silent (issue 15 item 1): whatever handoff state a conversation is in,
a resident's message gets an answer or a clear status within a few seconds,
over real Socket.IO, on both backends. The walk makes every move of the
handoff table (chat_server/handoff.py MOVES)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from chat_server import handoff as hs

from .counsellor_helpers import StaffBrowser, conversation_id_of, create_staff, skip_pending

ANSWER_WITHIN_SECS = 3.0
REPLY_EVENTS = ("bot_uttered", "handoff_state")


async def answered(resident, text: str, *, want: str | None = None,
                   within: float = ANSWER_WITHIN_SECS) -> tuple[str, dict, float]:
    """Say ``text``; the first answer (bot_uttered) or status (handoff_state) after its ack,
    and how long it took. Fails when none comes within ``within`` seconds."""
    skip_pending(resident)
    start = len(resident.received)
    began = time.monotonic()
    await resident.ack(await resident.say(text), timeout=within)
    while time.monotonic() - began < within:
        for name, payload in resident.received[start:]:
            if name in REPLY_EVENTS and (want is None or name == want):
                return name, payload, time.monotonic() - began
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r}: no answer or status within {within}s; "
                         f"got {resident.received[start:]!r}")


async def last_response_id(server, cid: int) -> str:
    rows = await server.sql("SELECT response_id FROM messages WHERE conversation_id = :c AND sender != 'resident' "
                            "ORDER BY id DESC LIMIT 1", c=cid)
    return rows[0][0]


async def state_of(server, cid: int) -> tuple[str, str]:
    rows = await server.sql("SELECT handoff_state, priority FROM conversations WHERE id = :c", c=cid)
    return rows[0]


async def test_every_handoff_state_answers_a_resident_message(server, connect, staff):
    srv = server.server
    timings: list[float] = []

    async def check(resident, text, *, want=None):
        name, payload, took = await answered(resident, text, want=want)
        timings.append(took)
        return name, payload

    resident = await connect(server)
    await resident.session()
    await resident.next("bot_uttered")

    # bot: the bot answers (the first message writes the conversation).
    name, payload = await check(resident, "moi")
    assert name == "bot_uttered" and payload["metadata"]["sender"] == "bot"
    cid = await conversation_id_of(server, resident)

    # Outside chat hours: a request for a person is one honest message; still with the bot.
    srv.handoff.is_open = lambda: False
    srv.handoff.expected_soon = lambda: False
    name, payload = await check(resident, "/request_counsellor")
    assert name == "bot_uttered" and await last_response_id(server, cid) == "counsellors_unavailable"
    assert await state_of(server, cid) == (hs.BOT, "normal")
    name, payload = await check(resident, "miten haen asumistukea")
    assert name == "bot_uttered" and payload["metadata"]["sender"] == "bot"

    # Chat hours, nobody online: the resident may wait in the queue (bot -> queued) ...
    srv.handoff.is_open = lambda: True
    srv.handoff.expected_soon = lambda: True
    await check(resident, "/request_counsellor")
    assert await last_response_id(server, cid) == "counsellors_expected"
    name, payload = await check(resident, "/join_queue")
    assert name == "handoff_state" and payload["state"] == "unavailable"
    # ... where the bot answers while nobody can pick it up.
    name, payload = await check(resident, "onko siellä ketään", want="bot_uttered")
    assert payload["metadata"]["sender"] == "bot"
    assert await state_of(server, cid) == (hs.QUEUED, "normal")

    # queued -> bot (the resident leaves).
    await resident.emit("leave_queue", {"session_id": resident.session_id})
    assert (await resident.next("handoff_state", lambda p: p["state"] == hs.BOT))["state"] == hs.BOT
    name, _ = await check(resident, "moi")
    assert name == "bot_uttered"

    # A counsellor signs in: queued with someone online -> a clear status (place and wait).
    anna = await staff(server, "anna")
    name, payload = await check(resident, "/request_counsellor")
    assert name == "handoff_state" and payload["state"] == hs.QUEUED
    name, payload = await check(resident, "oon jonossa")
    assert name == "handoff_state" and (payload["state"], payload["position"]) == (hs.QUEUED, 1)

    # queued -> counsellor: the status says who; the counsellor reads the message.
    await anna.ok("pick_up", {"conversation_id": cid})
    name, payload = await check(resident, "hei, tarviin apua vuokran kanssa", want="handoff_state")
    assert payload["state"] == hs.COUNSELLOR and payload["counsellor_name"]
    line = await anna.next("message", lambda p: p["message"]["sender"] == "resident"
                           and "vuokran" in p["message"]["text"])
    assert line["conversation_id"] == cid

    # counsellor -> queued (put back), then picked up again, then closed: the bot answers again.
    await anna.ok("put_back", {"conversation_id": cid})
    name, payload = await check(resident, "mitä nyt", want="handoff_state")
    assert payload["state"] == hs.QUEUED
    await anna.ok("pick_up", {"conversation_id": cid})
    skip_pending(resident)  # the notices so far: the wait below is for the closing one
    await anna.ok("close", {"conversation_id": cid, "tags": ["housing_problem"]})
    assert await state_of(server, cid) == (hs.CLOSED, "normal")
    # The closing notice reaches the resident after the counsellor's ack: wait for it, so that
    # it is not taken for the answer to the next message.
    await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    name, payload = await check(resident, "kiitos, vielä yks kysymys", want="bot_uttered")  # closed -> bot
    assert payload["metadata"]["sender"] == "bot"
    assert await state_of(server, cid) == (hs.BOT, "normal")

    # counsellor -> closed when the counsellor closes is covered; queued -> closed: a queued
    # resident silent too long is closed (system), and can write again.
    other = await connect(server)
    await other.session()
    await other.next("bot_uttered")
    await check(other, "/request_counsellor")
    other_id = await conversation_id_of(server, other)  # written with its first message
    srv.counsellor_sweeps.abandon_after = timedelta(microseconds=1)
    await server.sql("UPDATE conversations SET last_activity_at = last_activity_at - interval '1 hour' "
                     "WHERE id = :c", c=other_id) if server.server.engine.dialect.name == "postgresql" else \
        await server.sql("UPDATE conversations SET last_activity_at = datetime(last_activity_at, '-1 hour') "
                         "WHERE id = :c", c=other_id)
    skip_pending(other)  # what it got so far (its queue notice): the wait below is for the closing one
    await srv.counsellor_sweeps.sweep_abandoned()
    srv.counsellor_sweeps.abandon_after = timedelta(hours=4)
    assert await state_of(server, other_id) == (hs.CLOSED, "normal")
    # Its closing notice is on its way (sent after the sweep's commit): wait for it, so that it
    # is not taken for the answer to the next message.
    await other.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    name, payload = await check(other, "oonko vielä jonossa", want="bot_uttered")
    assert payload["metadata"]["sender"] == "bot"
    await check(resident, "/request_counsellor")

    # Every counsellor leaves: the queued resident is told and returned to the bot ...
    assert await state_of(server, cid) == (hs.QUEUED, "normal")
    skip_pending(resident)
    await anna.close()
    for _ in range(50):
        if await srv.presence.online_count() == 0:
            break
        await asyncio.sleep(0.05)
    assert await srv.counsellor_sweeps.sweep_unattended(now=time.monotonic()) == []  # not at once: they may come back
    moved = await srv.counsellor_sweeps.sweep_unattended(now=time.monotonic() + srv.counsellor_sweeps.nobody_back_secs + 1)
    assert moved == [cid]
    told = await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    assert "112" in told["text"] and await last_response_id(server, cid) == "handoff_no_counsellors"
    assert (await resident.next("handoff_state", lambda p: p["state"] == hs.BOT))["state"] == hs.BOT
    name, payload = await check(resident, "no mitä nyt teen", want="bot_uttered")
    assert payload["metadata"]["sender"] == "bot"

    # Crisis with nobody online: queued first (a counsellor signing in sees it first), told
    # honestly, and the bot still answers; the sweep leaves crisis chats queued.
    name, payload = await check(resident, "mulla on halu kuolla", want="bot_uttered")
    assert "112" in payload["text"]
    await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    assert await last_response_id(server, cid) == "handoff_crisis_unavailable"
    assert await state_of(server, cid) == (hs.QUEUED, "crisis")
    name, payload = await check(resident, "onko kukaan lukemassa", want="bot_uttered")
    assert payload["metadata"]["sender"] == "bot"
    srv.handoff.is_open = lambda: False
    srv.handoff.expected_soon = lambda: False
    assert await srv.counsellor_sweeps.sweep_unattended(now=time.monotonic() + 10_000) == []
    assert await state_of(server, cid) == (hs.QUEUED, "crisis")

    # Every move of the table was made, every state visited.
    moves = set(await server.sql("SELECT DISTINCT from_state, to_state FROM handoff_transitions "
                                 "WHERE from_state != to_state"))
    assert moves == set(hs.MOVES), set(hs.MOVES) - moves
    print(f"\nanswer or status after each of {len(timings)} messages: "
          f"max {max(timings) * 1000:.0f} ms, median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms")


async def test_nobody_online_and_chat_over_for_today_returns_the_queue_at_once(server, connect):
    """Queued while chat hours were on and nobody came: when the day's hours end with
    nobody online, the resident is told and returned to the bot at the next sweep."""
    srv = server.server
    resident = await connect(server)
    await resident.session()
    await resident.next("bot_uttered")
    await resident.ack(await resident.say("/join_queue", language="sv"))
    cid = await conversation_id_of(server, resident)  # written with its first message
    assert (await resident.next("handoff_state"))["state"] == "unavailable"
    assert await srv.counsellor_sweeps.sweep_unattended() == []  # chat hours (always open here): it waits
    await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")  # handoff_queued_waiting
    skip_pending(resident)
    srv.handoff.is_open = lambda: False
    srv.handoff.expected_soon = lambda: False
    assert await srv.counsellor_sweeps.sweep_unattended() == [cid]
    told = await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    assert told["metadata"]["language"] == "sv" and "112" in told["text"]
    assert await state_of(server, cid) == (hs.BOT, "normal")


# --- random walks (hypothesis) -----------------------------------------------------------------

from hypothesis import HealthCheck, Phase, example, given, settings as hsettings, strategies as st  # noqa: E402

WALK_ACTIONS = ("say", "request", "join", "leave", "counsellor_on", "counsellor_off", "pick_up", "put_back",
                "close", "crisis", "hours_closed", "hours_open", "sweep")
_walks = iter(range(1_000_000))
_walk_servers: dict[int, object] = {}
WALK_ANSWER_WITHIN_SECS = 5.0  # a machine shared with other work: "a few seconds"


# One server for all the examples (the test's fixtures live as long as the test), a fresh
# resident each; no shrinking (a failure prints its walk).
@hsettings(max_examples=40, deadline=None, phases=[Phase.explicit, Phase.generate],
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(st.sampled_from(WALK_ACTIONS), min_size=4, max_size=10))
# Found by the clean-clone run: a second crisis message while queued with a counsellor online got
# the ack alone (nothing new to escalate, and the queue's updates go only where a view changed).
@example(actions=["counsellor_on", "counsellor_on", "counsellor_on", "put_back", "request", "counsellor_on",
                  "crisis", "crisis", "hours_open", "say"])
async def test_random_walks_never_leave_a_message_unanswered(launch, sqlite_settings, connect, actions):
    """Whatever the resident, the counsellors, the clock and the sweeps do, in any order,
    the resident's next message gets an answer or a status within a few seconds."""
    server = _walk_servers.get(id(launch))
    if server is None:
        server = _walk_servers[id(launch)] = await launch(  # many residents and sign-ins from one address
            sqlite_settings, POLKU_RATE_ADDRESS_PER_MIN=100_000, POLKU_RATE_SESSION_PER_MIN=100_000,
            POLKU_LOGIN_RATE_ADDRESS_PER_MIN=100_000,
            # Every walk's resident comes from 127.0.0.1 and earlier walks' chats stay queued.
            POLKU_QUEUED_PER_ADDRESS=100_000)
    srv = server.server
    srv.handoff.is_open = lambda: True
    srv.handoff.expected_soon = lambda: True
    resident = await connect(server)
    await resident.session()
    await resident.next("bot_uttered")
    await answered(resident, "moi")  # the first message writes the conversation
    cid = await conversation_id_of(server, resident)
    browser = console = None
    try:
        for action in actions:
            state, _ = await state_of(server, cid)
            if action == "say":
                pass
            elif action == "request":
                await answered(resident, "/request_counsellor")
            elif action == "join":
                await answered(resident, "/join_queue")
            elif action == "leave":
                await resident.emit("leave_queue", {"session_id": resident.session_id})
                await resident.next("handoff_state")
            elif action == "crisis":
                await answered(resident, "mulla on halu kuolla")
            elif action == "counsellor_on" and console is None:
                name = f"anna{next(_walks)}"
                await create_staff(server, name)
                browser = StaffBrowser(server)
                await browser.sign_in(name)
                console = await browser.open_console()
                await console.ok("hello")
            elif action == "counsellor_off" and console is not None:
                await browser.close()
                browser = console = None
            elif action == "pick_up" and console is not None and state == hs.QUEUED:
                await console.ok("pick_up", {"conversation_id": cid})
            elif action == "put_back" and console is not None and state == hs.COUNSELLOR:
                await console.call("put_back", {"conversation_id": cid})
            elif action == "close" and console is not None and state in (hs.QUEUED, hs.COUNSELLOR):
                await console.call("close", {"conversation_id": cid, "tags": ["other"]})
            elif action == "hours_closed":
                srv.handoff.is_open = lambda: False
                srv.handoff.expected_soon = lambda: False
            elif action == "hours_open":
                srv.handoff.is_open = lambda: True
                srv.handoff.expected_soon = lambda: True
            elif action == "sweep":
                await srv.counsellor_sweeps.sweep_unattended(now=time.monotonic() + srv.counsellor_sweeps.nobody_back_secs + 1)
            await resident.settle()  # the move's own events have arrived: what follows answers the message
            available = await srv.handoff.available()
            name, payload, took = await answered(resident, "onko joku siellä",
                                                 within=WALK_ANSWER_WITHIN_SECS)  # the invariant
            state, _ = await state_of(server, cid)
            if state == hs.BOT or (state == hs.QUEUED and not available):
                # With the bot, or queued with nobody able to pick it up: the bot itself answers.
                answer = await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "bot",
                                             timeout=WALK_ANSWER_WITHIN_SECS)
                assert answer["text"], actions
    finally:
        if browser is not None:
            await browser.close()
        await resident.close()
