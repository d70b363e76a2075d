"""The contract's compatibility promise, in a real browser: the stock Rasa
widget `rasa-webchat` 1.0.x (tests/browser/rasa_webchat/node_modules, installed by ./polku test
of widget/) chats with our chat server unchanged.

The page is served on the chat server's own origin (an allowed origin) by
Playwright: chat_server/ knows nothing of it. It loads rasa-webchat's UMD
bundle (lib/index.js, `window.WebChat`) and starts it the way its README says,
with `WebChat.default({...}, null)`. No initPayload: our server greets a new
session by itself (the welcome notice), so rasa-webchat's null initPayload is
only a `user_uttered` with no message, which the server refuses with an
`error` event that rasa-webchat ignores. rasa-webchat keeps the session id
and the transcript in localStorage (`chat_session`), which survives a reload
in the same browser context.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import socketio
import yaml
from playwright.sync_api import Page, expect

from bot.settings import PROJECT_ROOT

pytestmark = pytest.mark.browser

RASA_WEBCHAT_JS = Path(__file__).resolve().parent / "rasa_webchat" / "node_modules" / "rasa-webchat" / "lib" / "index.js"
PAGE_PATH = "/rasa-webchat-test/"
BUNDLE_PATH = "/rasa-webchat-test/rasa-webchat.js"

# POLKU_BROWSER_RASA=closed (conftest.py): the bot answers "cannot answer right now".
CLOSED_PORT_BOT = os.environ.get("POLKU_BROWSER_RASA") == "closed" and not os.environ.get("POLKU_BROWSER_RASA_URL")

QUESTION = "miten haen asumistukea"
# The new session's welcome notice, in Finnish.
WELCOME = yaml.safe_load((PROJECT_ROOT / "training_data" / "responses.yml").read_text(encoding="utf-8"))["welcome"]
WELCOME_FI = WELCOME["text"]["fi"].split(":")[0]  # "Hei! Tämä on Polku-chatin automaattinen neuvontabotti"
WELCOME_REPLIES_FI = [reply["title"]["fi"] for reply in WELCOME["quick_replies"]]

LAUNCHER = ".rw-launcher"
CONVERSATION = ".rw-conversation-container"
INPUT = ".rw-sender .rw-new-message"
# Message texts (the bot's "typing" dots are a .rw-response without one).
CLIENT_MESSAGES = ".rw-messages-container .rw-client .rw-message-text"
BOT_MESSAGES = ".rw-messages-container .rw-response .rw-message-text"
MESSAGES = ".rw-messages-container .rw-message-text"
QUICK_REPLIES = ".rw-messages-container .rw-replies .rw-reply"

PAGE_HTML = """<!doctype html>
<html lang="fi">
<head><meta charset="utf-8"><title>rasa-webchat against Polku chat</title></head>
<body>
<main><h1>rasa-webchat against Polku chat</h1></main>
<script src="%(bundle)s"></script>
<script>
  window.polkuSocketEvents = [];
  const record = (name) => (payload) => window.polkuSocketEvents.push([name, payload]);
  WebChat.default({
    socketUrl: window.location.origin,
    socketPath: "/socket.io/",
    customData: { language: "fi" },
    title: "Polku",
    inputTextFieldHint: "Kirjoita viesti",
    // Watching only: rasa-webchat adds these listeners next to its own.
    onSocketEvent: { bot_uttered: record("bot_uttered"), error: record("error") },
  }, null);
</script>
</body>
</html>
"""


def serve_test_page(page: Page, base_url: str) -> None:
    """Answer the page and the bundle on the chat server's origin; everything else
    (Socket.IO) goes to the real server."""
    if not RASA_WEBCHAT_JS.is_file():
        pytest.fail("tests/browser/rasa_webchat/node_modules is missing: run `npm ci` in tests/browser/rasa_webchat/ (./polku test does)")
    html = PAGE_HTML % {"bundle": BUNDLE_PATH}

    def handle(route):
        path = route.request.url[len(base_url):].split("?")[0]
        if path == BUNDLE_PATH:
            route.fulfill(path=str(RASA_WEBCHAT_JS), content_type="text/javascript; charset=utf-8")
        elif path == PAGE_PATH:
            route.fulfill(body=html, content_type="text/html; charset=utf-8")
        else:
            route.fulfill(status=404, body="not found")

    page.context.route(base_url + PAGE_PATH + "**", handle)


def open_rasa_webchat(page: Page, base_url: str) -> None:
    page.goto(base_url + PAGE_PATH)
    launcher = page.locator(LAUNCHER)
    expect(launcher).to_be_visible(timeout=20_000)  # hidden until the socket is connected
    if not page.locator(CONVERSATION).is_visible():
        launcher.click()
    expect(page.locator(CONVERSATION)).to_be_visible()


def stored_session(page: Page) -> dict:
    return page.evaluate("() => JSON.parse(localStorage.getItem('chat_session'))")


def server_history(base_url: str, session_id: str) -> list[dict]:
    """The conversation as the server has it, asked for over a socket of our own."""
    with socketio.SimpleClient() as sio:
        sio.connect(base_url, transports=["websocket"])
        sio.emit("session_request", {"session_id": session_id})
        while True:
            name, *args = sio.receive(timeout=10)
            if name == "session_confirm":
                assert args[0] == session_id, "the session rasa-webchat kept is not resumed"
                break
        sio.emit("history_request", {"session_id": session_id})
        while True:
            name, *args = sio.receive(timeout=10)
            if name == "history":
                return args[0]["messages"]


def send(page: Page, text: str) -> None:
    page.locator(INPUT).fill(text)
    page.locator(INPUT).press("Enter")


def wait_for_answer(page: Page, shown_before: int, restored: int = 0) -> str:
    """Wait until the bot shows more than shown_before messages and every bot_uttered
    received so far is shown (rasa-webchat shows them one by one, after a delay);
    restored: bot messages rasa-webchat restored from its storage at page load.
    Returns the text of the last one."""
    page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length > n",
                           arg=[BOT_MESSAGES, shown_before], timeout=30_000)
    page.wait_for_timeout(500)  # a second message of the same turn would be on its way by now
    page.wait_for_function(
        """([sel, restored]) => document.querySelectorAll(sel).length ===
             restored + window.polkuSocketEvents.filter(([name]) => name === "bot_uttered").length""",
        arg=[BOT_MESSAGES, restored], timeout=30_000)
    return page.locator(BOT_MESSAGES).last.inner_text().strip()


def socket_errors(page: Page) -> list[dict]:
    return [payload for name, payload in page.evaluate("() => window.polkuSocketEvents") if name == "error"]


def assert_only_the_null_init_payload_refused(page: Page) -> None:
    """rasa-webchat sends its initPayload (null by default) as a `user_uttered`
    when the chat is first opened: the server refuses that one, and nothing else."""
    errors = socket_errors(page)
    assert [e["code"] for e in errors] in ([], ["malformed_payload"]), errors


def test_typed_question_and_quick_reply_are_answered(page, chat_server):
    serve_test_page(page, chat_server)
    open_rasa_webchat(page, chat_server)

    # A new session: the server's welcome notice is rasa-webchat's first message
    # (text + quick_replies, metadata aside: rasa-webchat's "buttons" message).
    bot = page.locator(BOT_MESSAGES)
    expect(bot.first).to_contain_text(WELCOME_FI, timeout=20_000)
    expect(bot).to_have_count(1)

    # Its quick replies render as rasa-webchat's reply controls (`.rw-reply`:
    # rasa-webchat's own markup is a clickable div, not a <button>). Clicking one
    # sends its payload, shows its title as the resident's message, and is answered.
    replies = page.locator(QUICK_REPLIES)
    expect(replies).to_have_text(WELCOME_REPLIES_FI)
    replies.first.click()
    expect(page.locator(CLIENT_MESSAGES)).to_have_text([WELCOME_REPLIES_FI[0]])
    assert wait_for_answer(page, 1)

    # A typed Finnish question gets an answer in the message list.
    shown = bot.count()
    send(page, QUESTION)
    expect(page.locator(CLIENT_MESSAGES)).to_have_text([WELCOME_REPLIES_FI[0], QUESTION])
    answer = wait_for_answer(page, shown)
    assert answer and WELCOME_FI not in answer
    if not CLOSED_PORT_BOT:
        assert "asumistu" in answer.lower(), f"the real bot should answer about housing allowance: {answer}"
    assert_only_the_null_init_payload_refused(page)


def test_reload_resumes_the_same_session(page, chat_server):
    serve_test_page(page, chat_server)
    open_rasa_webchat(page, chat_server)
    bot = page.locator(BOT_MESSAGES)
    expect(bot.first).to_contain_text(WELCOME_FI, timeout=20_000)
    session_id = stored_session(page)["session_id"]
    assert isinstance(session_id, str) and len(session_id) == 43, "session_confirm is the bare id"
    send(page, QUESTION)
    wait_for_answer(page, 1)
    before = page.locator(MESSAGES).all_inner_texts()
    restored = bot.count()

    # After a reload rasa-webchat sends session_request with the id it kept; the
    # same id back means resumed: no new welcome notice, the transcript it kept
    # stays, and the conversation goes on in the same session.
    page.reload()
    expect(page.locator(LAUNCHER)).to_be_visible(timeout=20_000)
    if not page.locator(CONVERSATION).is_visible():
        page.locator(LAUNCHER).click()
    expect(page.locator(CLIENT_MESSAGES)).to_have_text([QUESTION])
    page.wait_for_timeout(1500)  # time for a welcome notice, which a resumed session must not get
    assert page.evaluate("() => window.polkuSocketEvents") == []
    assert page.locator(MESSAGES).all_inner_texts() == before
    assert stored_session(page)["session_id"] == session_id
    send(page, "entä toimeentulotuki")
    assert wait_for_answer(page, restored, restored=restored)
    assert_only_the_null_init_payload_refused(page)

    # The server agrees: both messages are in that one conversation.
    history = server_history(chat_server, session_id)
    assert [m["text"] for m in history if m["sender"] == "resident"] == [QUESTION, "entä toimeentulotuki"]
    assert [m["sender"] for m in history].count("system") == 1, "one welcome notice, not one per connection"
