"""The crisis layers in the dialogue policy: which message gets which crisis
answer, when the safety check asks first, and what one tap on it does.

The model's answers here come from a scripted NLU (pure decision logic: what
the policy does with a given ranking); tests/test_bot.py and `python -m bot
evaluate` run the same policy against the real Rasa model."""

from __future__ import annotations

import re

import pytest

from bot.content import Content
from bot.nlu import NluResult, NluUnavailable
from bot.policy import PENDING_SAFETY_CHECK, Bot
from bot.settings import PROJECT_ROOT
from bot.types import DialogueState

CONTENT = Content.load(PROJECT_ROOT / "training_data")


class ScriptedNlu:
    """Answers every text with the ranking given for it (or a default)."""

    def __init__(self, rankings: dict[str, list[tuple[str, float]]] | None = None,
                 default: list[tuple[str, float]] | None = None, down: bool = False) -> None:
        self.rankings = rankings or {}
        self.default = default or [("out_of_scope", 0.9), ("greet", 0.05)]
        self.down = down
        self.seen: list[str] = []

    async def parse(self, text: str) -> NluResult:
        self.seen.append(text)
        if self.down:
            raise NluUnavailable("down")
        ranking = tuple(self.rankings.get(text, self.default))
        return NluResult(ranking[0][0], ranking[0][1], ranking)

    async def close(self) -> None:
        pass


def _bot(nlu: ScriptedNlu) -> Bot:
    return Bot(CONTENT, nlu, fallback_threshold=0.3)  # type: ignore[arg-type]


KINDS = [
    # (message, language, answer)
    ("mulla on köysi valmiina ja tiedän mihin sen laitan", "fi", "crisis_suicide"),
    ("viiltelin taas käsiä", "fi", "crisis_suicide"),
    ("avomies löi mua ja uhkaa tappaa", "fi", "crisis_violence"),
    ("ei oo yöpaikkaa tänä yönä", "fi", "crisis_basic_needs"),
    ("lapsilla on nälkä eikä kotona oo ruokaa", "fi", "crisis_basic_needs"),
    ("jag är bara en börda för alla", "sv", "crisis_suicide"),
    ("min sambo slår mig", "sv", "crisis_violence"),
    ("jag har ingenstans att sova i natt", "sv", "crisis_basic_needs"),
    ("I'm just a burden to everyone", "en", "crisis_suicide"),
    ("my husband hits the kids", "en", "crisis_violence"),
    ("we have nothing to eat today", "en", "crisis_basic_needs"),
]


@pytest.mark.parametrize(("text", "lang", "answer"), KINDS)
async def test_each_kind_of_crisis_gets_its_own_answer_and_the_front_of_the_queue(text, lang, answer):
    turn = await _bot(ScriptedNlu()).handle(text, DialogueState(), lang)
    assert turn.parse.intent == "crisis"
    assert [r.response_id for r in turn.replies] == [answer]
    assert turn.handoff is not None and turn.handoff.reason == "crisis" and turn.handoff.priority == "crisis"
    assert turn.language == lang


async def test_a_crisis_is_answered_when_rasa_is_down():
    turn = await _bot(ScriptedNlu(down=True)).handle("min man hotade mig med kniv", DialogueState(), "sv")
    assert turn.handoff is not None and turn.handoff.priority == "crisis"
    assert turn.replies[0].response_id == "crisis_violence"


@pytest.mark.parametrize("answer", ["crisis", "crisis_suicide", "crisis_violence", "crisis_basic_needs"])
@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_crisis_answers_open_kindly_and_put_112_first(answer, lang):
    text = CONTENT.reply(answer, lang).text
    first_sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    assert "112" not in first_sentence, f"{answer} ({lang}) opens with instructions, not a kind line: {text}"
    numbers = [m.start() for m in re.finditer(r"\d[\d ]{5,}\d", text)]  # phone numbers other than 112
    assert text.index("112") < min(numbers, default=len(text)), f"112 is not the first number: {text}"
    assert "{" not in text and "täydennä" not in text and "[" not in text, text
    assert len(text) <= 1200


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_the_violence_answer_has_nollalinja_shelters_writing_and_clearing_the_chat(lang):
    text = CONTENT.reply("crisis_violence", lang).text
    assert "080 005 005" in text
    assert {"fi": "Turvakoti", "sv": "skyddshem", "en": "shelter"}[lang] in text
    assert {"fi": "voit kirjoittaa", "sv": "kan du skriva", "en": "you can write"}[lang] in text
    assert {"fi": "Tyhjennä", "sv": "Töm", "en": "Clear"}[lang] in text


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_the_basic_needs_answer_names_emergency_social_services_and_urgent_income_support(lang):
    text = CONTENT.reply("crisis_basic_needs", lang).text
    assert {"fi": "Sosiaalipäivystys", "sv": "Socialjouren", "en": "Emergency social services"}[lang] in text
    assert {"fi": "kiireellistä toimeentulotukea", "sv": "brådskande utkomststöd",
            "en": "urgent social assistance"}[lang] in text
    assert {"fi": "Kela", "sv": "FPA", "en": "Kela"}[lang] in text


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_the_suicide_answer_has_the_crisis_line_of_the_language(lang):
    text = CONTENT.reply("crisis_suicide", lang).text
    assert {"fi": "09 2525 0111", "sv": "09 2525 0112", "en": "09 2525 0116"}[lang] in text
    assert "09 2525 0111" in text  # the 24/7 Finnish line is always there


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_the_safety_check_asks_directly_and_escalates_in_one_tap(lang):
    reply = CONTENT.reply("crisis_check", lang)
    assert "?" in reply.text and "112" in reply.text
    assert {"fi": "elämäsi päättämistä", "sv": "ta ditt liv", "en": "ending your life"}[lang] in reply.text
    assert [qr.payload for qr in reply.quick_replies] == ["/crisis", "/deny", "/request_counsellor"]


async def test_crisis_near_the_top_of_the_ranking_asks_before_the_answer():
    nlu = ScriptedNlu(default=[("debt_counselling", 0.7), ("unemployment", 0.15), ("crisis", 0.12)])
    turn = await _bot(nlu).handle("velat kasvaa enkä tiedä mitä tehdä", DialogueState(), "fi")
    assert [r.response_id for r in turn.replies] == ["crisis_check", "debt_counselling"]
    assert turn.handoff is None
    assert turn.state.pending == PENDING_SAFETY_CHECK


async def test_crisis_on_top_of_the_model_alone_asks_but_does_not_alarm():
    # The model over-calls crisis on bereavement and idioms; only the lexicon alarms.
    nlu = ScriptedNlu(default=[("crisis", 0.99), ("income_support_supplementary", 0.005)])
    turn = await _bot(nlu).handle("isä kuoli ja hautajaiset maksaa paljon", DialogueState(), "fi")
    assert turn.handoff is None
    assert turn.replies[0].response_id == "crisis_check"
    assert "fallback" not in [r.response_id for r in turn.replies]


async def test_crisis_far_down_the_ranking_changes_nothing():
    nlu = ScriptedNlu(default=[("housing_allowance", 0.8), ("housing_problem", 0.1), ("greet", 0.05),
                               ("crisis", 0.04)])
    turn = await _bot(nlu).handle("miten haen asumistukea", DialogueState(), "fi")
    assert [r.response_id for r in turn.replies] == ["housing_allowance"]


async def test_risk_words_in_a_message_not_understood_get_the_check_instead_of_rephrase():
    nlu = ScriptedNlu(default=[("out_of_scope", 0.2), ("greet", 0.1)])
    turn = await _bot(nlu).handle("mulla on pillereitä tässä", DialogueState(), "fi")
    assert [r.response_id for r in turn.replies] == ["crisis_check"]
    assert not turn.understood and turn.handoff is None
    assert turn.state.pending == PENDING_SAFETY_CHECK


async def test_risk_words_beside_another_topic_get_the_check_first():
    nlu = ScriptedNlu(default=[("income_support_basic", 0.9), ("crisis", 0.01)])
    turn = await _bot(nlu).handle("I'm hungry, how do I apply for social assistance", DialogueState(), "en")
    assert [r.response_id for r in turn.replies] == ["crisis_check", "income_support_basic"]


async def test_an_ordinary_message_gets_no_check():
    nlu = ScriptedNlu(default=[("housing_allowance", 0.9), ("crisis", 0.01)])
    turn = await _bot(nlu).handle("how do I apply for housing allowance", DialogueState(), "en")
    assert [r.response_id for r in turn.replies] == ["housing_allowance"]


@pytest.mark.parametrize(("answer", "ranking"), [
    ("/crisis", [("crisis", 1.0)]),
    ("joo", [("affirm", 0.95)]),
])
async def test_yes_to_the_safety_check_is_a_crisis(answer, ranking):
    nlu = ScriptedNlu({answer: ranking}, default=[("out_of_scope", 0.2)])
    bot = _bot(nlu)
    check = await bot.handle("mulla on pillereitä tässä", DialogueState(), "fi")
    turn = await bot.handle(answer, check.state, "fi")
    assert turn.handoff is not None and turn.handoff.priority == "crisis"
    assert turn.replies[0].response_id in ("crisis", "crisis_suicide")


async def test_no_to_the_safety_check_gets_a_kind_reply_and_no_handoff():
    nlu = ScriptedNlu({"/deny": [("deny", 1.0)]}, default=[("out_of_scope", 0.2)])
    bot = _bot(nlu)
    check = await bot.handle("mulla on pillereitä tässä", DialogueState(), "fi")
    turn = await bot.handle("/deny", check.state, "fi")
    assert [r.response_id for r in turn.replies] == ["safety_check_declined"]
    assert turn.handoff is None and turn.state.pending is None


async def test_risk_words_get_the_check_even_when_rasa_is_down():
    turn = await _bot(ScriptedNlu(down=True)).handle("mulla on pillereitä tässä", DialogueState(), "fi")
    assert [r.response_id for r in turn.replies] == ["crisis_check", "nlu_unavailable"]
    plain = await _bot(ScriptedNlu(down=True)).handle("miten haen asumistukea", DialogueState(), "fi")
    assert [r.response_id for r in plain.replies] == ["nlu_unavailable"]
