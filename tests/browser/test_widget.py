"""The resident widget in a real browser against the real chat server: what a
resident does (keyboard only, phone, zoom, reload, lost connection) and what
WCAG 2.1 AA asks of it."""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import expect

from .helpers import (
    ANSWERS_AFTER_RESIDENT,
    DEEP_ACTIVE_JS,
    MESSAGES,
    QUESTION_FI,
    RESIDENT_MESSAGES,
    active_matches,
    all_session_storage,
    save_screenshot,
    assert_inside_viewport,
    assert_no_horizontal_scroll,
    contrast_ratio,
    open_demo,
    open_with_keyboard,
    parse_rgb,
    run_axe,
    send_with_enter,
    sent_events,
    session_value,
    spy_on_socket,
    tab_to,
    wait_for_animations,
    wait_for_answer,
    wait_for_welcome,
)

pytestmark = pytest.mark.browser


def test_keyboard_only_conversation(page, chat_server):
    open_demo(page, chat_server)
    launcher = page.locator(".polku-launcher")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(launcher).to_have_attribute("aria-controls", "polku-panel")

    open_with_keyboard(page)
    expect(launcher).to_have_attribute("aria-expanded", "true")
    log = page.locator(".polku-log")
    expect(log).to_have_attribute("role", "log")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(log).to_have_attribute("aria-label", "Keskustelu")
    wait_for_welcome(page)

    page.keyboard.type(QUESTION_FI)
    page.keyboard.press("Enter")
    mine = page.locator(RESIDENT_MESSAGES).last
    expect(mine).to_contain_text(QUESTION_FI)
    expect(mine).to_contain_text("Sinä")  # the visible sender label
    expect(page.locator("textarea.polku-input")).to_have_value("")
    wait_for_answer(page)

    answer = page.locator(ANSWERS_AFTER_RESIDENT).first
    expect(answer.locator(".polku-msg__sender")).to_have_text(["Botti:"])
    assert answer.locator(".polku-msg__bubble").inner_text().strip()
    expect(mine.locator(".polku-msg__state")).to_have_count(0)  # acknowledged: no "not sent" mark
    for lang in page.locator(MESSAGES).evaluate_all("els => els.map(e => e.getAttribute('lang'))"):
        assert lang in ("fi", "sv", "en"), "every message says its language"
    assert session_value(page, "outbox") == []


def test_shift_enter_makes_a_new_line(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    page.keyboard.type("Ensimmäinen rivi")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("toinen rivi")
    expect(page.locator("textarea.polku-input")).to_have_value("Ensimmäinen rivi\ntoinen rivi")
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(0)


def test_history_survives_a_reload(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    send_with_enter(page, QUESTION_FI)
    wait_for_answer(page)
    before = page.locator(MESSAGES).all_inner_texts()
    session_id = session_value(page, "session")

    page.reload()
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")
    # The panel was open: it opens again, with the same conversation.
    expect(page.locator(".polku-panel")).to_be_visible()
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(1)
    expect(page.locator(RESIDENT_MESSAGES)).to_contain_text(QUESTION_FI)
    page.wait_for_timeout(1500)  # the history answer merges in
    assert page.locator(MESSAGES).all_inner_texts() == before
    assert session_value(page, "session") == session_id


def test_quick_reply_is_a_button_that_shows_its_title(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    button = page.locator(".polku-quick button").first
    expect(button).to_be_visible()
    title = button.inner_text().strip()
    button.click()
    expect(page.locator(RESIDENT_MESSAGES).last).to_contain_text(title)
    assert "/" not in page.locator(RESIDENT_MESSAGES).last.locator(".polku-msg__bubble").inner_text()
    wait_for_answer(page)


def test_clear_conversation_asks_first_and_starts_a_new_session(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    send_with_enter(page, QUESTION_FI)
    wait_for_answer(page)
    old_session = session_value(page, "session")

    page.get_by_role("button", name="Tyhjennä keskustelu").click()
    confirm = page.locator(".polku-confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Tyhjennetäänkö keskustelu?")
    # Cancelling keeps everything.
    confirm.get_by_role("button", name="Peruuta").click()
    expect(confirm).to_be_hidden()
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(1)

    page.get_by_role("button", name="Tyhjennä keskustelu").click()
    confirm.get_by_role("button", name="Tyhjennä", exact=True).click()
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(0)
    expect(page.locator(".polku-status")).to_contain_text("Keskustelu tyhjennettiin")
    assert active_matches(page, "textarea.polku-input")
    page.wait_for_function(
        "(old) => { const s = JSON.parse(sessionStorage.getItem('polku-chat:v1:session')); return s && s !== old; }",
        arg=old_session)
    wait_for_welcome(page)  # the new session's welcome

    page.reload()
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")
    expect(page.locator(".polku-panel")).to_be_visible()
    page.wait_for_timeout(1000)
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(0)


def test_escape_closes_and_returns_focus_to_the_launcher(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    page.keyboard.press("Escape")
    expect(page.locator(".polku-panel")).to_be_hidden()
    expect(page.locator(".polku-launcher")).to_have_attribute("aria-expanded", "false")
    assert active_matches(page, ".polku-launcher")
    # ... and from a button inside the panel, after Tab-ing around (no trap).
    page.keyboard.press("Enter")
    for _ in range(3):
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Escape")
    expect(page.locator(".polku-panel")).to_be_hidden()
    assert active_matches(page, ".polku-launcher")


def test_no_keyboard_trap_in_the_panel(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.add(page.evaluate(f"() => {{ const a = ({DEEP_ACTIVE_JS})(); return a ? a.tagName + '.' + a.className : 'none'; }}"))
    # Tab leaves the widget (to the page or the browser) and comes back: nothing holds the focus.
    assert any("polku" not in item for item in seen), seen
    assert any("polku-input" in item for item in seen), seen


def test_language_switcher(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    page.get_by_role("button", name="Svenska").click()
    expect(page.get_by_role("button", name="Svenska")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".polku-title")).to_have_text("Polku-chatten")
    expect(page.locator("label.polku-composer__label")).to_have_text("Skriv ditt meddelande")
    expect(page.locator(".polku-root")).to_have_attribute("lang", "sv")
    expect(page.locator(".polku-log")).to_have_attribute("aria-label", "Konversation")
    page.get_by_role("button", name="English").click()
    expect(page.locator(".polku-title")).to_have_text("Polku chat")
    expect(page.get_by_role("button", name="Close chat")).to_be_visible()
    page.reload()
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")
    expect(page.locator(".polku-title")).to_have_text("Polku chat")  # the choice is kept


def test_too_long_message_is_refused_and_the_text_kept(page, chat_server):
    # The session server allows 500 characters (POLKU_MAX_MESSAGE_CHARS).
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    long_text = "Tämä on pitkä viesti. " * 30
    send_with_enter(page, long_text)
    error = page.locator(".polku-error")
    expect(error).to_contain_text("liian pitkä")
    expect(error).to_contain_text("Tekstisi on tallessa")
    expect(page.locator("textarea.polku-input")).to_have_value(long_text)
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(0)
    assert session_value(page, "outbox") == []


def test_axe_finds_no_wcag_a_or_aa_violations(page, chat_server):
    open_demo(page, chat_server)
    assert run_axe(page) == [], "closed widget"
    open_with_keyboard(page)
    wait_for_welcome(page)
    send_with_enter(page, QUESTION_FI)
    wait_for_answer(page)
    violations = run_axe(page)
    assert violations == [], violations
    page.get_by_role("button", name="Tyhjennä keskustelu").click()
    violations = run_axe(page)
    assert violations == [], violations


def test_axe_on_a_phone(new_page, chat_server):
    page = new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                    device_scale_factor=2)
    open_demo(page, chat_server)
    page.locator(".polku-launcher").tap()
    wait_for_welcome(page)
    violations = run_axe(page)
    assert violations == [], violations


def test_phone_full_screen_without_sideways_scrolling(new_page, chat_server):
    page = new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                    device_scale_factor=2)
    open_demo(page, chat_server)
    assert_no_horizontal_scroll(page)
    page.locator(".polku-launcher").tap()
    wait_for_welcome(page)
    send_with_enter(page, QUESTION_FI)
    wait_for_answer(page)
    wait_for_animations(page, ".polku-panel")
    box = page.locator(".polku-panel").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 360, "height": 740}, box
    assert_no_horizontal_scroll(page)
    # Touch targets: every button of the widget is at least 44 x 44 CSS pixels.
    sizes = page.locator(".polku-panel button:visible").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.textContent.trim() || e.getAttribute('aria-label'), r.width, r.height]; })")
    small = [s for s in sizes if s[1] < 44 or s[2] < 44]
    assert not small, small
    save_screenshot(page, "widget-phone.png")


@pytest.mark.parametrize("viewport", [
    {"width": 640, "height": 400},  # 1280 x 800 at 200 % zoom
    {"width": 320, "height": 256},  # 1280 x 1024 at 400 % zoom (WCAG 1.4.10 reflow)
])
def test_zoom_reflows_without_sideways_scrolling(new_page, chat_server, viewport):
    page = new_page(viewport=viewport, device_scale_factor=2)
    open_demo(page, chat_server)
    assert_no_horizontal_scroll(page)
    assert_inside_viewport(page, ".polku-launcher")
    open_with_keyboard(page)
    wait_for_welcome(page)
    send_with_enter(page, QUESTION_FI)
    wait_for_answer(page)
    assert_no_horizontal_scroll(page)
    assert_inside_viewport(page, ".polku-panel")
    assert_inside_viewport(page, "textarea.polku-input")
    assert_inside_viewport(page, ".polku-send")
    overflowing = page.locator(".polku-panel").evaluate(
        "p => [...p.querySelectorAll('*:not(.polku-sr)')].filter(e => e.scrollWidth > e.clientWidth + 1"
        " && getComputedStyle(e).overflowX !== 'visible').map(e => e.className)")
    assert not overflowing, f"parts of the panel scroll sideways: {overflowing}"
    if viewport["width"] == 640:
        save_screenshot(page, "widget-zoom200.png")


def test_text_only_zoom_200_percent(page, chat_server):
    """Browsers' text-only zoom (and a bigger default font) scale rem: the panel still fits."""
    open_demo(page, chat_server)
    page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")
    open_with_keyboard(page)
    wait_for_welcome(page)
    assert_no_horizontal_scroll(page)
    assert_inside_viewport(page, ".polku-panel")
    assert_inside_viewport(page, ".polku-send")
    size = page.locator("textarea.polku-input").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 32, "text follows the root font size"


def test_focus_is_clearly_visible(page, chat_server):
    open_demo(page, chat_server)
    tab_to(page, ".polku-launcher")
    checks = []
    for selector in (".polku-launcher",):
        checks.append((selector, _focus_ring(page)))
    page.keyboard.press("Enter")
    wait_for_welcome(page)
    tab_to(page, ".polku-quick button")
    checks.append((".polku-quick button", _focus_ring(page)))
    tab_to(page, "textarea.polku-input")
    checks.append(("textarea", _focus_ring(page)))
    tab_to(page, ".polku-lang")
    checks.append((".polku-lang (on the header colour)", _focus_ring(page)))
    for selector, ring in checks:
        assert ring["style"] == "solid" and ring["width"] >= 2, (selector, ring)
        # The ring's colour against the white panel (outer ring) ...
        assert contrast_ratio(parse_rgb(ring["colour"]), (255, 255, 255)) >= 3, (selector, ring)
        # ... and its white inner band against the element's surroundings.
        assert "255, 255, 255" in ring["shadow"] or "rgb(255, 255, 255)" in ring["shadow"], (selector, ring)


def _focus_ring(page) -> dict:
    return page.evaluate(f"""() => {{
      const a = ({DEEP_ACTIVE_JS})();
      const s = getComputedStyle(a);
      return {{ style: s.outlineStyle, width: parseFloat(s.outlineWidth), colour: s.outlineColor,
               shadow: s.boxShadow, visible: a.matches(':focus-visible') }};
    }}""")


def test_reduced_motion_turns_animations_off(new_page, chat_server):
    page = new_page(reduced_motion="reduce")
    open_demo(page, chat_server)
    page.locator(".polku-launcher").click()
    animation = page.locator(".polku-panel").evaluate("e => getComputedStyle(e).animationName")
    assert animation == "none"


def test_message_written_offline_survives_a_reload_and_is_sent_after_reconnect(new_page, own_chat_server, widget_bundle):
    server = own_chat_server
    page = new_page()
    # The page and bundle come from disk, so that the page loads while the server is down.
    demo_html = (widget_bundle.parent.parent / "demo" / "index.html").read_text(encoding="utf-8")
    page.route(server.url + "/demo", lambda route: route.fulfill(
        status=200, content_type="text/html; charset=utf-8", body=demo_html))
    page.route(server.url + "/widget/polku-chat.js", lambda route: route.fulfill(
        status=200, content_type="text/javascript", path=str(widget_bundle)))

    open_demo(page, server.url)
    open_with_keyboard(page)
    wait_for_welcome(page)

    server.stop()
    status = page.locator(".polku-status")
    expect(status).to_contain_text("Yhteys katkesi, yhdistetään uudelleen…")
    send_with_enter(page, "Kirjoitin tämän, kun yhteys oli poikki.")
    mine = page.locator(RESIDENT_MESSAGES).last
    expect(mine).to_contain_text("Kirjoitin tämän")
    expect(mine.locator(".polku-msg__state")).to_have_text("Ei vielä lähetetty")
    assert len(page.evaluate("() => JSON.parse(sessionStorage.getItem('polku-chat:v1:outbox'))")) == 1

    page.reload()  # mid-send: only the browser's storage has the message now
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")
    expect(mine).to_contain_text("Kirjoitin tämän")
    expect(mine.locator(".polku-msg__state")).to_have_text("Ei vielä lähetetty")

    server.start()
    expect(mine.locator(".polku-msg__state")).to_have_count(0, timeout=30_000)
    wait_for_answer(page)
    page.wait_for_function("() => JSON.parse(sessionStorage.getItem('polku-chat:v1:outbox')).length === 0")

    # Stored once on the server: a fresh page shows it once, from the server's history.
    page.reload()
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")
    page.wait_for_timeout(1500)
    expect(page.locator(RESIDENT_MESSAGES).filter(has_text="Kirjoitin tämän")).to_have_count(1)


# Asking for a counsellor with nobody online (the queue, leaving it, answers meanwhile):
# tests/browser/test_never_silent.py, on servers whose chat hours do not depend on the hour.


def test_an_expired_session_starts_a_fresh_transcript(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    send_with_enter(page, QUESTION_FI)
    wait_for_answer(page)
    # As if the server had forgotten the conversation (expired): an id it does not know.
    page.evaluate("() => sessionStorage.setItem('polku-chat:v1:session', JSON.stringify('expired-' + 'x'.repeat(30)))")
    page.reload()
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")
    expect(page.locator(".polku-status")).to_contain_text("Aiempi keskustelu oli vanhentunut")
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(0)
    wait_for_welcome(page)
    assert not session_value(page, "session").startswith("expired-")


# --- Callback request ----------------------------------------------------------------

CALLBACK_FORM = "form.polku-callback"
CALLBACK_BUTTON = "Pyydä soittoa"


def _ask_for_a_counsellor(page) -> None:
    """Nobody is online in the tests: the unavailable notice offers the callback quick reply."""
    wait_for_welcome(page)
    send_with_enter(page, QUESTION_FI)
    wait_for_answer(page)
    page.get_by_role("button", name="Haluan jutella ohjaajan kanssa").last.click()
    expect(page.get_by_role("button", name=CALLBACK_BUTTON)).to_be_visible()


def _open_callback_form(page) -> None:
    button = page.get_by_role("button", name=CALLBACK_BUTTON)
    button.focus()
    page.keyboard.press("Enter")
    expect(page.locator(CALLBACK_FORM)).to_be_visible()
    assert active_matches(page, "#polku-cb-phone"), "the form opens with the focus in the phone field"


def _stored_callbacks(server, phone: str) -> list[tuple]:
    with sqlite3.connect(server.data_dir / "polku.db") as db:
        return db.execute("SELECT phone, name, preferred_time, status, consent_at FROM callback_requests"
                          " WHERE phone = ?", (phone,)).fetchall()


def test_callback_request_from_the_unavailable_notice(page, chat_server_process):
    server = chat_server_process
    phone = "040 765 4321"
    spy_on_socket(page)
    open_demo(page, server.url)
    open_with_keyboard(page)
    _ask_for_a_counsellor(page)
    residents_before = page.locator(RESIDENT_MESSAGES).count()
    _open_callback_form(page)
    form = page.locator(CALLBACK_FORM)

    # Inside the panel, labelled, in place of the message box; the payload was not sent as a message.
    expect(form).to_have_accessible_name("Pyydä soittoa")
    expect(page.locator("form.polku-composer")).to_be_hidden()
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(residents_before)
    phone_field = form.get_by_label("Puhelinnumero (pakollinen)")
    expect(phone_field).to_have_attribute("type", "tel")
    expect(phone_field).to_have_attribute("autocomplete", "tel")
    expect(form.get_by_label("Nimi (vapaaehtoinen)")).to_be_visible()
    expect(form.get_by_label("Milloin sinulle sopii soittaa? (vapaaehtoinen)")).to_be_visible()
    consent = form.get_by_role("checkbox")
    expect(consent).not_to_be_checked()
    expect(consent).to_have_accessible_name(
        "Annan luvan: Polku tallentaa puhelinnumeroni, jotta ohjaaja voi soittaa minulle, ja poistaa numeron puhelun jälkeen.")

    # Nothing filled in: the phone field is the first invalid one and gets the focus.
    form.get_by_role("button", name="Lähetä pyyntö").click()
    expect(phone_field).to_have_attribute("aria-invalid", "true")
    expect(form.locator("#polku-cb-phone-error")).to_have_text("Kirjoita puhelinnumerosi.")
    assert "polku-cb-phone-error" in phone_field.get_attribute("aria-describedby")
    assert active_matches(page, "#polku-cb-phone")

    # A phone number but no consent: the consent box says why, with the focus on it.
    page.keyboard.type(phone)
    form.get_by_label("Nimi (vapaaehtoinen)").fill("Maija")
    form.get_by_label("Milloin sinulle sopii soittaa? (vapaaehtoinen)").fill("huomenna aamulla")
    expect(phone_field).not_to_have_attribute("aria-invalid", "true")  # fixed as typed
    form.get_by_role("button", name="Lähetä pyyntö").click()
    expect(consent).to_have_attribute("aria-invalid", "true")
    expect(consent).to_have_accessible_description("Tarvitsemme luvan numerosi tallentamiseen. Valitse ruutu, jos annat luvan.")
    assert active_matches(page, "#polku-cb-consent")
    page.wait_for_timeout(300)
    assert sent_events(page, "callback_request") == [], "nothing is sent before the form is right"
    assert _stored_callbacks(server, phone) == []
    expect(phone_field).to_have_value(phone)  # nothing typed is lost

    violations = run_axe(page)
    assert violations == [], violations

    page.keyboard.press("Space")  # the focus is on the box
    expect(consent).to_be_checked()
    expect(consent).not_to_have_attribute("aria-invalid", "true")
    tab_to(page, ".polku-callback button[type=submit]", max_presses=5)
    page.keyboard.press("Enter")

    confirmation = page.locator(MESSAGES).filter(has_text="Kiitos! Polun ohjaaja soittaa sinulle")
    expect(confirmation).to_have_count(1)
    expect(confirmation).to_contain_text("numeroon, joka päättyy 321, mahdollisimman pian aukioloaikana.")
    expect(page.locator(".polku-panel > .polku-sr[role=status]")).to_contain_text("Kiitos! Polun ohjaaja")
    expect(form).to_be_hidden()
    expect(page.locator("form.polku-composer")).to_be_visible()
    assert active_matches(page, "textarea.polku-input")
    expect(page.get_by_role("button", name=CALLBACK_BUTTON)).to_be_hidden()  # done: no second request

    assert sent_events(page, "callback_request") == [{
        "session_id": session_value(page, "session"), "phone": phone, "name": "Maija",
        "preferred_time": "huomenna aamulla", "consent": True}]
    rows = _stored_callbacks(server, phone)
    assert len(rows) == 1 and rows[0][1:4] == ("Maija", "huomenna aamulla", "open") and rows[0][4], rows
    storage = all_session_storage(page)
    for secret in (phone, phone.replace(" ", ""), "765 4321", "Maija", "huomenna aamulla"):
        assert secret not in storage, f"{secret!r} is in sessionStorage"

    # The confirmation is the widget's own: it stays in its place after a reload.
    page.reload()
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")
    page.wait_for_timeout(1500)  # the history answer merges in
    expect(confirmation).to_have_count(1)
    expect(page.locator(MESSAGES).last).to_contain_text("Kiitos! Polun ohjaaja")


def test_callback_form_cancel_and_escape_return_the_focus(page, chat_server):
    open_demo(page, chat_server)
    open_with_keyboard(page)
    _ask_for_a_counsellor(page)
    form = page.locator(CALLBACK_FORM)

    _open_callback_form(page)
    page.keyboard.type("040 111 2222")
    page.keyboard.press("Escape")  # closes the form, not the chat
    expect(form).to_be_hidden()
    expect(page.locator(".polku-panel")).to_be_visible()
    assert active_matches(page, ".polku-quick button"), "the focus goes back to the quick reply"

    _open_callback_form(page)
    expect(form.get_by_label("Puhelinnumero (pakollinen)")).to_have_value("040 111 2222")  # kept
    tab_to(page, ".polku-callback button[type=button]", max_presses=8)
    page.keyboard.press("Enter")
    expect(form).to_be_hidden()
    assert active_matches(page, ".polku-quick button")
    page.keyboard.press("Escape")  # outside the form Escape closes the chat as before
    expect(page.locator(".polku-panel")).to_be_hidden()


def test_callback_refused_by_the_server_shows_in_the_form(page, chat_server_process):
    server = chat_server_process
    phone = "040 222 3333"
    spy_on_socket(page)
    open_demo(page, server.url)
    open_with_keyboard(page)
    _ask_for_a_counsellor(page)
    _open_callback_form(page)
    form = page.locator(CALLBACK_FORM)
    form.get_by_label("Puhelinnumero (pakollinen)").fill(phone)
    form.get_by_role("checkbox").check()
    # As if the widget had sent something the server cannot use: it answers callback_invalid.
    page.evaluate("() => { window.__polkuTamper = (f) => f.replace('\"consent\":true', '\"consent\":false'); }")
    send = form.get_by_role("button", name="Lähetä pyyntö")
    send.click()
    alert = form.locator("[role=alert]")
    expect(alert).to_contain_text("Soittopyyntöä ei voitu tallentaa.")
    expect(alert).to_contain_text("Tietosi ovat tallessa lomakkeessa.")
    expect(form.get_by_label("Puhelinnumero (pakollinen)")).to_have_value(phone)
    expect(form.get_by_role("checkbox")).to_be_checked()
    expect(send).not_to_have_attribute("aria-disabled", "true")
    assert _stored_callbacks(server, phone) == []

    page.evaluate("() => { window.__polkuTamper = null; }")
    send.click()
    expect(page.locator(MESSAGES).filter(has_text="päättyy 333")).to_have_count(1)
    expect(form).to_be_hidden()
    assert len(_stored_callbacks(server, phone)) == 1


@pytest.mark.parametrize("context", [
    {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2},
    {"viewport": {"width": 640, "height": 400}, "device_scale_factor": 2},  # 1280 x 800 at 200 % zoom
], ids=["phone-360", "zoom-200"])
def test_callback_form_fits_a_phone_and_200_percent_zoom(new_page, chat_server, context):
    page = new_page(**context)
    open_demo(page, chat_server)
    open_with_keyboard(page)
    _ask_for_a_counsellor(page)
    _open_callback_form(page)
    form = page.locator(CALLBACK_FORM)
    form.get_by_role("button", name="Lähetä pyyntö").click()  # with its errors, the form is at its tallest
    expect(form.locator(".polku-field__error").first).to_be_visible()
    assert_no_horizontal_scroll(page)
    assert_inside_viewport(page, ".polku-panel")
    overflowing = page.locator(".polku-panel").evaluate(
        "p => [...p.querySelectorAll('*:not(.polku-sr)')].filter(e => e.scrollWidth > e.clientWidth + 1"
        " && getComputedStyle(e).overflowX !== 'visible').map(e => e.className)")
    assert not overflowing, f"parts of the panel scroll sideways: {overflowing}"
    for control in ("#polku-cb-phone", "#polku-cb-consent", ".polku-callback button[type=submit]",
                    ".polku-callback button[type=button]"):
        page.locator(control).scroll_into_view_if_needed()
        assert_inside_viewport(page, control)
    sizes = form.locator("button").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.textContent.trim(), r.width, r.height]; })")
    assert all(w >= 44 and h >= 44 for _, w, h in sizes), sizes
    violations = run_axe(page)
    assert violations == [], violations
    save_screenshot(page, f"widget-callback-{context['viewport']['width']}.png")


def test_a_message_always_refused_as_busy_is_given_back_after_a_few_retries(page, chat_server):
    """server_busy is retried with backoff (5, 15, 45 s), not for as long as the page is open:
    then the resident reads what happened and what to do, with their text back in the input."""
    import json
    import re

    sent: list[str] = []

    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_page(message) -> None:
            if isinstance(message, str) and message.startswith('42["user_uttered"'):
                client_id = json.loads(message[2:])[1]["customData"]["client_id"]
                sent.append(client_id)
                ws.send("42" + json.dumps(["error", {"code": "server_busy", "client_id": client_id,
                                                     "message": "Palvelussa on juuri nyt ruuhkaa."}]))
            else:
                server.send(message)
        ws.on_message(from_page)

    page.route_web_socket(re.compile(r".*/socket\.io/.*"), route)
    page.clock.install()
    open_demo(page, chat_server)
    open_with_keyboard(page)
    wait_for_welcome(page)
    text = "Tämä viesti ei mene koskaan perille."
    send_with_enter(page, text)
    expect(page.locator(".polku-error")).to_contain_text("ruuhkaa")
    for _ in range(24):  # 2 minutes of the page staying open, 5 s at a time (the socket keeps up)
        page.clock.run_for(5_000)
        page.wait_for_timeout(250)
    error = page.locator(".polku-error")
    expect(error).to_contain_text("ei saatu perille")
    expect(error).to_contain_text("Tekstisi on tallessa")
    expect(page.locator("textarea.polku-input")).to_have_value(text)
    assert session_value(page, "outbox") == []
    tries = len(sent)
    # The first send and 3 retries (a resend of one not answered within 15 s may come on top).
    assert 4 <= tries <= 6 and len(set(sent)) == 1, sent
    for _ in range(10):  # 10 more minutes: nothing is sent again
        page.clock.run_for(60_000)
        page.wait_for_timeout(100)
    assert len(sent) == tries  # no more retries while the page stays open
