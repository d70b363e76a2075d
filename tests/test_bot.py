"""The bot against the real Rasa server: every intent, every language, safety, fallback, outage."""

import json
import subprocess
import sys

import pytest
import yaml

from bot.content import CONTRACT_INTENTS, Content
from bot.policy import Bot
from bot.rasa_server import free_port
from bot.settings import PROJECT_ROOT, Settings
from bot.types import Availability, DialogueState

pytestmark = pytest.mark.rasa

HELDOUT = yaml.safe_load((PROJECT_ROOT / "tests" / "data" / "heldout.yml").read_text(encoding="utf-8"))
CRISIS = yaml.safe_load((PROJECT_ROOT / "tests" / "data" / "crisis_cases.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
async def bot(rasa_url):
    bot = Bot.from_settings(Settings(environ={}, POLKU_RASA_URL=rasa_url))
    yield bot
    await bot.close()


@pytest.fixture
async def offline_bot():
    bot = Bot.from_settings(Settings(environ={}, POLKU_RASA_URL=f"http://127.0.0.1:{free_port()}",
                                     POLKU_RASA_TIMEOUT_SECS=1.0))
    yield bot
    await bot.close()


def _first_example(content, intent, lang):
    return content.intents[intent].examples[lang][0]


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
async def test_every_intent_answers_in_the_residents_language(bot, lang):
    content: Content = bot.content
    wrong = []
    for intent in CONTRACT_INTENTS:
        if intent in ("affirm", "deny"):
            continue  # their answer depends on the pending question; tested below
        text = _first_example(content, intent, lang)
        turn = await bot.handle(text, DialogueState(), ui_language=None)
        # A crisis gets the answer for its kind; the first examples are suicidal thoughts.
        expected = content.reply("crisis_suicide" if intent == "crisis" else intent, lang).text
        if turn.parse.intent != intent or turn.language != lang or turn.replies[0].text != expected:
            wrong.append((intent, text, turn.parse.intent, turn.language))
    assert not wrong, wrong


async def test_heldout_accuracy_is_at_least_95_percent(bot):
    misses = []
    for item in HELDOUT:
        result = await bot.parse(item["text"], item["lang"])
        if result.intent != item["intent"]:
            misses.append((item["lang"], item["intent"], result.intent, item["text"]))
    accuracy = 1 - len(misses) / len(HELDOUT)
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.1%}; misses: {misses}"


async def test_every_crisis_message_is_caught_and_near_misses_are_not(bot):
    missed = [c["text"] for c in CRISIS["crisis"] if (await bot.parse(c["text"], c["lang"])).intent != "crisis"]
    assert not missed, f"crisis messages missed: {missed}"
    flagged = [c["text"] for c in CRISIS["not_crisis"] if (await bot.parse(c["text"], c["lang"])).intent == "crisis"]
    assert not flagged, f"not crisis, but answered as crisis: {flagged}"


@pytest.mark.parametrize("text,lang", [
    ("mulla ei oo rahaa ruokaan ja haluun lopettaa kaiken", "fi"),
    ("hur söker jag utkomststöd, jag orkar inte leva längre", "sv"),
    ("how do I apply for housing allowance? honestly I want to kill myself", "en"),
])
async def test_crisis_wins_over_a_mixed_message(bot, text, lang):
    turn = await bot.handle(text, DialogueState(last_topic="housing_allowance"))
    assert turn.parse.intent == "crisis"
    assert turn.handoff is not None and turn.handoff.priority == "crisis"
    assert turn.replies[0].text == bot.content.reply("crisis_suicide", lang).text
    assert "112" in turn.replies[0].text


async def test_fallback_asks_to_rephrase_offers_a_counsellor_and_then_hands_off(bot):
    state = DialogueState(language="fi")
    first = await bot.handle("qwrtpz xkcd vbnm", state)
    assert first.parse.intent == "nlu_fallback" and not first.understood
    assert "/request_counsellor" in {qr.payload for qr in first.replies[0].quick_replies}
    assert first.handoff is None
    # "yes" answers the pending offer
    yes = await bot.handle("joo", first.state)
    assert yes.handoff is not None and yes.handoff.reason == "requested"
    # two fallbacks in a row go to a person without asking again
    again = await bot.handle("zzkrr plöm", first.state)
    assert again.handoff is not None and again.handoff.reason == "fallback"


async def test_deny_declines_the_pending_offer(bot):
    first = await bot.handle("qwrtpz xkcd vbnm", DialogueState(language="en"))
    no = await bot.handle("no thanks", first.state)
    assert no.handoff is None
    assert no.replies[0].response_id == "deny_offer"


async def test_button_payload_requests_a_counsellor(bot):
    turn = await bot.handle("/request_counsellor", DialogueState(language="sv"))
    assert turn.handoff is not None and turn.handoff.reason == "requested"
    assert turn.language == "sv"


async def test_language_is_remembered_for_short_messages(bot):
    first = await bot.handle("hej, jag behöver hjälp med bostadsbidrag", DialogueState())
    assert first.language == "sv"
    ok = await bot.handle("ok", first.state, ui_language="fi")
    assert ok.language == "sv"


async def test_personal_data_is_redacted_before_the_nlu(bot):
    result = await bot.parse("mun hetu on 131052-308T ja puh 040 123 4567, maili matti@example.fi", "fi")
    assert "131052-308T" not in result.text and "[HETU]" in result.text
    assert "[PHONE]" in result.text and "[EMAIL]" in result.text


async def test_rasa_down_answers_and_offers_contacts_and_a_counsellor(offline_bot):
    turn = await offline_bot.handle("miten haen toimeentulotukea", DialogueState())
    assert not turn.parse.nlu_available
    assert turn.replies[0].response_id == "nlu_unavailable"
    assert "/request_counsellor" in {qr.payload for qr in turn.replies[0].quick_replies}
    crisis = await offline_bot.handle("en jaksa enää elää", DialogueState())
    assert crisis.parse.intent == "crisis" and crisis.handoff.priority == "crisis"


def tmp_home():
    import tempfile
    return tempfile.mkdtemp(prefix="polku-home-")


def _run_cli(args, stdin, env_extra):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_home()), **env_extra}
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, capture_output=True,
                          text=True, cwd=PROJECT_ROOT, env=env, timeout=600)


def test_parse_cli_writes_one_json_object_per_line(rasa_url):
    out = _run_cli(["parse"], "hei\nmiten haen asumistukea\nI want to end my life\n",
                   {"POLKU_RASA_URL": rasa_url})
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["intent"] for r in rows] == ["greet", "housing_allowance", "crisis"]
    assert [r["language"] for r in rows] == ["fi", "fi", "en"]
    assert all(set(r) == {"text", "intent", "confidence", "language"} for r in rows)


def test_parse_cli_starts_rasa_itself_when_none_answers(rasa_model, tmp_path):
    port = free_port()
    out = _run_cli(["parse"], "kiitos paljon\n", {
        "POLKU_RASA_URL": f"http://127.0.0.1:{port}", "POLKU_MODEL_DIR": str(rasa_model.parent),
        "POLKU_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["intent"] == "thanks"


def test_evaluate_cli_prints_per_intent_and_language_figures(rasa_url):
    out = _run_cli(["evaluate"], "", {"POLKU_RASA_URL": rasa_url})
    assert out.returncode == 0, out.stderr
    assert "Top-1 accuracy" in out.stdout and "Confusion pairs" in out.stdout
    for intent in ("income_support_basic", "crisis"):
        assert intent in out.stdout
    for lang in ("fi:", "sv:", "en:"):
        assert lang in out.stdout
    # Crisis recall and false alarms on tests/data/crisis_eval.yml, per language and category.
    assert "Crisis recall" in out.stdout and "False alarms" in out.stdout
    for category in ("suicide_indirect", "plan_means", "child_danger", "no_shelter", "idiom", "held-out, ordinary"):
        assert category in out.stdout
    recall = next(line for line in out.stdout.splitlines() if line.strip().startswith("ALL ") and "/" in line)
    assert recall.split()[1] == "100.0%", recall


@pytest.mark.parametrize("online,expected", [(True, "polku_chat_open"), (False, "polku_chat_closed")])
async def test_polku_contact_says_whether_counsellors_are_online(bot, online, expected):
    turn = await bot.handle("milloin polku on auki ja mikä on puhelinnumero", DialogueState(),
                            availability=Availability(now=online))
    assert turn.parse.intent == "polku_contact"
    assert [r.response_id for r in turn.replies] == ["polku_contact", expected]


async def test_two_way_salutations_greet_first_and_say_goodbye_later(bot):
    opening = await bot.handle("Moi!", DialogueState())
    assert opening.parse.intent == "greet"
    later = await bot.handle("moi moi", opening.state)
    assert later.parse.intent == "goodbye"
    assert later.replies[0].response_id == "goodbye"


async def test_replace_content_answers_from_the_new_content_at_once(offline_bot, tmp_path):
    """The admins' edits reach the running bot through replace_content (no attribute swaps)."""
    import shutil

    copy = tmp_path / "training_data"
    shutil.copytree(PROJECT_ROOT / "training_data", copy)
    responses = yaml.safe_load((copy / "responses.yml").read_text(encoding="utf-8"))
    before = offline_bot.content.reply("thanks", "en").text
    responses["thanks"]["text"]["en"] = "Glad to help, truly!"
    (copy / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True), encoding="utf-8")
    fresh = Content.load(copy)
    offline_bot.replace_content(fresh)
    assert offline_bot.content is fresh and before != "Glad to help, truly!"
    assert offline_bot.content.reply("thanks", "en").text == "Glad to help, truly!"
    assert offline_bot.lexicon == Bot.language_lexicon(fresh)
