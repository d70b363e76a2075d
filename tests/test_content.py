"""Training data, answers and service facts: complete, valid, and apart from the held-out set."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.content import CONTRACT_INTENTS, SMALL_TALK_INTENTS, TOPIC_INTENTS, Content, ContentError
from bot.redact import redact
from bot.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / "training_data"
CONTRACT = PROJECT_ROOT.parent / "shared" / "spec" / "intents.md"


@pytest.fixture(scope="module")
def content():
    return Content.load(DATA)


def _norm(text):
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def test_intent_ids_match_the_contract():
    if CONTRACT.exists():
        ids = re.findall(r"^\| `([a-z_]+)`", CONTRACT.read_text(encoding="utf-8"), flags=re.M)
        assert tuple(ids) == CONTRACT_INTENTS
    assert set(TOPIC_INTENTS) | SMALL_TALK_INTENTS == set(CONTRACT_INTENTS)


def test_every_intent_has_enough_examples_per_language(content):
    for intent in CONTRACT_INTENTS:
        examples = content.intents[intent].examples
        minimum = {"fi": 40, "sv": 15, "en": 15} if intent in TOPIC_INTENTS else {"fi": 10, "sv": 5, "en": 5}
        for lang, count in minimum.items():
            assert len(examples.get(lang, [])) >= count, f"{intent}/{lang}: {len(examples.get(lang, []))} < {count}"


def test_no_example_is_in_two_intents(content):
    owner = {}
    for intent, data in content.intents.items():
        for examples in data.examples.values():
            for example in examples:
                key = _norm(example)
                assert owner.setdefault(key, intent) == intent, f"{example!r} in {owner[key]} and {intent}"


def _evaluation_set(name):
    return yaml.safe_load((PROJECT_ROOT / "tests" / "data" / name).read_text(encoding="utf-8"))


def test_heldout_set_is_apart_from_training(content):
    trained = {_norm(e) for e in content.example_texts()}
    heldout = _evaluation_set("heldout.yml")
    leaked = [item["text"] for item in heldout if _norm(item["text"]) in trained]
    assert not leaked, f"held-out messages found in training data: {leaked}"
    assert {item["intent"] for item in heldout} == set(CONTRACT_INTENTS)


def test_paraphrase_set_is_apart_from_training_and_heldout(content):
    """tests/data/paraphrases.yml, the extra evaluation set of the weak areas, is neither trained on nor
    taken from the held-out set; every entry names a known intent and language."""
    trained = {_norm(e) for e in content.example_texts()}
    heldout = {_norm(item["text"]) for item in _evaluation_set("heldout.yml")}
    paraphrases = _evaluation_set("paraphrases.yml")
    assert {item["lang"] for item in paraphrases} == {"fi", "sv", "en"}
    assert {item["intent"] for item in paraphrases} <= set(CONTRACT_INTENTS)
    leaked = [item["text"] for item in paraphrases if _norm(item["text"]) in trained | heldout]
    assert not leaked, f"paraphrases found in training data or the held-out set: {leaked}"


def test_training_data_holds_no_personal_data(content):
    for intent, data in content.intents.items():
        for examples in data.examples.values():
            for example in examples:
                assert redact(example) == example, f"{intent}: personal data in {example!r}"


def test_every_intent_and_notice_answers_in_three_languages(content):
    for rid in [*CONTRACT_INTENTS, "fallback", "fallback_handoff", "nlu_unavailable", "handoff_queued",
                "handoff_joined", "handoff_closed", "counsellors_unavailable", "welcome"]:
        for lang in ("fi", "sv", "en"):
            reply = content.reply(rid, lang, position=2, wait_minutes=5, counsellor_name="Anna")
            assert reply.text and "{" not in reply.text, f"{rid}/{lang}: {reply.text!r}"


def test_topic_answers_offer_a_counsellor_or_contact(content):
    for intent in TOPIC_INTENTS:
        if intent in ("request_counsellor", "out_of_scope", "crisis"):
            continue
        reply = content.reply(intent, "fi")
        payloads = {qr.payload for qr in reply.quick_replies}
        assert "/request_counsellor" in payloads or "Polku" in reply.text, intent


def test_crisis_answer_gives_emergency_guidance_first(content):
    for lang in ("fi", "sv", "en"):
        text = content.reply("crisis", lang).text
        assert "112" in text[:200], f"crisis/{lang} must start with the emergency number"


def test_validation_points_at_the_broken_item(training_copy):
    path = training_copy / "responses.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["thanks"]["text"]["sv"] = ""
    data["greet"]["text"]["en"] += " {no_such_fact}"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ContentError) as err:
        Content.load(training_copy)
    assert "response thanks: empty or missing sv text" in str(err.value)
    assert "unknown placeholder {no_such_fact}" in str(err.value)


BENEFIT_ANSWERS = ("income_support_basic", "housing_allowance", "unemployment")
# Every answer that states a rule, deadline or service rule names where it was checked
# (issue 15 item 4; docs/facts-review.md).
RULE_ANSWERS = (*BENEFIT_ANSWERS, "income_support_supplementary", "kela_application_help",
                "debt_counselling", "social_rehabilitation", "appeal_decision", "child_welfare_notice",
                "own_worker", "become_client", "housing_problem", "mental_health", "crisis",
                "crisis_suicide", "crisis_violence", "crisis_basic_needs", "handoff_crisis_unavailable")


def test_every_rule_answer_names_its_sources_and_checked_date(content):
    """The benefit answers' sources are https only."""
    for rid in RULE_ANSWERS:
        entry = content.responses[rid]
        schemes = ("https://",) if rid in BENEFIT_ANSWERS else ("https://", "http://")
        assert entry.get("checked"), f"{rid}: no checked date"
        assert entry.get("source") and all(u.startswith(schemes) for u in entry["source"]), rid


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_appeal_answer_gives_30_days_from_notice(content, lang):
    """A resident's own social services decision: 30 days from notification (Administrative
    Procedure Act via the Social Welfare Act; docs/facts-review.md 6.3), never 14 days."""
    text = content.reply("appeal_decision", lang).text
    assert "30" in text and "14" not in text


def test_answer_provenance_keys_are_validated(training_copy):
    path = training_copy / "responses.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["housing_allowance"]["checked"] = "5.12.2026"
    data["housing_allowance"]["source"] = ["kela.fi/asuminen"]
    data["unemployment"]["source"] = "https://www.kela.fi/"
    data["income_support_basic"]["rule_changed"] = ["since February: duty to apply"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ContentError) as err:
        Content.load(training_copy)
    message = str(err.value)
    assert "response housing_allowance: checked must be a date (YYYY-MM-DD)" in message
    assert "response housing_allowance: source 'kela.fi/asuminen' is not an http(s) URL" in message
    assert "response unemployment: source must be a list of URLs" in message
    assert "response income_support_basic: rule_changed note 'since February: duty to apply'" in message


def test_answer_provenance_keys_are_optional_and_accept_a_yaml_date(training_copy):
    path = training_copy / "responses.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("checked", "source", "rule_changed"):
        data["housing_allowance"].pop(key, None)
    data["unemployment"]["checked"] = datetime(2026, 12, 5).date()  # unquoted YAML date
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    content = Content.load(training_copy)
    assert "source" not in content.responses["housing_allowance"]


def test_an_admin_edit_of_an_answer_keeps_its_provenance(content):
    from chat_server.admin import yamlfile

    entry = content.responses["housing_allowance"]
    edited = {**entry, "text": {**entry["text"], "en": "General housing allowance is decided by Kela."}}
    again = yaml.safe_load("\n".join(yamlfile.response_block("housing_allowance", edited)))["housing_allowance"]
    for key in ("checked", "source", "rule_changed"):
        assert again[key] == entry[key]


def test_opening_hours_tell_whether_chat_is_open(content):
    tz = ZoneInfo("Europe/Helsinki")
    monday_noon = datetime(2026, 11, 23, 12, 0, tzinfo=tz)
    sunday_noon = datetime(2026, 11, 22, 12, 0, tzinfo=tz)
    monday_night = datetime(2026, 11, 23, 23, 0, tzinfo=tz)
    assert content.is_open("chat", monday_noon)
    assert not content.is_open("chat", sunday_noon)
    assert not content.is_open("chat", monday_night)
