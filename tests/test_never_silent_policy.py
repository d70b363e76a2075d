"""The policy's side of 'never silent' (issue 15 item 1), as pure logic: what the bot
says to a request for a person (or after two misunderstood messages) by whether a
counsellor can come now, is expected soon, or the chat already waits in the queue."""

import pytest

from bot.content import Content
from bot.nlu import NluResult
from bot.policy import Bot
from bot.settings import PROJECT_ROOT
from bot.types import Availability, DialogueState

NOW = Availability(now=True, notices=True)
SOON = Availability(now=False, expected_soon=True, notices=True)
NOBODY = Availability(now=False, expected_soon=False, notices=True)
QUEUED = Availability(now=False, expected_soon=True, queued=True, notices=True)
MARKS = ("täydennä", "fill in", "fyll i", "[", "{")


class _NotUnderstood:
    """An NLU that never understands (pure logic: the fallback path)."""

    async def parse(self, text: str) -> NluResult:
        return NluResult("nlu_fallback", 0.1, (("greet", 0.1),))

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def bot():
    return Bot(Content.load(PROJECT_ROOT / "training_data"), _NotUnderstood())


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
async def test_a_request_is_one_honest_message_unless_a_counsellor_can_come(bot, lang):
    state = DialogueState(language=lang)
    now = await bot.handle("/request_counsellor", state, lang, availability=NOW)
    assert now.handoff is not None and now.replies == ()  # the queue notice is the one message

    soon = await bot.handle("/request_counsellor", state, lang, availability=SOON)
    assert soon.handoff is None and len(soon.replies) == 1
    assert soon.replies[0].response_id == "counsellors_expected"
    assert [q.payload for q in soon.replies[0].quick_replies] == ["/join_queue", "/callback_request"]

    nobody = await bot.handle("/request_counsellor", state, lang, availability=NOBODY)
    assert nobody.handoff is None and len(nobody.replies) == 1
    reply = nobody.replies[0]
    assert reply.response_id == "counsellors_unavailable"
    assert "/callback_request" in [q.payload for q in reply.quick_replies]
    assert "112" in reply.text and not any(m in reply.text.lower() for m in MARKS)

    queued = await bot.handle("/request_counsellor", state, lang, availability=QUEUED)
    assert queued.handoff is None and queued.replies[0].response_id == "handoff_still_queued"


async def test_join_queue_only_when_a_counsellor_can_come_or_is_expected(bot):
    state = DialogueState(language="fi")
    assert (await bot.handle("/join_queue", state, "fi", availability=SOON)).handoff is not None
    assert (await bot.handle("/join_queue", state, "fi", availability=NOW)).handoff is not None
    late = await bot.handle("/join_queue", state, "fi", availability=NOBODY)
    assert late.handoff is None and late.replies[0].response_id == "counsellors_unavailable"
    again = await bot.handle("/join_queue", state, "fi", availability=QUEUED)
    assert again.handoff is None and again.replies[0].response_id == "handoff_still_queued"


async def test_two_fallbacks_with_nobody_to_come_say_so_in_one_message(bot):
    state = DialogueState(language="en")
    first = await bot.handle("qwrtpz xkcd", state, "en", availability=NOBODY)
    assert first.replies[0].response_id == "fallback" and first.handoff is None
    second = await bot.handle("zzkrr plöm", first.state, "en", availability=NOBODY)
    assert second.handoff is None and len(second.replies) == 1
    text = second.replies[0].text
    assert text.startswith("Sorry, I don't understand your question.") and "No counsellor" in text
    assert not second.understood
    # With a counsellor able to come, the old handoff stands: the bot says it passes the chat on.
    handed = await bot.handle("zzkrr plöm", first.state, "en", availability=NOW)
    assert handed.handoff is not None and handed.handoff.reason == "fallback"
    assert handed.replies[0].response_id == "fallback_handoff"


async def test_crisis_is_queued_even_with_nobody_online(bot):
    turn = await bot.handle("mulla on halu kuolla", DialogueState(), "fi", availability=NOBODY)
    assert turn.handoff is not None and turn.handoff.priority == "crisis"
    assert "112" in turn.replies[0].text


async def test_without_a_chat_server_the_bot_says_it_passes_the_chat_on(bot):
    turn = await bot.handle("/request_counsellor", DialogueState(language="fi"), "fi")
    assert turn.handoff is not None and turn.replies[0].response_id == "request_counsellor"
    assert "Hetki" not in turn.replies[0].text
