"""A chat server stopped cleanly (SIGTERM: it drains and closes every
connection) and started again: the widget and the counsellor console, open
in real Chromium, reconnect by themselves, without a reload, and go on where
they were (the resident's session, the counsellor's sign-in)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import ChatServerProcess
from .helpers import (
    RESIDENT_MESSAGES, open_demo, open_with_keyboard, send_with_enter, session_value, wait_for_answer,
    wait_for_welcome,
)
from .test_console import PASSWORD, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def restartable_server(widget_bundle, browser_rasa_url, tmp_path):
    server = ChatServerProcess(tmp_path / "chat", browser_rasa_url, POLKU_CHAT_ALWAYS_OPEN="1")
    server.create_user("anna", "Anna", "counsellor", PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_widget_and_console_reconnect_by_themselves_after_a_clean_stop(new_page, restartable_server):
    server = restartable_server
    resident = new_page()
    open_demo(resident, server.url)
    open_with_keyboard(resident)
    wait_for_welcome(resident)
    session = session_value(resident, "session")
    assert session
    counsellor = new_page()
    sign_in(counsellor, server.url)

    server.stop()  # SIGTERM: drains
    assert server.proc.returncode == 0, server.log_tail()
    expect(resident.locator(".polku-status")).to_contain_text("yhdistetään uudelleen")
    expect(counsellor.locator("#connection-status")).to_have_attribute("data-state", "disconnected")
    send_with_enter(resident, "Kirjoitin tämän, kun palvelin käynnistyi uudelleen.")

    server.start()
    # No reload: socket.io-client takes the drain's closed transport as a dropped connection.
    expect(counsellor.locator("#connection-status")).to_have_attribute("data-state", "connected",
                                                                       timeout=30_000)
    mine = resident.locator(RESIDENT_MESSAGES).last
    expect(mine.locator(".polku-msg__state")).to_have_count(0, timeout=30_000)  # sent and acknowledged
    wait_for_answer(resident)
    assert session_value(resident, "session") == session  # resumed, not a new conversation
    assert "drained" in server.log_tail(200)
