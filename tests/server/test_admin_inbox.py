"""The inbox of what the bot did not understand: guesses stored with resident
messages, grouping by similarity, assigning (an example in the message's
language, recorded and undoable) and dismissing."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime, timezone

import pytest
import yaml

from bot.content import Content
from bot.nlu import NluResult
from bot.policy import Bot
from chat_server.admin import inbox as inbox_module
from chat_server.admin import similarity

from .admin_support import AdminClient, seed_conversation

LOW = (("housing_allowance", 0.35), ("housing_problem", 0.30), ("income_support_basic", 0.2))
SCRIPT = {
    "paljonko on asumistuki": LOW,
    "asumistuki paljonko saa": LOW,
    "paljonko asumistukea voi saada": LOW,
    "mikä sää on huomenna": (("out_of_scope", 0.3), ("greet", 0.2), ("thanks", 0.1)),
    "toimeentulotuki hakemus": (("income_support_basic", 0.95), ("housing_allowance", 0.02), ("greet", 0.01)),
    "kelan tuki vuokraan": (("housing_allowance", 0.5), ("income_support_basic", 0.4), ("greet", 0.05)),
}


class ScriptedNlu:
    """Rasa's answers, scripted per text."""

    url = "scripted"

    async def parse(self, text: str) -> NluResult:
        ranking = SCRIPT[text]
        return NluResult(ranking[0][0], ranking[0][1], ranking)

    async def close(self) -> None:
        pass


@pytest.fixture
async def server(launch, sqlite_settings, training_copy):
    bot = Bot(Content.load(training_copy), ScriptedNlu(), fallback_threshold=0.4)
    return await launch(sqlite_settings, bot=bot, POLKU_TRAINING_DATA_DIR=str(training_copy))


@pytest.fixture
async def admin(server):
    client = await AdminClient.sign_in(server)
    yield client
    await client.close()


async def chat(server, connect, texts) -> dict[str, int]:
    """Each text from a resident of its own; returns text -> stored message id."""
    ids = {}
    for text in texts:
        resident = await connect(server)
        await resident.session(None, language="fi")
        await resident.next("bot_uttered")
        ack = await resident.ack(await resident.say(text, language="fi"))
        ids[text] = ack["message_id"]
    return ids


def test_grouping_is_by_character_trigrams_and_deterministic():
    texts = ["paljonko on asumistuki", "mikä sää on huomenna", "asumistuki paljonko saa",
             "paljonko asumistukea voi saada", "huomenna sataako", "toimentulotuki", "toimeentulotukea"]
    groups = similarity.group(texts)
    assert groups == similarity.group(list(texts))
    as_texts = sorted(sorted(texts[i] for i in g) for g in groups)
    assert ["asumistuki paljonko saa", "paljonko asumistukea voi saada", "paljonko on asumistuki"] in as_texts
    assert ["toimeentulotukea", "toimentulotuki"] in as_texts  # a typo and an inflection
    assert ["mikä sää on huomenna"] in as_texts
    vectors = similarity.tfidf(texts)
    assert similarity.cosine(vectors[0], vectors[0]) == pytest.approx(1.0)
    assert similarity.cosine(vectors[0], vectors[1]) < 0.2


async def test_guesses_are_stored_and_unsure_messages_grouped(server, admin, connect):
    ids = await chat(server, connect, list(SCRIPT))
    stored = dict(await server.sql("SELECT message_id, guesses FROM message_intent_guesses"))
    assert len(stored) == len(SCRIPT)
    guesses = stored[ids["paljonko on asumistuki"]]
    guesses = json.loads(guesses) if isinstance(guesses, str) else guesses  # SQLite gives the JSON text
    assert guesses == [[n, c] for n, c in LOW]

    inbox = await admin.get("/admin/api/inbox")
    assert inbox["threshold"] == 0.6 and inbox["total"] == 5  # not the confident one
    groups = {tuple(sorted(i["text"] for i in g["items"])): g for g in inbox["groups"]}
    housing = groups[("asumistuki paljonko saa", "paljonko asumistukea voi saada", "paljonko on asumistuki")]
    assert inbox["groups"][0]["size"] == 3  # biggest first
    assert housing["guesses"][0] == {"intent": "housing_allowance", "confidence": 0.35}
    assert {i["intent"] for i in housing["items"]} == {"nlu_fallback"}
    assert all(len(i["guesses"]) == 3 and i["language"] == "fi" for i in housing["items"])
    assert ("kelan tuki vuokraan",) in groups  # answered, but with confidence below 0.6
    assert ("toimeentulotuki hakemus",) not in groups


async def test_assigning_adds_examples_recorded_and_undoable(server, admin, connect, training_copy):
    ids = await chat(server, connect, list(SCRIPT))
    group = [ids["paljonko on asumistuki"], ids["asumistuki paljonko saa"], ids["paljonko asumistukea voi saada"]]
    result = await admin.post("/admin/api/inbox/assign", {
        "message_ids": group, "intent": "housing_allowance",
        "texts": {str(group[2]): "paljonko asumistukea voisin saada"}})
    assert result["assigned"] == 3 and len(result["changes"]) == 3
    assert {c["source"] for c in result["changes"]} == {"inbox"}
    examples = yaml.safe_load((training_copy / "intents" / "housing_allowance.yml").read_text())["examples"]["fi"]
    assert examples[-3:] == ["paljonko on asumistuki", "asumistuki paljonko saa", "paljonko asumistukea voisin saada"]
    inbox = await admin.get("/admin/api/inbox")
    assert inbox["total"] == 2 and not any(set(group) & {i["message_id"] for i in g["items"]} for g in inbox["groups"])
    history = (await admin.get("/admin/api/changes"))["changes"]
    assert history[0]["item"] == {"intent": "housing_allowance", "language": "fi"}

    # Taking the example back puts its message back in the inbox.
    change = next(c for c in result["changes"] if c["after"] == "asumistuki paljonko saa")
    await admin.post(f"/admin/api/changes/{change['id']}/undo")
    inbox = await admin.get("/admin/api/inbox")
    assert ids["asumistuki paljonko saa"] in {i["message_id"] for g in inbox["groups"] for i in g["items"]}
    examples = yaml.safe_load((training_copy / "intents" / "housing_allowance.yml").read_text())["examples"]["fi"]
    assert "asumistuki paljonko saa" not in examples


async def test_assigning_a_text_of_another_topic_is_refused_with_the_reason(server, admin, connect, training_copy):
    ids = await chat(server, connect, ["mikä sää on huomenna"])
    taken = yaml.safe_load((training_copy / "intents" / "income_support_basic.yml").read_text())["examples"]["fi"][0]
    refused = await admin.post("/admin/api/inbox/assign", {
        "message_ids": [ids["mikä sää on huomenna"]], "intent": "out_of_scope",
        "texts": {str(ids["mikä sää on huomenna"]): taken}}, expect=422)
    assert [p["code"] for p in refused["problems"]] == ["duplicate_across_intents"]
    assert (await admin.get("/admin/api/inbox"))["total"] == 1


async def test_dismissing_and_restoring(server, admin, connect):
    ids = await chat(server, connect, ["mikä sää on huomenna", "kelan tuki vuokraan"])
    await admin.post("/admin/api/inbox/dismiss", {"message_ids": [ids["mikä sää on huomenna"]]})
    inbox = await admin.get("/admin/api/inbox")
    assert [i["text"] for g in inbox["groups"] for i in g["items"]] == ["kelan tuki vuokraan"]
    decided = await server.sql("SELECT action, staff_name FROM admin_inbox_decisions")
    assert decided == [("dismissed", "Testi Admin")]
    await admin.post("/admin/api/inbox/restore", {"message_ids": [ids["mikä sää on huomenna"]]})
    assert (await admin.get("/admin/api/inbox"))["total"] == 2
    await admin.post("/admin/api/inbox/dismiss", {"message_ids": ["x"]}, expect=400)


async def test_assigning_a_text_with_personal_data_is_refused_pointing_at_the_message(server, admin, connect,
                                                                                    training_copy):
    ids = await chat(server, connect, ["paljonko on asumistuki", "asumistuki paljonko saa", "mikä sää on huomenna"])
    path = training_copy / "intents" / "housing_allowance.yml"
    before = path.read_bytes()
    first, second = ids["paljonko on asumistuki"], ids["asumistuki paljonko saa"]
    for text in ("paljonko on asumistuki, soita 040 123 4567", "asumistuki hetu 131052-308T",
                 "asumistuki, vastaa maija@example.fi"):
        refused = await admin.post("/admin/api/inbox/assign", {
            "message_ids": [first, second], "intent": "housing_allowance",
            "texts": {str(first): "paljonko on asumistuki", str(second): text}}, expect=422)
        [problem] = refused["problems"]
        assert problem["code"] == "personal_data"
        assert problem["item"] == {"kind": "message", "message_id": second, "intent": "housing_allowance",
                                   "language": "fi"}
        assert "henkilötietoja" in problem["message"]["fi"]
        # Nothing written: not the file, not the history, not a decision; both still in the inbox.
        assert path.read_bytes() == before
        assert (await admin.get("/admin/api/changes"))["changes"] == []
        assert await server.sql("SELECT count(*) FROM admin_inbox_decisions") == [(0,)]
        assert (await admin.get("/admin/api/inbox"))["total"] == 3
    # A redacted text as stored (with the redaction's marker) may go in as it is.
    await admin.post("/admin/api/inbox/assign", {
        "message_ids": [second], "intent": "housing_allowance",
        "texts": {str(second): "asumistuki, soitin numeroon [PHONE]"}})
    assert "asumistuki, soitin numeroon [PHONE]" in yaml.safe_load(path.read_text())["examples"]["fi"]


async def test_grouping_runs_in_a_thread_with_tfidf_computed_once(server, admin, connect, monkeypatch):
    await chat(server, connect, ["paljonko on asumistuki", "asumistuki paljonko saa", "mikä sää on huomenna"])
    calls = []
    real = similarity.tfidf

    def counting(texts):
        calls.append(threading.current_thread())
        return real(texts)

    monkeypatch.setattr(similarity, "tfidf", counting)
    inbox = await admin.get("/admin/api/inbox")
    assert inbox["total"] == 3 and sorted(g["size"] for g in inbox["groups"]) == [1, 2]
    assert len(calls) == 1, "TF-IDF computed more than once per view"
    assert calls[0] is not threading.main_thread(), "grouping ran on the event loop's thread"


class SlowNlu:
    """Rasa taking a while per parse; counts the parses in flight."""

    url = "slow"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most = 0
        self.calls = 0

    async def parse(self, text: str) -> NluResult:
        self.calls += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return NluResult("housing_allowance", 0.3, LOW)

    async def close(self) -> None:
        pass


async def test_guesses_missing_from_storage_are_asked_a_few_at_a_time(launch, sqlite_settings, training_copy):
    nlu = SlowNlu(0.3)
    bot = Bot(Content.load(training_copy), nlu, fallback_threshold=0.4)
    server = await launch(sqlite_settings, bot=bot, POLKU_TRAINING_DATA_DIR=str(training_copy))
    texts = tuple(f"kysymys numero {word}" for word in ("yksi", "kaksi", "kolme", "neljä", "viisi", "kuusi",
                                                        "seitsemän", "kahdeksan"))
    # Stored without guesses (as before guesses were stored, or while Rasa was down).
    await seed_conversation(server, created_at=datetime.now(timezone.utc), resident_texts=texts,
                            intent="nlu_fallback", confidence=0.0)
    admin = await AdminClient.sign_in(server)
    try:
        inbox = await admin.get("/admin/api/inbox")
        items = [i for g in inbox["groups"] for i in g["items"]]
        assert len(items) == len(texts) and all(len(i["guesses"]) == 3 for i in items)
        assert nlu.calls == len(texts)
        assert nlu.most > 1, "asked Rasa one message after another"
        assert nlu.most <= inbox_module.RECOMPUTE_CONCURRENCY
        assert await server.count("message_intent_guesses") == len(texts)
        # Stored now: the next view asks Rasa nothing.
        await admin.get("/admin/api/inbox")
        assert nlu.calls == len(texts)
    finally:
        await admin.close()


class FlakyNlu(ScriptedNlu):
    """Rasa that is down for the texts in ``down``."""

    down = {"voinko saada tukea vuokraan", "miten haen asumistukea"}

    async def parse(self, text: str) -> NluResult:
        from bot.nlu import NluUnavailable

        if text in self.down:
            raise NluUnavailable("Rasa at scripted did not answer: ClientConnectorError")
        return await super().parse(text)


async def test_a_rasa_outage_is_not_counted_as_not_understood(launch, sqlite_settings, training_copy, connect):
    bot = Bot(Content.load(training_copy), FlakyNlu(), fallback_threshold=0.4)
    server = await launch(sqlite_settings, bot=bot, POLKU_TRAINING_DATA_DIR=str(training_copy))
    admin = await AdminClient.sign_in(server)
    try:
        ids = await chat(server, connect, [*sorted(FlakyNlu.down), "paljonko on asumistuki"])
        rows = dict((mid, (intent, confidence)) for mid, intent, confidence in await server.sql(
            "SELECT id, intent, confidence FROM messages WHERE sender = 'resident'"))
        for text in FlakyNlu.down:  # marked as unread, apart from what the model did not understand
            assert rows[ids[text]] == ("nlu_unavailable", None)
        assert rows[ids["paljonko on asumistuki"]][0] == "nlu_fallback"
        inbox = await admin.get("/admin/api/inbox")
        texts = {item["text"] for group in inbox["groups"] for item in group["items"]}
        assert texts == {"paljonko on asumistuki"} and inbox["total"] == 1
    finally:
        await admin.close()
