"""Never a dead end in a real browser (issue 15): with no counsellor online, a
resident who asks for a person keeps getting answers and a clear next step,
in Finnish, Swedish and English.

Two servers of this module's own, whose chat hours do not depend on when the
test runs: one with no chat hours at all (closed: nobody is expected), one
with the chat always open (a counsellor is expected: the resident may wait in
the queue)."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from bot.settings import PROJECT_ROOT

from .conftest import ChatServerProcess
from .helpers import (
    MESSAGES, RESIDENT_MESSAGES, open_demo, open_with_keyboard, run_axe, send_with_enter,
    session_value, wait_for_answer, wait_for_welcome,
)

pytestmark = pytest.mark.browser

MARKS = re.compile(r"täydennä|fill in|fyll i|\[|\{")
# Per language: the switcher button, a request for a person, the counsellor quick reply,
# words of the one honest message, the call-back button, a follow-up question.
LANGUAGES = {
    "fi": ("Suomi", "haluan puhua ihmisen kanssa", "Haluan jutella ohjaajan kanssa",
           "ei ole ohjaajaa", "Pyydä soittoa", "miten haen asumistukea"),
    "sv": ("Svenska", "jag vill prata med en människa", "Jag vill chatta med en handledare",
           "ingen handledare", "Be om att bli uppringd", "hur ansöker jag om bostadsbidrag"),
    "en": ("English", "I want to talk to a person", "Chat with a counsellor",
           "No counsellor", "Request a call back", "how do I apply for housing allowance"),
}


def _server(tmp_path_factory, widget_bundle, rasa_url, name, **settings):
    data = tmp_path_factory.mktemp(name)
    training = data / "training_data"
    shutil.copytree(PROJECT_ROOT / "training_data", training)
    return ChatServerProcess(data / "chat", rasa_url, POLKU_TRAINING_DATA_DIR=str(training), **settings)


@pytest.fixture(scope="module")
def closed_server(widget_bundle, browser_rasa_url, tmp_path_factory):
    """No chat hours at all: whatever the hour, no counsellor is expected."""
    server = _server(tmp_path_factory, widget_bundle, browser_rasa_url, "closed-chat")
    facts = server.env["POLKU_TRAINING_DATA_DIR"] + "/service_facts.yml"
    with open(facts, encoding="utf-8") as handle:
        text = handle.read()
    text = re.sub(r"(?m)^  chat: .*$", "  chat:    {}", text)
    with open(facts, "w", encoding="utf-8") as handle:
        handle.write(text)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def open_server(widget_bundle, browser_rasa_url, tmp_path_factory):
    """The chat always open, nobody online: a counsellor is expected."""
    server = _server(tmp_path_factory, widget_bundle, browser_rasa_url, "open-chat", POLKU_CHAT_ALWAYS_OPEN="1")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _ask_for_a_person(page, request_text: str, button: str, answered) -> None:
    """Type the request; without a trained model (POLKU_BROWSER_RASA=closed) the bot
    cannot understand it and offers its counsellor button instead, which is pressed."""
    send_with_enter(page, request_text)
    wait_for_answer(page)
    try:
        expect(answered).to_be_visible(timeout=8_000)
    except AssertionError:
        page.get_by_role("button", name=button).last.click()
        expect(answered).to_be_visible(timeout=20_000)


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_no_counsellor_today_one_honest_message_and_the_bot_keeps_answering(new_page, closed_server, lang):
    page = new_page(bypass_csp=True)  # the demo page allows only its own scripts; axe is injected
    switcher, request_text, counsellor_button, honest, callback, follow_up = LANGUAGES[lang]
    open_demo(page, closed_server.url)
    open_with_keyboard(page)
    wait_for_welcome(page)
    page.get_by_role("button", name=switcher).click()
    notice = page.locator(MESSAGES).filter(has_text=honest).last
    _ask_for_a_person(page, request_text, counsellor_button, notice)
    text = notice.inner_text()
    assert "112" in text and not MARKS.search(text), text
    # The next step is a button; no queue banner, no "just a moment".
    expect(page.get_by_role("button", name=callback).last).to_be_visible()
    expect(page.locator(".polku-handoff")).to_be_hidden()
    assert (session_value(page, "handoff") or {"state": "bot"})["state"] == "bot"
    assert run_axe(page) == []
    # The call-back form opens from the button (and closes again with Escape).
    page.get_by_role("button", name=callback).last.click()
    expect(page.locator("form.polku-callback")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("form.polku-callback")).to_be_hidden()
    # The resident goes on asking, and the bot goes on answering.
    count = page.locator(RESIDENT_MESSAGES).count()
    send_with_enter(page, follow_up)
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(count + 1)
    last_resident = page.locator(RESIDENT_MESSAGES).last
    expect(last_resident.locator("~ .polku-msg:not(.polku-msg--resident)").first).to_be_visible(timeout=30_000)
    answer = last_resident.locator("~ .polku-msg:not(.polku-msg--resident)").first.inner_text()
    assert answer.strip() and not MARKS.search(answer), answer


def test_counsellor_expected_the_resident_may_wait_and_the_bot_answers_meanwhile(page, open_server):
    open_demo(page, open_server.url)
    open_with_keyboard(page)
    wait_for_welcome(page)
    wait = page.get_by_role("button", name="Jään jonoon")
    _ask_for_a_person(page, "haluan puhua ihmisen kanssa", "Haluan jutella ohjaajan kanssa", wait.last)
    expect(page.locator(".polku-handoff")).to_be_hidden()  # not queued until the resident chooses
    wait.last.click()
    banner = page.locator(".polku-handoff")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Ohjaajia ei ole juuri nyt paikalla")
    expect(banner).to_contain_text("botti vastaa")
    assert session_value(page, "handoff")["state"] == "unavailable"
    # Queued, nobody online: the bot answers meanwhile.
    count = page.locator(RESIDENT_MESSAGES).count()
    send_with_enter(page, "miten haen asumistukea")
    expect(page.locator(RESIDENT_MESSAGES)).to_have_count(count + 1)
    last_resident = page.locator(RESIDENT_MESSAGES).last
    expect(last_resident.locator("~ .polku-msg:not(.polku-msg--resident)").first).to_be_visible(timeout=30_000)
    # Leaving the queue with the keyboard: back with the bot, the focus kept.
    leave = banner.get_by_role("button", name="Poistu jonosta")
    leave.focus()
    page.keyboard.press("Enter")
    expect(banner).to_be_hidden()
    assert session_value(page, "handoff")["state"] == "bot"
