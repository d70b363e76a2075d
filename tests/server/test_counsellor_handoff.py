"""A counsellor's work over real sockets, on both backends: the live queue
(crisis first, positions updated), picking up, talking both ways with typing,
notes, putting back, closing with tags, the grace period, who may read what,
and the audit records of it all."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from chat_server import handoff as hs
from chat_server.counsellor.protocol import CLOSE_TAGS
from chat_server.store.models import utcnow

from .counsellor_helpers import (
    StaffBrowser, conversation_id_of, create_staff, picked_up_resident, queued_resident, skip_pending,
)


@pytest.fixture
async def counsellors():
    """counsellors(server, "anna", ...) -> a signed-in console for each name (accounts created)."""
    opened: list[StaffBrowser] = []

    async def _open(server, *names: str, role: str = "counsellor"):
        consoles = []
        for name in names:
            await create_staff(server, name, role=role)
            browser = StaffBrowser(server)
            opened.append(browser)
            await browser.sign_in(name)
            console = await browser.open_console()
            await console.ok("hello")
            consoles.append(console)
        return consoles[0] if len(consoles) == 1 else consoles

    yield _open
    for browser in opened:
        await browser.close()


async def test_pick_up_talk_both_ways_and_close_with_tags(server, connect, counsellors):
    anna = await counsellors(server, "anna")
    resident = await queued_resident(connect, server)
    cid = await conversation_id_of(server, resident)
    queue = await anna.next("queue", lambda p: p["conversations"])
    entry = queue["conversations"][0]
    assert (entry["conversation_id"], entry["position"], entry["crisis"], entry["language"]) == (cid, 1, False, "fi")
    assert entry["queued_at"] and entry["state"] == "queued"

    taken = await anna.ok("pick_up", {"conversation_id": cid})
    senders = [m["sender"] for m in taken["messages"]]
    assert senders[:3] == ["system", "resident", "system"]  # the whole transcript: welcome, request, queue notice
    assert taken["messages"][-1]["text"].startswith("Anna")  # handoff_joined
    state = await resident.next("handoff_state", lambda p: p["state"] == "counsellor")
    assert state["counsellor_name"] == "Anna"
    joined = await resident.next("bot_uttered", lambda p: "Anna" in p["text"])
    assert joined["metadata"]["sender"] == "system"

    # Counsellor -> resident: a bot_uttered with sender counsellor and the display name only.
    await anna.ok("typing", {"conversation_id": cid, "typing": True})
    assert await resident.next("typing", lambda p: p["sender"] == "counsellor") == {"sender": "counsellor",
                                                                                   "typing": True}
    sent = await anna.ok("send", {"conversation_id": cid, "text": "Hei, miten voin auttaa?", "client_id": "c1"})
    got = await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "counsellor")
    assert got["text"] == "Hei, miten voin auttaa?"
    assert got["metadata"]["counsellor_name"] == "Anna" and got["metadata"]["message_id"] == sent["message"]["message_id"]
    assert set(got) == {"text", "metadata"}
    # A resend with the same client_id is stored once.
    again = await anna.ok("send", {"conversation_id": cid, "text": "Hei, miten voin auttaa?", "client_id": "c1"})
    assert again["message"]["message_id"] == sent["message"]["message_id"]

    # Resident -> counsellor: typing and the message, redacted as stored.
    await resident.emit("resident_typing", {"session_id": resident.session_id, "typing": True})
    assert await anna.next("resident_typing") == {"conversation_id": cid, "typing": True}
    await resident.ack(await resident.say("Vuokra on rästissä, numeroni 040 1234567"))
    line = await anna.next("message", lambda p: p["message"]["sender"] == "resident"
                           and "rästissä" in p["message"]["text"])
    assert line["conversation_id"] == cid and "1234567" not in line["message"]["text"]
    await resident.settle()
    later = [p for e, p in resident.pending("bot_uttered") if p["metadata"]["message_id"] > sent["message"]["message_id"]]
    assert later == []  # the bot keeps quiet while a counsellor has the chat

    # An internal note: the consoles see it, the resident never does.
    note = await anna.ok("note", {"conversation_id": cid, "text": "Ohjattu asumisneuvontaan"})
    assert note["note"]["author"] == "Anna"
    await resident.settle()
    assert all("asumisneuvontaan" not in str(payload) for _, payload in resident.received)

    refused = await anna.call("close", {"conversation_id": cid, "tags": []})
    assert refused == {"ok": False, "error": "tags_required"}
    refused = await anna.call("close", {"conversation_id": cid, "tags": ["weather"]})
    assert refused == {"ok": False, "error": "unknown_tag"}
    await anna.ok("close", {"conversation_id": cid, "tags": ["housing_problem", "other"], "other_label": "vuokravelka"})
    assert (await resident.next("handoff_state", lambda p: p["state"] == "closed"))["state"] == "closed"
    closed = await resident.next("bot_uttered", lambda p: "botin" in p["text"])
    assert closed["metadata"]["sender"] == "system"
    assert await server.sql("SELECT tag, label FROM conversation_tags ORDER BY tag") == [
        ("housing_problem", None), ("other", "vuokravelka")]
    # The resident's next message is the bot's again.
    await resident.ack(await resident.say("moi"))
    assert (await resident.next("handoff_state", lambda p: p["state"] == "bot"))["state"] == "bot"
    assert (await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "bot"))["text"]

    transitions = await server.sql("SELECT from_state, to_state, actor FROM handoff_transitions ORDER BY id")
    anna_id = (await server.sql("SELECT id FROM staff_users WHERE username = 'anna'"))[0][0]
    assert transitions == [("bot", "queued", "bot"), ("queued", "counsellor", f"counsellor:{anna_id}"),
                           ("counsellor", "closed", f"counsellor:{anna_id}"), ("closed", "bot", "resident")]
    actions = await server.sql("SELECT action, conversation_id FROM audit_log WHERE conversation_id IS NOT NULL ORDER BY id")
    assert actions == [("pick_up", cid), ("note", cid), ("close", cid)]


async def test_queue_is_crisis_first_and_every_resident_sees_their_place_move(server, connect, counsellors):
    anna = await counsellors(server, "anna")
    first = await queued_resident(connect, server)
    second = await queued_resident(connect, server)
    crisis = await queued_resident(connect, server, "mulla on halu kuolla")
    ids = [await conversation_id_of(server, r) for r in (first, second, crisis)]

    # The crisis went first: the others were told their new places.
    moved = await first.next("handoff_state", lambda p: p["position"] == 2)
    assert moved["state"] == "queued" and moved["estimated_wait_secs"] == 2 * int(server.settings.queue_secs_per_conversation)
    assert (await second.next("handoff_state", lambda p: p["position"] == 3))["state"] == "queued"
    queue = await anna.next("queue", lambda p: len(p["conversations"]) == 3)
    assert [c["conversation_id"] for c in queue["conversations"]] == [ids[2], ids[0], ids[1]]
    assert [c["crisis"] for c in queue["conversations"]] == [True, False, False]

    # The first leaves the queue: the second moves up.
    await first.emit("leave_queue", {})
    assert (await second.next("handoff_state", lambda p: p["position"] == 2))["state"] == "queued"
    await anna.next("queue", lambda p: [c["conversation_id"] for c in p["conversations"]] == [ids[2], ids[1]])
    # The crisis is picked up: the second is next.
    await anna.ok("pick_up", {"conversation_id": ids[2]})
    assert (await second.next("handoff_state", lambda p: p["position"] == 1))["state"] == "queued"


async def test_a_crisis_written_while_waiting_goes_first_and_gets_emergency_guidance(server, connect, counsellors):
    anna = await counsellors(server, "anna")
    first = await queued_resident(connect, server)
    waiting = await queued_resident(connect, server)
    ids = [await conversation_id_of(server, r) for r in (first, waiting)]
    skip_pending(waiting)
    # Not a crisis: stored for the counsellor, nothing else happens.
    await waiting.ack(await waiting.say("kauanko tässä menee"))
    # A crisis, with a typo, while waiting in the normal queue.
    await waiting.ack(await waiting.say("en jaksa enää elää, haluan kuolla"))
    guidance = await waiting.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    assert "112" in guidance["text"]
    assert (await waiting.next("handoff_state", lambda p: p["position"] == 1))["state"] == "queued"
    assert (await first.next("handoff_state", lambda p: p["position"] == 2))["state"] == "queued"
    queue = await anna.next("queue", lambda p: [c["conversation_id"] for c in p["conversations"]] == [ids[1], ids[0]])
    assert [c["crisis"] for c in queue["conversations"]] == [True, False]
    rows = await server.sql("SELECT from_state, to_state, actor, reason FROM handoff_transitions "
                            "WHERE conversation_id = :c ORDER BY id", c=ids[1])
    assert rows[-1] == ("queued", "queued", "system", "crisis_while_waiting")
    intents = await server.sql("SELECT intent FROM messages WHERE conversation_id = :c AND sender = 'resident' "
                               "ORDER BY id", c=ids[1])
    assert intents[-2:] == [(None,), ("crisis",)]
    # A second crisis message: already first, no second guidance.
    await waiting.ack(await waiting.say("haluan kuolla"))
    notices = await server.sql("SELECT count(*) FROM messages WHERE conversation_id = :c AND response_id = 'crisis'",
                               c=ids[1])
    assert notices == [(1,)]


async def test_a_crisis_written_to_a_counsellor_flags_the_chat(server, connect, counsellors):
    anna = await counsellors(server, "anna")
    resident, cid = await picked_up_resident(connect, server, anna)
    await resident.ack(await resident.say("mua pelottaa, mies uhkaa tappaa mut"))
    line = await anna.next("message", lambda p: p["message"]["sender"] == "resident")
    assert "pelottaa" in line["message"]["text"]
    assert await server.sql("SELECT priority FROM conversations WHERE id = :c", c=cid) == [("crisis",)]
    # The counsellor answers; no automatic text is put into their conversation.
    await asyncio.sleep(0.3)
    assert resident.pending("bot_uttered") == []


async def test_nobody_online_or_chat_closed_is_unavailable(server, connect, counsellors):
    resident = await queued_resident(connect, server)
    assert resident.received[-1][0] in ("handoff_state", "bot_uttered")
    notices = await server.sql("SELECT response_id FROM messages WHERE sender = 'system' ORDER BY id")
    assert notices[-1] == ("handoff_queued_waiting",)
    # A counsellor signs in: the waiting resident learns there is someone now.
    anna = await counsellors(server, "anna")
    assert (await resident.next("handoff_state", lambda p: p["state"] == "queued"))["position"] == 1
    # Outside the chat's opening hours: unavailable again, counsellor or not.
    server.server.handoff.is_open = lambda: False
    await server.server.handoff.queue_changed()
    assert (await resident.next("handoff_state", lambda p: p["state"] == "unavailable"))["position"] == 1
    assert (await anna.ok("hello"))["available"] is False


async def test_put_back_keeps_its_place_and_tells_the_resident(server, connect, counsellors):
    anna = await counsellors(server, "anna")
    first = await queued_resident(connect, server)
    second = await queued_resident(connect, server)
    first_id = await conversation_id_of(server, first)
    await anna.ok("pick_up", {"conversation_id": first_id})
    await first.next("handoff_state", lambda p: p["state"] == "counsellor")
    skip_pending(first)
    skip_pending(second)
    await anna.ok("put_back", {"conversation_id": first_id})
    state = await first.next("handoff_state", lambda p: p["state"] == "queued")
    assert state["position"] == 1  # before the one who came later
    assert await server.sql("SELECT response_id FROM messages WHERE conversation_id = :c AND sender = 'system' "
                            "ORDER BY id DESC LIMIT 1", c=first_id) == [("handoff_put_back",)]
    # The second resident's last word is place 2 again (queue updates are coalesced: a pick-up
    # and a put-back within one update interval send the second nothing new at all).
    await asyncio.sleep(hs.QUEUE_UPDATE_DELAY_SECS * 3)
    told = [payload for event, payload in second.received if event == "handoff_state"]
    assert (told[-1]["state"], told[-1]["position"]) == ("queued", 2)
    assert (await anna.call("send", {"conversation_id": first_id, "text": "x"}))["error"] == "not_yours"


async def test_two_counsellors_never_get_the_same_chat(server, connect, counsellors):
    anna, bertta = await counsellors(server, "anna", "bertta")
    resident = await queued_resident(connect, server)
    cid = await conversation_id_of(server, resident)
    results = await asyncio.gather(anna.call("pick_up", {"conversation_id": cid}),
                                   bertta.call("pick_up", {"conversation_id": cid}))
    assert sorted(r["ok"] for r in results) == [False, True]
    assert [r["error"] for r in results if not r["ok"]] == ["already_taken"]
    assert await server.sql("SELECT count(*) FROM handoff_transitions WHERE to_state = 'counsellor'") == [(1,)]


async def test_access_to_transcripts(server, connect, counsellors):
    anna, bertta = await counsellors(server, "anna", "bertta")
    resident = await queued_resident(connect, server)
    cid = await conversation_id_of(server, resident)
    # Queued: every counsellor may read it (to choose whom to take); the opening is audited.
    assert (await bertta.ok("open", {"conversation_id": cid}))["complete"] is True
    await anna.ok("pick_up", {"conversation_id": cid})
    await anna.ok("send", {"conversation_id": cid, "text": "Annan viesti"})
    # Assigned to Anna: Bertta may not read it, over the socket or HTTP, nor act on it.
    assert await bertta.call("open", {"conversation_id": cid}) == {"ok": False, "error": "forbidden"}
    assert (await bertta.call("send", {"conversation_id": cid, "text": "x"}))["error"] == "not_yours"
    assert (await bertta.call("note", {"conversation_id": cid, "text": "x"}))["error"] == "forbidden"
    assert (await bertta.call("pick_up", {"conversation_id": cid}))["error"] == "already_taken"
    bertta_browser = StaffBrowser(server)
    try:
        await bertta_browser.sign_in("bertta")
        assert (await bertta_browser.get(f"/api/console/conversations/{cid}"))[0] == 403
        assert (await bertta_browser.get("/api/console/conversations/99999"))[0] == 404
    finally:
        await bertta_browser.close()
    # Bertta's console, which had the queued chat open, gets none of its lines any more.
    await resident.ack(await resident.say("vain Annalle"))
    await anna.next("message", lambda p: p["message"]["text"] == "vain Annalle")
    await bertta.ok("hello")  # a round trip: anything sent to Bertta before it has arrived
    assert not [p for e, p in bertta.pending("message") if p["message"]["text"] == "vain Annalle"]

    # Closed: Anna reads the part she handled, up to her closing, and nothing after it.
    await anna.ok("close", {"conversation_id": cid, "tags": ["housing_problem"]})
    await resident.ack(await resident.say("botille myöhemmin"))
    await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "bot")
    view = await anna.ok("open", {"conversation_id": cid})
    texts = [m["text"] for m in view["messages"]]
    assert view["complete"] is False and "Annan viesti" in texts and "botille myöhemmin" not in texts
    assert [m["counsellor_name"] for m in view["messages"] if m["sender"] == "counsellor"] == ["Anna"]
    assert await bertta.call("open", {"conversation_id": cid}) == {"ok": False, "error": "forbidden"}
    audit = await server.sql("SELECT a.action, u.username FROM audit_log a JOIN staff_users u ON u.id = a.staff_id "
                             "WHERE a.conversation_id = :c ORDER BY a.id", c=cid)
    assert audit == [("view_transcript", "bertta"), ("pick_up", "anna"), ("close", "anna"),
                     ("view_transcript", "anna")]


async def test_grace_period_requeues_to_the_front_and_tells_the_resident(launch, backend_settings, connect,
                                                                          counsellors):
    server = await launch(backend_settings, POLKU_COUNSELLOR_GRACE_SECS=0.6)
    anna, bertta = await counsellors(server, "anna", "bertta")
    first = await queued_resident(connect, server)
    second = await queued_resident(connect, server)
    first_id, second_id = await conversation_id_of(server, first), await conversation_id_of(server, second)
    await anna.ok("pick_up", {"conversation_id": second_id})
    await second.next("handoff_state", lambda p: p["state"] == "counsellor")
    third = await queued_resident(connect, server)

    skip_pending(second)
    skip_pending(first)
    await anna.close()  # Anna's connection drops; the chat waits for her for the grace period
    await asyncio.sleep(0.2)
    assert (await server.sql("SELECT handoff_state FROM conversations WHERE id = :c", c=second_id)) == [("counsellor",)]
    state = await second.next("handoff_state", lambda p: p["state"] == "queued", timeout=10)
    assert state["position"] == 1  # the front: before those who waited all along
    notice = await second.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    assert notice["text"]
    assert await server.sql("SELECT response_id FROM messages WHERE conversation_id = :c ORDER BY id DESC LIMIT 1",
                            c=second_id) == [("handoff_requeued",)]
    assert await server.server.queue.conversation_ids() == [second_id, first_id,
                                                            await conversation_id_of(server, third)]
    assert (await first.next("handoff_state", lambda p: p["position"] == 2))["state"] == "queued"
    queue = await bertta.next("queue", lambda p: p["conversations"] and p["conversations"][0]["conversation_id"] == second_id)
    assert len(queue["conversations"]) == 3
    rows = await server.sql("SELECT actor, reason FROM handoff_transitions WHERE conversation_id = :c ORDER BY id DESC LIMIT 1",
                            c=second_id)
    assert rows == [("system", "counsellor_disconnected")]


async def test_the_only_counsellor_lost_tells_the_resident_what_happened_and_what_to_do(launch, sqlite_settings,
                                                                                          connect, counsellors):
    server = await launch(sqlite_settings, POLKU_COUNSELLOR_GRACE_SECS=0.3)
    anna = await counsellors(server, "anna")
    resident, cid = await picked_up_resident(connect, server, anna)
    await anna.close()
    assert (await resident.next("handoff_state", lambda p: p["state"] == "unavailable", timeout=10))["position"] == 1
    notice = await resident.next("bot_uttered", lambda p: p["metadata"]["sender"] == "system")
    assert "yhteys katkesi" in notice["text"] and "/callback_request" in [q["payload"] for q in notice["quick_replies"]]
    assert await server.sql("SELECT response_id FROM messages WHERE conversation_id = :c ORDER BY id DESC LIMIT 1",
                            c=cid) == [("handoff_requeued_unavailable",)]


async def test_a_queued_resident_silent_too_long_is_closed_and_leaves_the_queue(server, connect, counsellors):
    anna = await counsellors(server, "anna")
    silent = await queued_resident(connect, server)
    active = await queued_resident(connect, server)
    silent_id, active_id = await conversation_id_of(server, silent), await conversation_id_of(server, active)
    hours = server.settings.queue_abandon_hours
    assert hours > 0
    async with server.server.store.transaction() as tx:
        conversation = await server.server.conversations.lock(tx, silent_id)
        conversation.last_activity_at = utcnow() - timedelta(hours=hours, minutes=1)
    await server.server.counsellor_sweeps.sweep_abandoned()
    assert await server.sql("SELECT handoff_state FROM conversations WHERE id IN (:a, :b) ORDER BY id",
                            a=silent_id, b=active_id) == [("closed",), ("queued",)]
    assert await server.server.queue.conversation_ids() == [active_id]
    assert (await active.next("handoff_state", lambda p: p["position"] == 1))["state"] == "queued"
    await anna.next("queue", lambda p: [c["conversation_id"] for c in p["conversations"]] == [active_id])
    rows = await server.sql("SELECT actor, reason FROM handoff_transitions WHERE conversation_id = :c "
                            "ORDER BY id DESC LIMIT 1", c=silent_id)
    assert rows == [("system", "abandoned")]
    # The resident comes back and writes: the bot has the conversation again.
    await silent.ack(await silent.say("/greet"))
    await silent.next("handoff_state", lambda p: p["state"] == "bot")


async def test_a_counsellor_back_within_the_grace_period_keeps_the_chat(launch, sqlite_settings, connect,
                                                                        counsellors):
    server = await launch(sqlite_settings, POLKU_COUNSELLOR_GRACE_SECS=1.5)
    anna = await counsellors(server, "anna")
    resident = await queued_resident(connect, server)
    cid = await conversation_id_of(server, resident)
    await anna.ok("pick_up", {"conversation_id": cid})
    cookie = anna.cookie
    await anna.close()
    await asyncio.sleep(0.5)
    from .counsellor_helpers import ConsoleClient

    back = await ConsoleClient(server.url, cookie).connect()
    try:
        hello = await back.ok("hello")
        assert [c["conversation_id"] for c in hello["mine"]] == [cid]
        await asyncio.sleep(1.8)
        assert await server.sql("SELECT handoff_state FROM conversations WHERE id = :c", c=cid) == [("counsellor",)]
        await back.ok("send", {"conversation_id": cid, "text": "Olen taas täällä"})
    finally:
        await back.close()


async def test_console_hello_has_snippets_and_tags(server, counsellors):
    anna = await counsellors(server, "anna")
    hello = await anna.ok("hello")
    assert {"fi", "sv", "en"} <= set(hello["snippets"]) and all(hello["snippets"][lang] for lang in ("fi", "sv", "en"))
    assert [t["tag"] for t in hello["tags"]] == list(CLOSE_TAGS)
    assert "request_counsellor" not in CLOSE_TAGS and "other" in CLOSE_TAGS
    assert all(set(t["labels"]) == {"fi", "sv", "en"} for t in hello["tags"])
    assert (await anna.call("nonsense", {})) == {"ok": False, "error": "unknown_event"}
    assert (await anna.call("open", {"conversation_id": "1"}))["error"] == "malformed_payload"


async def test_chat_hours_come_from_the_content_file(launch, sqlite_settings, monkeypatch):
    server = await launch(sqlite_settings, POLKU_CHAT_ALWAYS_OPEN=False)
    content = server.server.bot.content
    every_day = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    monkeypatch.setattr(content, "opening_hours", {"timezone": "Europe/Helsinki", "chat": every_day})
    assert server.server.handoff.is_open() is True
    monkeypatch.setattr(content, "opening_hours", {"timezone": "Europe/Helsinki", "chat": {}})
    assert server.server.handoff.is_open() is False
    await server.server.presence.heartbeat("anna", "Anna")
    assert await server.server.handoff.available() is False  # someone online, but the chat is closed
