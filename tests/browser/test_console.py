"""The counsellor console in real headless Chromium against the real chat
server process: a resident (the widget, one browser context) asks for a
person, a counsellor (another context) signs in, picks the chat up, they talk
both ways, the counsellor closes it with a tag and the resident is told. The
sign-in page and the console pass axe-core's WCAG 2.1 A/AA rules, work by
keyboard and reflow at 200 % zoom."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import socketio
from playwright.sync_api import expect

from .conftest import ChatServerProcess
from .helpers import (
    assert_no_horizontal_scroll, open_demo, open_with_keyboard, run_axe, save_screenshot, second_factor, send_with_enter,
    wait_for_welcome,
)

pytestmark = pytest.mark.browser

PASSWORD = "oikein-hyvä-salasana-42"


@pytest.fixture(scope="module")
def console_server(widget_bundle, browser_rasa_url, tmp_path_factory):
    """A chat server of this module's own, with counsellor Anna (and the chat open at any hour)."""
    server = ChatServerProcess(tmp_path_factory.mktemp("console-chat"), browser_rasa_url,
                               POLKU_CHAT_ALWAYS_OPEN="1")
    server.create_user("anna", "Anna", "counsellor", PASSWORD)
    server.create_user("ville", "Ville", "admin", PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def sign_in(page, base_url: str, username: str = "anna") -> None:
    page.goto(base_url + "/console")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Käyttäjätunnus").fill(username)
    page.get_by_label("Salasana").fill(PASSWORD)
    page.get_by_label("Salasana").press("Enter")
    second_factor(page, base_url, username)
    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "connected")


def socket_resident(base_url: str, text: str, client_id: str) -> tuple[socketio.Client, str]:
    """A resident on the plain Socket.IO protocol (no browser needed) who says `text`: (client, session id)."""
    client = socketio.Client(reconnection=False)
    confirmed = []
    client.on("session_confirm", confirmed.append)
    client.connect(base_url, transports=["websocket"], wait_timeout=10)
    client.emit("session_request", {"session_id": None, "language": "fi"})
    for _ in range(100):
        if confirmed:
            break
        client.sleep(0.05)
    say(client, confirmed[0], text, client_id)
    return client, confirmed[0]


def say(client: socketio.Client, session_id: str, text: str, client_id: str) -> None:
    client.emit("user_uttered", {"message": text, "session_id": session_id,
                                 "customData": {"language": "fi", "client_id": client_id}})


def crisis_resident(base_url: str, client_id: str = "crisis-1") -> socketio.Client:
    """A resident in crisis, queued at the front (the crisis lexicon needs no Rasa)."""
    return socket_resident(base_url, "mulla on halu kuolla", client_id)[0]


def ask_for_a_person(page) -> None:
    """Nobody is online yet (chat hours): the bot offers to wait in the queue; the resident does."""
    send_with_enter(page, "haluan puhua ihmisen kanssa")
    wait = page.get_by_role("button", name="Jään jonoon")
    try:
        expect(wait.last).to_be_visible(timeout=8_000)
    except AssertionError:
        # Without a trained model (POLKU_BROWSER_RASA=closed) the bot offers the button instead.
        page.get_by_role("button", name="Haluan jutella ohjaajan kanssa").last.click()
        expect(wait.last).to_be_visible()
    wait.last.click()
    expect(page.locator(".polku-handoff")).to_be_visible()


def test_sign_in_page_is_accessible_and_refuses_a_wrong_password(new_page, console_server):
    page = new_page(bypass_csp=True)  # the pages allow only their own scripts; axe is injected
    page.goto(console_server.url + "/login")
    expect(page.locator("html")).to_have_attribute("lang", "fi")
    assert run_axe(page) == []
    page.get_by_label("Käyttäjätunnus").fill("anna")
    page.get_by_label("Salasana").fill("väärin-väärin-väärin")
    page.get_by_role("button", name="Kirjaudu").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Käyttäjätunnus tai salasana on väärin")
    assert page.evaluate("() => document.activeElement.id") == "login-error"  # read out first
    assert run_axe(page) == []
    page.get_by_role("link", name="Svenska").click()
    expect(page.get_by_label("Användarnamn")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "sv")


def test_resident_and_counsellor_talk_and_the_counsellor_closes(new_page, console_server):
    base = console_server.url
    resident = new_page()
    open_demo(resident, base)
    open_with_keyboard(resident)
    wait_for_welcome(resident)
    ask_for_a_person(resident)
    crisis = crisis_resident(base)
    try:
        counsellor = new_page(bypass_csp=True)
        sign_in(counsellor, base)
        queue = counsellor.locator("#queue-list .chat-item")
        expect(queue).to_have_count(2)
        # Crisis first, visibly and in words.
        expect(queue.first).to_have_class(re.compile("chat-item--crisis"))
        expect(queue.first).to_contain_text("Kriisi")
        expect(queue.nth(1)).not_to_have_class(re.compile("chat-item--crisis"))
        expect(counsellor.locator("#queue-heading")).to_contain_text("(2)")
        # The resident now sees the queue, not "nobody online".
        expect(resident.locator(".polku-handoff")).to_contain_text("jonossa")

        take = queue.nth(1).get_by_role("button", name=re.compile("Ota keskustelu"))
        take.focus()
        counsellor.keyboard.press("Enter")
        expect(counsellor.locator("#mine-list .chat-item")).to_have_count(1)
        expect(counsellor.locator("#message")).to_be_focused()
        transcript = counsellor.locator("#transcript")
        expect(transcript.locator(".msg--resident").first).to_contain_text("haluan puhua ihmisen kanssa")
        expect(transcript.locator(".msg--bot, .msg--system").first).to_be_visible()  # the bot's part too
        expect(resident.locator(".polku-handoff")).to_contain_text("Anna")

        # Counsellor -> resident, with a quick insert.
        counsellor.get_by_label("Pikavastaus").select_option(label="Tervehdys")
        counsellor.get_by_role("button", name="Lisää viestiin").click()
        expect(counsellor.locator("#message")).to_have_value(re.compile(r"^Hei, olen Anna Polun"))
        counsellor.locator("#message").press("Enter")
        from_counsellor = resident.locator(".polku-msg--counsellor")
        expect(from_counsellor).to_have_count(1)
        expect(from_counsellor).to_contain_text("Ohjaaja Anna")
        expect(from_counsellor).to_contain_text("Hei, olen Anna Polun sosiaaliohjauksesta")

        # Resident -> counsellor, typing indicator first.
        resident.locator("textarea.polku-input").press_sequentially("Minulla on vuokra", delay=20)
        expect(counsellor.locator("#typing")).to_have_text("Asukas kirjoittaa…")
        resident.locator("textarea.polku-input").press_sequentially(" rästissä.", delay=10)
        resident.locator("textarea.polku-input").press("Enter")
        expect(transcript.locator(".msg--resident").last).to_contain_text("Minulla on vuokra rästissä.")

        # Counsellor typing reaches the widget too.
        counsellor.locator("#message").press_sequentially("Selvitetään", delay=20)
        expect(resident.locator(".polku-typing")).to_contain_text("Ohjaaja kirjoittaa")
        counsellor.locator("#message").fill("")

        # An internal note stays in the console.
        counsellor.get_by_label("Uusi muistiinpano").fill("Vuokravelka, ohjaa asumisneuvontaan")
        counsellor.get_by_role("button", name="Tallenna muistiinpano").click()
        expect(counsellor.locator("#notes li")).to_have_count(1)

        assert run_axe(counsellor) == []
        counsellor.wait_for_timeout(300)
        save_screenshot(counsellor, "console-desktop.png", full_page=True)

        # Close with a tag; the resident is told and is with the bot again.
        counsellor.get_by_role("button", name="Päätä keskustelu").click()
        dialog = counsellor.get_by_role("dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Asuminen ja asunnottomuus").check()
        assert run_axe(counsellor) == []
        dialog.get_by_role("button", name="Päätä keskustelu").click()
        expect(dialog).to_be_hidden()
        expect(resident.locator(".polku-handoff")).to_contain_text("Ohjaaja päätti keskustelun")
        expect(counsellor.locator("#mine-list .chat-item")).to_have_count(0)
        expect(counsellor.locator("#chat-notice")).to_contain_text("päätetty")
        assert "Vuokravelka" not in resident.content()
    finally:
        crisis.disconnect()


def test_console_by_keyboard_and_at_200_percent_zoom(new_page, console_server):
    page = new_page(viewport={"width": 640, "height": 400}, bypass_csp=True)  # 1280 x 800 at 200 %
    sign_in(page, console_server.url)
    assert_no_horizontal_scroll(page)
    save_screenshot(page, "console-zoom200.png", full_page=True)
    # The first Tab shows the skip link, which leads to the chat.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "focus must be clearly visible"
    assert run_axe(page) == []
    admin = new_page(bypass_csp=True)
    sign_in(admin, console_server.url, "ville")
    expect(admin.get_by_role("link", name="Lokitiedot")).to_be_visible()
    admin.get_by_role("link", name="Lokitiedot").click()
    expect(admin.get_by_role("heading", name="Lokitiedot")).to_be_visible()
    expect(admin.locator("table.audit")).to_contain_text("sign_in")
    assert run_axe(admin) == []


QUEUE_IDS_JS = "() => [...document.querySelectorAll('#queue-list .chat-item')].map(li => li.dataset.conversationId)"
# Which control of a chat row has focus (by class names the console has had from the start).
CONTROL_JS = """(node) => node.matches('.chat-item__open') ? 'open'
  : node.matches('.chat-item__actions button') ? 'pick-up' : node.tagName"""
# The focused element is remembered in the page, and so are the rows (to see they are the same nodes later).
REMEMBER_FOCUS_JS = f"""() => {{
  window.__focused = document.activeElement;
  window.__rows = [...document.querySelectorAll('.chat-item')];
  return ({CONTROL_JS})(document.activeElement);
}}"""
FOCUS_KEPT_JS = f"""() => ({{
  same: document.activeElement === window.__focused,
  connected: window.__focused.isConnected,
  control: ({CONTROL_JS})(document.activeElement),
  chat: (document.activeElement.closest('.chat-item') || {{dataset: {{}}}}).dataset.conversationId || null,
  rowsKept: window.__rows.filter(r => r.isConnected).length,
  rows: window.__rows.length,
}})"""


def new_queue_row(page, before: list[str]) -> str:
    """The id of the one conversation that has come to the queue since `before`."""
    expect(page.locator("#queue-list .chat-item")).to_have_count(len(before) + 1)
    (new,) = set(page.evaluate(QUEUE_IDS_JS)) - set(before)
    return new


def assert_focus_kept(page, control: str, conversation_id: str) -> None:
    kept = page.evaluate(FOCUS_KEPT_JS)
    assert kept["same"] and kept["connected"], f"focus moved: {kept}"
    assert (kept["control"], kept["chat"]) == (control, conversation_id), kept
    assert kept["rowsKept"] == kept["rows"], f"rows were rebuilt: {kept}"


def pick_up(page, conversation_id: str) -> None:
    page.locator(f'#queue-list .chat-item[data-conversation-id="{conversation_id}"]').get_by_role(
        "button", name=re.compile("^Ota keskustelu")).click()
    expect(page.locator(f'#mine-list .chat-item[data-conversation-id="{conversation_id}"]')).to_be_visible()
    expect(page.locator("#chat-heading")).to_contain_text(f"Keskustelu {conversation_id}")
    expect(page.locator("#message")).to_be_focused()  # picking up moves focus, on purpose


def test_focus_stays_put_while_the_queue_and_my_chats_change(new_page, console_server):
    """Keyboard focus on a chat in "my chats", or on a "Pick up" button, stays on that very
    control while an unread message arrives, other residents come to the queue and the
    waiting times tick on: the lists are updated in place, news goes to the live regions."""
    base = console_server.url
    residents = []

    def resident(text: str, client_id: str) -> tuple[socketio.Client, str]:
        client, session = socket_resident(base, text, client_id)
        residents.append(client)
        return client, session

    try:
        counsellor = new_page(bypass_csp=True)
        # Fake timers (running at the real pace), 40 s ahead: one 30-s tick of the waiting
        # times takes a chat queued now from "juuri tullut" to "odottanut 1 min".
        counsellor.clock.install(time=datetime.now() + timedelta(seconds=40))
        sign_in(counsellor, base)
        # Earlier tests of this module may have left chats in the queue: it is read once the
        # console's "hello" is answered (the close dialog's tag boxes come with it, after the queue).
        expect(counsellor.locator("#tag-options input").first).to_be_attached()
        queued = counsellor.evaluate(QUEUE_IDS_JS)

        # "My chats": two picked up, the second one open; focus on the first one's row.
        client_1, session_1 = resident("/request_counsellor", "focus-1-1")
        mine_1 = new_queue_row(counsellor, queued)
        pick_up(counsellor, mine_1)
        resident("/request_counsellor", "focus-2-1")
        pick_up(counsellor, new_queue_row(counsellor, queued))
        open_1 = counsellor.locator(f'#mine-list .chat-item[data-conversation-id="{mine_1}"] .chat-item__open')
        open_1.focus()
        assert counsellor.evaluate(REMEMBER_FOCUS_JS) == "open"
        say(client_1, session_1, "Onko siellä ketään?", "focus-1-2")
        expect(open_1.locator(".badge--unread")).to_have_text("1")
        expect(counsellor.locator("#announce-polite")).to_contain_text(f"Uusi viesti keskustelussa {mine_1}")
        assert_focus_kept(counsellor, "open", mine_1)

        # A resident asks for a person while focus is in "my chats".
        resident("/request_counsellor", "focus-a-1")
        a = new_queue_row(counsellor, queued)
        expect(counsellor.locator("#announce-polite")).to_contain_text("Uusi keskustelu jonossa")
        assert_focus_kept(counsellor, "open", mine_1)

        # The queue: focus on A's "Pick up" button.
        row_a = counsellor.locator(f'#queue-list .chat-item[data-conversation-id="{a}"]')
        expect(row_a.locator(".chat-item__meta")).to_contain_text("juuri tullut")
        row_a.get_by_role("button", name=re.compile("^Ota keskustelu")).focus()
        assert counsellor.evaluate(REMEMBER_FOCUS_JS) == "pick-up"

        # A resident in crisis comes to the front of the queue, before the focused row.
        resident("mulla on halu kuolla", "focus-b-1")
        b = new_queue_row(counsellor, queued + [a])
        ids = counsellor.evaluate(QUEUE_IDS_JS)
        assert ids.index(b) < ids.index(a)
        expect(counsellor.locator("#announce-urgent")).to_contain_text("Kriisikeskustelu jonossa")
        assert_focus_kept(counsellor, "pick-up", a)

        # Another one: after the focused row.
        resident("/request_counsellor", "focus-c-1")
        c = new_queue_row(counsellor, queued + [a, b])
        ids = counsellor.evaluate(QUEUE_IDS_JS)
        assert ids.index(c) > ids.index(a)
        expect(counsellor.locator("#queue-heading")).to_contain_text(f"({len(queued) + 3})")
        assert_focus_kept(counsellor, "pick-up", a)

        # The 30-s ticker: the waiting time's text changes, nothing else does. (Last: after
        # the jump the page's Socket.IO ping timeout is due sooner than the server's next ping.)
        counsellor.clock.fast_forward("00:30")
        expect(row_a.locator(".chat-item__meta")).to_contain_text("odottanut 1 min")
        assert_focus_kept(counsellor, "pick-up", a)
    finally:
        for client in residents:
            client.disconnect()


def test_a_password_alone_never_opens_the_console(new_page, console_server):
    """The first sign-in enrols an authenticator (QR code and the key as text), a wrong code is
    refused, and until the code is given the console and its socket stay shut."""
    base = console_server.url
    page = new_page(bypass_csp=True)  # axe is injected
    page.goto(base + "/console")
    page.get_by_label("Käyttäjätunnus").fill("ville")
    page.get_by_label("Salasana").fill(PASSWORD)
    page.get_by_label("Salasana").press("Enter")
    expect(page).to_have_url(re.compile(r"/login/(enrol|second-factor)"))
    # The password alone: the console sends the browser back to the sign-in page.
    other = page.context.new_page()
    other.goto(base + "/console")
    expect(other).to_have_url(re.compile(r"/login\?next="))
    other.close()
    if "/login/enrol" in page.url:
        expect(page.get_by_role("img", name="QR-koodi todennussovellukselle")).to_be_visible()
        expect(page.locator("#totp-secret")).to_have_text(re.compile(r"^([A-Z2-7]{4} ){7}[A-Z2-7]{4}$"))
        assert run_axe(page) == []
    page.get_by_label("Vahvistuskoodi").fill("000000")
    page.get_by_role("button", name="Vahvista").click()
    expect(page.get_by_role("alert")).to_contain_text("Koodi ei kelpaa")
    assert page.evaluate("() => document.activeElement.id") == "login-error"
    assert run_axe(page) == []
    codes = second_factor(page, base, "ville")
    if codes:
        assert len(codes) == 10 and len(set(codes)) == 10
    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "connected")


def test_an_idle_console_warns_lets_the_user_stay_then_signs_out(new_page, widget_bundle, browser_rasa_url,
                                                                  tmp_path):
    """Idle timeout of 70 s: the warning comes a minute before (10 s in), "stay signed in"
    starts the time again, and left alone the console ends on the sign-in page."""
    server = ChatServerProcess(tmp_path / "idle-chat", browser_rasa_url, POLKU_STAFF_IDLE_MINUTES=str(70 / 60))
    server.create_user("anna", "Anna", "counsellor", PASSWORD)
    server.start()
    try:
        page = new_page(bypass_csp=True)
        sign_in(page, server.url)
        dialog = page.get_by_role("alertdialog", name="Oletko vielä paikalla?")
        expect(dialog).to_be_visible(timeout=30_000)
        stay = page.get_by_role("button", name="Pysy kirjautuneena")
        expect(stay).to_be_focused()
        assert run_axe(page) == []
        stay.click()
        expect(dialog).to_be_hidden()
        left = page.evaluate("() => fetch('/session').then(r => r.json())")["idle_secs_left"]
        assert left > 60
        # Left alone: the warning again, then the sign-in page with the reason.
        expect(dialog).to_be_visible(timeout=30_000)
        expect(page).to_have_url(re.compile(r"/login\?expired=1"), timeout=90_000)
        expect(page.get_by_role("status")).to_contain_text("Istuntosi päättyi")
        page.goto(server.url + "/console")
        expect(page).to_have_url(re.compile(r"/login\?next="))
    finally:
        server.stop()
