"""Counsellors on several server processes (two apps on two ports) sharing
PostgreSQL and Redis: one pick-up wins out of twenty at once, presence and
queue positions cross processes, and only one process acts on a grace period."""

from __future__ import annotations

import asyncio

from .counsellor_helpers import StaffBrowser, conversation_id_of, create_staff, queued_resident, skip_pending

COUNSELLORS = 20


async def _sign_in_many(servers, count: int) -> tuple[list[StaffBrowser], list]:
    """``count`` counsellors, each signed in and with a console, alternating between the servers."""
    first = servers[0]
    await asyncio.gather(*(create_staff(first, f"c{i:02d}") for i in range(count)))
    browsers = [StaffBrowser(servers[i % len(servers)]) for i in range(count)]
    await asyncio.gather(*(b.sign_in(f"c{i:02d}") for i, b in enumerate(browsers)))
    consoles = await asyncio.gather(*(b.open_console() for b in browsers))
    return browsers, list(consoles)


async def test_twenty_counsellors_clicking_at_once_on_two_processes_one_wins(launch, postgres_settings, connect):
    a = await launch(postgres_settings)
    b = await launch(postgres_settings)
    browsers, consoles = await _sign_in_many([a, b], COUNSELLORS)
    try:
        for round_ in range(3):  # three chats, each clicked by all twenty at once
            resident = await queued_resident(connect, a if round_ % 2 else b)
            cid = await conversation_id_of(a, resident)
            answers = await asyncio.gather(*(c.call("pick_up", {"conversation_id": cid}) for c in consoles))
            winners = [i for i, answer in enumerate(answers) if answer["ok"]]
            assert len(winners) == 1, answers
            assert sorted({answer.get("error") for answer in answers if not answer["ok"]}) == ["already_taken"]
            rows = await a.sql("SELECT handoff_state, counsellor_id FROM conversations WHERE id = :c", c=cid)
            staff_id = (await a.sql("SELECT id FROM staff_users WHERE username = :u", u=f"c{winners[0]:02d}"))[0][0]
            assert rows == [("counsellor", str(staff_id))]
            assert await a.sql("SELECT count(*) FROM handoff_transitions WHERE conversation_id = :c "
                               "AND to_state = 'counsellor'", c=cid) == [(1,)]
            assert await a.server.queue.position(cid) is None
            joined = await resident.next("handoff_state", lambda p: p["state"] == "counsellor")
            assert joined["counsellor_name"] == f"C{winners[0]:02d}"
    finally:
        for browser in browsers:
            await browser.close()


async def test_presence_positions_and_conversation_lines_cross_processes(launch, postgres_settings, connect):
    a = await launch(postgres_settings)
    b = await launch(postgres_settings)
    await create_staff(a, "anna", display_name="Anna")
    browser = StaffBrowser(b)
    try:
        first = await queued_resident(connect, a)
        await browser.sign_in("anna")
        console = await browser.open_console()  # on b: the resident on a learns someone is online
        assert (await first.next("handoff_state", lambda p: p["state"] == "queued"))["position"] == 1
        second = await queued_resident(connect, b)
        cid = await conversation_id_of(a, first)
        skip_pending(second)
        await console.ok("pick_up", {"conversation_id": cid})  # on b, for a resident on a
        assert (await second.next("handoff_state", lambda p: p["position"] == 1))["state"] == "queued"
        await first.next("handoff_state", lambda p: p["state"] == "counsellor")
        await console.ok("send", {"conversation_id": cid, "text": "Hei Annalta"})
        assert (await first.next("bot_uttered", lambda p: p["metadata"]["sender"] == "counsellor"))["text"] == "Hei Annalta"
        await first.ack(await first.say("kiitos"))
        await console.next("message", lambda p: p["message"]["text"] == "kiitos")
    finally:
        await browser.close()


async def test_grace_period_is_acted_on_once_across_processes(launch, postgres_settings, connect):
    a = await launch(postgres_settings, POLKU_COUNSELLOR_GRACE_SECS=0.5)
    b = await launch(postgres_settings, POLKU_COUNSELLOR_GRACE_SECS=0.5)
    await create_staff(a, "anna")
    browser = StaffBrowser(a)
    try:
        await browser.sign_in("anna")
        console = await browser.open_console()
        residents = [await queued_resident(connect, a if i % 2 else b) for i in range(3)]
        ids = [await conversation_id_of(a, r) for r in residents]
        for cid in ids:
            await console.ok("pick_up", {"conversation_id": cid})
        for resident in residents:
            skip_pending(resident)
        await console.close()
        for resident in residents:
            # Nobody is online any more: queued again, told it is unavailable right now.
            state = await resident.next("handoff_state", lambda p: p["state"] == "unavailable", timeout=10)
            assert state["position"] is not None
        await asyncio.sleep(1.0)  # both processes sweep several times meanwhile
        for cid in ids:
            assert await a.sql("SELECT count(*) FROM handoff_transitions WHERE conversation_id = :c "
                               "AND reason = 'counsellor_disconnected'", c=cid) == [(1,)]
        # Back at the front, in the order they first came.
        assert await a.server.queue.conversation_ids() == ids
    finally:
        await browser.close()
