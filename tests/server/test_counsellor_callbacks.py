"""Callback requests: asked by a resident who cannot get a counsellor now,
stored only with consent, seen and marked done by counsellors, contact
details wiped when done."""

from __future__ import annotations

import logging

from .counsellor_helpers import StaffBrowser, conversation_id_of, queued_resident

PHONE = "040 765 4321"


async def test_callback_request_flow(server, connect, console, caplog):
    caplog.set_level(logging.DEBUG, logger="chat_server")
    await console.close()  # nobody online: the resident is offered a call back
    resident = await queued_resident(connect, server)
    notice = await resident.next("bot_uttered", lambda p: p.get("quick_replies"))
    assert [q["payload"] for q in notice["quick_replies"]] == ["/callback_request"]
    cid = await conversation_id_of(server, resident)

    # Without consent (or with a number that is none) nothing is stored.
    for bad in ({"phone": PHONE}, {"phone": PHONE, "consent": "yes"}, {"phone": "abc", "consent": True},
                {"phone": "12", "consent": True}, {"consent": True}):
        await resident.emit("callback_request", {"session_id": resident.session_id, **bad})
        error = await resident.error("callback_invalid")
        assert error["message"]
    assert await server.count("callback_requests") == 0

    await resident.emit("callback_request", {"session_id": resident.session_id, "name": "Maija", "phone": PHONE,
                                             "preferred_time": "huomenna aamupäivällä", "topic": "housing_problem",
                                             "consent": True})
    ack = await resident.next("callback_ack")
    rows = await server.sql("SELECT id, conversation_id, status, name, phone, preferred_time, topic, language "
                            "FROM callback_requests")
    assert rows == [(ack["callback_id"], cid, "open", "Maija", PHONE, "huomenna aamupäivällä",
                     "housing_problem", "fi")]
    # Asking again updates the open request instead of adding one.
    await resident.emit("callback_request", {"phone": "+358 40 111 2222", "consent": True})
    assert (await resident.next("callback_ack"))["callback_id"] == ack["callback_id"]
    assert await server.sql("SELECT phone, name FROM callback_requests") == [("+358 40 111 2222", None)]

    # A counsellor sees it and marks it done: the contact details are gone, the fact stays.
    browser = StaffBrowser(server)
    try:
        await browser.sign_in("anna")
        console = await browser.open_console()
        hello = await console.ok("hello")
        (entry,) = hello["callbacks"]
        assert entry["phone"] == "+358 40 111 2222" and entry["conversation_id"] == cid
        await console.ok("callback_done", {"callback_id": entry["callback_id"]})
        assert (await console.next("callbacks"))["callbacks"] == []
        assert (await console.call("callback_done", {"callback_id": entry["callback_id"]}))["error"] == "already_done"
    finally:
        await browser.close()
    assert await server.sql("SELECT status, name, phone, preferred_time, done_by IS NOT NULL FROM callback_requests") == [
        ("done", None, None, None, True)]
    assert ("callback_done", cid) in await server.sql("SELECT action, conversation_id FROM audit_log")
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    assert "765" not in log_text and "111 2222" not in log_text and "Maija" not in log_text


async def test_new_callback_reaches_open_consoles(server, connect, console):
    resident = await connect(server)
    await resident.session()
    await resident.emit("callback_request", {"session_id": resident.session_id, "phone": PHONE, "consent": True})
    await resident.next("callback_ack")
    update = await console.next("callbacks", lambda p: p["callbacks"])
    assert [c["phone"] for c in update["callbacks"]] == [PHONE]


async def test_callback_request_needs_a_session(server, connect):
    resident = await connect(server)
    await resident.emit("callback_request", {"phone": PHONE, "consent": True})
    await resident.error("unknown_session")
    assert await server.count("callback_requests") == 0
