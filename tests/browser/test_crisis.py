"""Each kind of crisis, as a resident and a counsellor see it, in real headless
Chromium against the real chat server: a resident hit by their partner, one
with no food for the children tonight and one who wants to end their life
each get the answer for their kind of crisis in the widget, and all three are
at the front of the counsellor's queue, before a resident who asked for a
person earlier. (The crisis lexicon needs no Rasa: this works with
POLKU_BROWSER_RASA=closed too.)"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from bot.content import Content
from bot.settings import PROJECT_ROOT

from .conftest import ChatServerProcess
from .helpers import MESSAGES, open_demo, open_with_keyboard, send_with_enter, wait_for_welcome
from .test_console import PASSWORD, sign_in, socket_resident

pytestmark = pytest.mark.browser

CONTENT = Content.load(PROJECT_ROOT / "training_data")

# (message, language the bot answers in, the answer for that kind of crisis)
RESIDENTS = [
    ("mun mies löi mua äsken ja uhkaa tappaa jos lähden", "fi", "crisis_violence"),
    ("vi har ingen mat hemma och barnen är hungriga", "sv", "crisis_basic_needs"),
    ("i can't go on anymore, i want to end my life", "en", "crisis_suicide"),
]


@pytest.fixture(scope="module")
def crisis_server(widget_bundle, browser_rasa_url, tmp_path_factory):
    """A chat server of this module's own, with counsellor Anna (the chat open at any hour)."""
    server = ChatServerProcess(tmp_path_factory.mktemp("crisis-chat"), browser_rasa_url,
                               POLKU_CHAT_ALWAYS_OPEN="1")
    server.create_user("anna", "Anna", "counsellor", PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]


def test_each_kind_of_crisis_gets_its_own_answer_and_the_front_of_the_queue(new_page, crisis_server):
    base = crisis_server.url
    # Someone who chose to wait in the queue for a person before any of the three (nobody is
    # online: the bot offers the queue, and the resident takes it).
    waiting, _ = socket_resident(base, "/join_queue", "normal-1")
    try:
        pages = []
        for text, language, answer in RESIDENTS:
            resident = new_page()
            open_demo(resident, base)
            open_with_keyboard(resident)
            wait_for_welcome(resident)
            send_with_enter(resident, text)
            expected = CONTENT.reply(answer, language).text
            reply = resident.locator(MESSAGES).filter(has_text=_first_sentence(expected))
            expect(reply).to_have_count(1, timeout=20_000)
            expect(reply).to_contain_text(expected[-60:])  # the whole answer, not only its opening
            # 112 first, and none of the other kinds' answers.
            for other in {"crisis_violence", "crisis_basic_needs", "crisis_suicide"} - {answer}:
                assert _first_sentence(CONTENT.reply(other, language).text) not in resident.content()
            expect(resident.locator(".polku-handoff")).to_be_visible()
            pages.append(resident)

        counsellor = new_page(bypass_csp=True)
        sign_in(counsellor, base)
        queue = counsellor.locator("#queue-list .chat-item")
        expect(queue).to_have_count(4)
        for index in range(3):
            expect(queue.nth(index)).to_have_class(re.compile("chat-item--crisis"))
            expect(queue.nth(index)).to_contain_text("Kriisi")
        expect(queue.nth(3)).not_to_have_class(re.compile("chat-item--crisis"))

        # The counsellor sees what each resident wrote and which answer the bot gave.
        queue.first.get_by_role("button", name=re.compile("Ota keskustelu")).click()
        transcript = counsellor.locator("#transcript")
        expect(transcript.locator(".msg--resident").first).to_contain_text(RESIDENTS[0][0])
        expect(transcript).to_contain_text(_first_sentence(CONTENT.reply("crisis_violence", "fi").text))
    finally:
        waiting.disconnect()
