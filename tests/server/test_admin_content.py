"""Editing the training data from the admin API: who may, what is checked
(errors point at the item), what is written (atomic, in the files' own
layout), what is recorded, how undo restores it, and that the running bot
answers with the edit at once."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from chat_server.admin.changes import CONTENT_WATCH_INTERVAL_SECS

from .admin_support import AdminClient, admin_of
from .helpers import OWN_BOT


@pytest.fixture
async def admin_server(launch, sqlite_settings, training_copy, tmp_path):
    return await launch(sqlite_settings, bot=OWN_BOT, POLKU_TRAINING_DATA_DIR=str(training_copy),
                        POLKU_MODEL_DIR=str(tmp_path / "models"))


@pytest.fixture
async def admin(admin_server):
    client = await AdminClient.sign_in(admin_server)
    yield client
    await client.close()


def _intent_file(training_copy, intent: str) -> dict:
    return yaml.safe_load((training_copy / "intents" / f"{intent}.yml").read_text(encoding="utf-8"))


async def test_only_signed_in_admins_with_the_csrf_token(admin_server, admin):
    anonymous = AdminClient(admin_server, None, None)
    counsellor = await AdminClient.sign_in(admin_server, role="counsellor")
    try:
        assert (await anonymous.get("/admin/api/content", expect=401))["error"] == "not_signed_in"
        page = await anonymous.http.get(admin_server.url + "/admin", headers={"Accept": "text/html"},
                                        allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/login?next=")
        await counsellor.get("/admin/api/content", expect=403)
        await counsellor.change({"kind": "description", "intent": "greet", "after": "x"}, expect=403)
        await admin.request("POST", "/admin/api/changes", {"kind": "description", "intent": "greet",
                                                            "after": "x"}, csrf=False, expect=403)
        html = await admin.get("/admin")
        assert admin.csrf in html and 'lang="fi"' in html
        assert await admin.get("/admin/static/admin.js", expect=200)
    finally:
        await anonymous.close()
        await counsellor.close()


async def test_adding_an_example_writes_one_line_and_records_who(admin_server, admin, training_copy):
    path = training_copy / "intents" / "housing_problem.yml"
    before = path.read_text(encoding="utf-8")
    result = await admin.change({"kind": "example", "intent": "housing_problem", "language": "fi",
                                 "after": "  vuokranantaja  uhkaa häätää  "})
    change = result["change"]
    assert change["kind"] == "example" and change["before"] is None
    assert change["after"] == "vuokranantaja uhkaa häätää"  # spacing tidied
    assert change["staff_name"] == "Testi Admin"
    after = path.read_text(encoding="utf-8")
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert added == ["    - vuokranantaja uhkaa häätää"]
    assert len(after.splitlines()) == len(before.splitlines()) + 1
    assert not list(training_copy.glob("intents/.*.tmp"))  # the temporary file was renamed
    history = (await admin.get("/admin/api/changes"))["changes"]
    assert history[0]["id"] == change["id"] and history[0]["undone_by"] is None
    # The running bot has it (its language lexicon too); the model needs a retrain.
    bot = admin_server.server.bot
    assert "vuokranantaja uhkaa häätää" in bot.content.intents["housing_problem"].examples["fi"]


async def test_errors_point_at_the_item_and_change_nothing(admin_server, admin, training_copy):
    files = {p: p.read_bytes() for p in training_copy.rglob("*.yml")}
    existing = _intent_file(training_copy, "income_support_basic")["examples"]["fi"][0]

    refused = await admin.change({"kind": "example", "intent": "housing_problem", "language": "fi",
                                  "after": existing.upper() + "!"}, expect=422)
    [problem] = refused["problems"]
    assert problem["code"] == "duplicate_across_intents"
    count = len(_intent_file(training_copy, "housing_problem")["examples"]["fi"])
    assert problem["item"] == {"kind": "example", "intent": "housing_problem", "language": "fi", "index": count}
    assert problem["params"]["other_intent"] == "income_support_basic"
    assert "income_support_basic" in problem["message"]["fi"]

    greet = admin_server.server.bot.content.responses["greet"]
    texts = dict(greet["text"])
    cases = [
        ({**texts, "sv": "  "}, [], "empty_answer", {"kind": "answer", "response": "greet", "language": "sv"}),
        ({**texts, "en": "Call {nonexistent_phone}"}, [], "unknown_placeholder",
         {"kind": "answer", "response": "greet", "language": "en"}),
        ({**texts, "fi": "Hei {"}, [], "malformed_placeholder",
         {"kind": "answer", "response": "greet", "language": "fi"}),
        (texts, [{"payload": "/no_such_topic", "title": {"fi": "a", "sv": "b", "en": "c"}}], "bad_payload",
         {"kind": "quick_reply", "response": "greet", "index": 0}),
        (texts, [{"payload": "/greet", "title": {"fi": "a", "sv": "", "en": "c"}}], "missing_title",
         {"kind": "quick_reply", "response": "greet", "index": 0, "language": "sv"}),
    ]
    for text, replies, code, item in cases:
        refused = await admin.change({"kind": "answer", "response": "greet",
                                      "after": {"text": text, "quick_replies": replies}}, expect=422)
        assert [(p["code"], p["item"]) for p in refused["problems"]] == [(code, item)], code

    refused = await admin.change({"kind": "fact", "fact": "polku_phone",
                                  "after": {"value": {"fi": "040 123", "sv": "", "en": "040 123"},
                                            "checked": "23.11.2026"}}, expect=422)
    assert sorted((p["code"], p["item"].get("language"), p["item"].get("field"))
                  for p in refused["problems"]) == [("bad_date", None, "checked"),
                                                    ("missing_language_fact", "sv", None)]
    refused = await admin.change({"kind": "hours", "channel": "chat",
                                  "after": {"mon": "9-15", "tue": "15:00-09:00"}}, expect=422)
    assert sorted(p["item"]["day"] for p in refused["problems"]) == ["mon", "tue"]
    refused = await admin.change({"kind": "example", "intent": "greet", "language": "de", "after": "hallo"},
                                 expect=422)
    assert refused["problems"][0]["code"] == "unknown_language"
    refused = await admin.change({"kind": "example", "intent": "greet", "language": "fi",
                                  "after": "rivi\ntoinen"}, expect=422)
    assert refused["problems"][0]["code"] == "example_line_break"

    assert {p: p.read_bytes() for p in training_copy.rglob("*.yml")} == files
    assert (await admin.get("/admin/api/changes"))["changes"] == []


async def test_answer_edit_takes_effect_at_once_and_undo_restores_the_file(admin_server, admin, training_copy,
                                                                        connect):
    path = training_copy / "responses.yml"
    original = path.read_bytes()
    greet = (await admin.get("/admin/api/content"))["responses"]["greet"]
    new_text = {**greet["text"], "fi": "Moi! Olen Polun botti. Soita {polku_phone}."}
    change = (await admin.change({"kind": "answer", "response": "greet",
                                  "after": {"text": new_text, "quick_replies": greet["quick_replies"]}}))["change"]
    assert change["before"]["text"]["fi"] == greet["text"]["fi"]
    assert change["after"]["text"]["fi"] == new_text["fi"]
    edited = path.read_text(encoding="utf-8")
    assert edited.startswith("# Every text a resident can get")  # comments kept
    assert "# Shown when \"yes\" answers a pending question" in edited
    assert '    fi: "Moi! Olen Polun botti. Soita {polku_phone}."' in edited

    resident = await connect(admin_server)
    await resident.session(None, language="fi")
    await resident.next("bot_uttered")
    await resident.say("/greet", language="fi")
    answer = await resident.next("bot_uttered")
    # polku_phone is not filled: its sentence is replaced by the fact's safe sentence, never shown.
    assert answer["text"] == "Moi! Olen Polun botti. Polun yhteystiedot löydät hyvinvointialueen verkkosivuilta."

    undo = (await admin.post(f"/admin/api/changes/{change['id']}/undo"))["change"]
    assert undo["undo_of"] == change["id"] and undo["source"] == "undo"
    assert path.read_bytes() == original
    history = {c["id"]: c for c in (await admin.get("/admin/api/changes"))["changes"]}
    assert history[change["id"]]["undone_by"] == undo["id"]
    await admin.post(f"/admin/api/changes/{change['id']}/undo", expect=409)  # once only

    await resident.say("/greet", language="fi")
    assert (await resident.next("bot_uttered"))["text"] == admin_server.server.bot.content.reply("greet", "fi").text

    # Undoing the undo makes the change stand again.
    await admin.post(f"/admin/api/changes/{undo['id']}/undo")
    assert '    fi: "Moi! Olen Polun botti. Soita {polku_phone}."' in path.read_text(encoding="utf-8")
    history = {c["id"]: c for c in (await admin.get("/admin/api/changes"))["changes"]}
    assert history[change["id"]]["undone_by"] is None


async def test_undo_is_refused_when_the_item_changed_again(admin, training_copy):
    first = (await admin.change({"kind": "example", "intent": "thanks", "language": "en",
                                 "after": "cheers mate"}))["change"]
    await admin.change({"kind": "example", "intent": "thanks", "language": "en",
                        "before": "cheers mate", "after": "cheers, my friend"})
    refused = await admin.post(f"/admin/api/changes/{first['id']}/undo", expect=409)
    assert refused["error"] == "conflict"
    assert "cheers, my friend" in _intent_file(training_copy, "thanks")["examples"]["en"]


async def test_fact_and_hours_edits_keep_the_files_comments(admin_server, admin, training_copy):
    path = training_copy / "service_facts.yml"
    before = path.read_text(encoding="utf-8")
    await admin.change({"kind": "fact", "fact": "polku_address",
                        "after": {"value": {"fi": "Vesijärvenkatu 1, Lahti", "sv": "Vesijärvenkatu 1, Lahtis",
                                            "en": "Vesijärvenkatu 1, Lahti"},
                                  "checked": "2026-11-24", "placeholder": False}})
    await admin.change({"kind": "hours", "channel": "chat",
                        "after": {"mon": "09:00-16:00", "tue": "09:00-15:00", "wed": "09:00-15:00",
                                  "thu": "09:00-15:00", "fri": "09:00-14:00"}})
    after = path.read_text(encoding="utf-8")
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in after.splitlines() if line.lstrip().startswith("#")]
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ['      fi: "Vesijärvenkatu 1, Lahti"', '      sv: "Vesijärvenkatu 1, Lahtis"',
                       '      en: "Vesijärvenkatu 1, Lahti"', "    checked: 2026-11-24",
                       '  chat:    {mon: "09:00-16:00", tue: "09:00-15:00", wed: "09:00-15:00", '
                       'thu: "09:00-15:00", fri: "09:00-14:00"}']
    facts = yaml.safe_load(after)
    assert "placeholder" not in facts["facts"]["polku_address"]
    content = admin_server.server.bot.content
    assert content.fact("polku_address", "sv") == "Vesijärvenkatu 1, Lahtis"
    assert content.opening_hours["chat"]["mon"] == "09:00-16:00"


async def test_an_edit_made_elsewhere_reaches_the_running_bot(admin_server, training_copy):
    """Another server process (or a person with an editor) changed the files."""
    path = training_copy / "responses.yml"
    text = path.read_text(encoding="utf-8")
    old = admin_server.server.bot.content.reply("thanks", "en").text
    path.write_text(text.replace(old, "Glad to help!"), encoding="utf-8")
    for _ in range(int(CONTENT_WATCH_INTERVAL_SECS * 10) + 30):
        if admin_server.server.bot.content.reply("thanks", "en").text == "Glad to help!":
            break
        await asyncio.sleep(0.1)
    assert admin_server.server.bot.content.reply("thanks", "en").text == "Glad to help!"
    assert admin_of(admin_server).content.directory == training_copy


# --- personal data never goes into the training data ------------------------------------------

PERSONAL = ["asiakas 131052-308T kysyy toimeentulotuesta",  # identity code
            "soittakaa minulle numeroon 040 123 4567",  # phone number
            "vastaus osoitteeseen matti.meikalainen@example.com kiitos"]  # e-mail address


async def test_examples_with_personal_data_are_refused_and_nothing_is_written(admin, training_copy):
    files = {p: p.read_bytes() for p in training_copy.rglob("*.yml")}
    examples = _intent_file(training_copy, "housing_problem")["examples"]["fi"]
    for text in PERSONAL:
        refused = await admin.change({"kind": "example", "intent": "housing_problem", "language": "fi",
                                      "after": text}, expect=422)
        [problem] = refused["problems"]
        assert problem["code"] == "personal_data", text
        assert problem["item"] == {"kind": "example", "intent": "housing_problem", "language": "fi",
                                   "index": len(examples)}
        message = problem["message"]["fi"]
        assert "henkilötietoja" in message and "henkilötunnus" in message and "puhelinnumero" in message
        assert "sähköpostiosoite" in message and "opetusaineistoon" in message
        assert text not in str(refused)  # the personal data is not echoed back
        # Editing an existing example into one with personal data: pointed at that example.
        refused = await admin.change({"kind": "example", "intent": "housing_problem", "language": "fi",
                                      "before": examples[2], "after": text}, expect=422)
        assert [(p["code"], p["item"]["index"]) for p in refused["problems"]] == [("personal_data", 2)]
    assert {p: p.read_bytes() for p in training_copy.rglob("*.yml")} == files
    assert (await admin.get("/admin/api/changes"))["changes"] == []

    # The redaction's own markers hold no personal data (and are what the model sees at run time).
    added = await admin.change({"kind": "example", "intent": "housing_problem", "language": "fi",
                                "after": "soittakaa minulle numeroon [PHONE]"})
    assert added["change"]["after"] == "soittakaa minulle numeroon [PHONE]"


# --- two admins: an item changed since the page loaded it is not overwritten ------------------


async def test_an_item_changed_since_the_page_loaded_it_is_not_overwritten(admin_server, admin, training_copy):
    other = await AdminClient.sign_in(admin_server)
    try:
        loaded = await admin.get("/admin/api/content")  # the first admin's page
        versions = loaded["versions"]
        greet = loaded["responses"]["greet"]
        # The other admin saves first.
        await other.change({"kind": "answer", "response": "greet",
                            "after": {"text": {**greet["text"], "fi": "Hei, toisen ylläpitäjän teksti."},
                                      "quick_replies": greet["quick_replies"]}})
        await other.change({"kind": "description", "intent": "greet", "after": "toisen kuvaus"})
        await other.change({"kind": "fact", "fact": "polku_phone",
                            "after": {"value": "09 000 0000", "checked": "2026-11-01"}})
        await other.change({"kind": "hours", "channel": "chat", "after": {"mon": "10:00-12:00"}})
        files = {p: p.read_bytes() for p in training_copy.rglob("*.yml")}
        history = (await admin.get("/admin/api/changes"))["changes"]

        stale = [
            {"kind": "answer", "response": "greet", "version": versions["answer"]["greet"],
             "after": {"text": {**greet["text"], "fi": "Hei, ensimmäisen teksti."},
                       "quick_replies": greet["quick_replies"]}},
            {"kind": "description", "intent": "greet", "version": versions["description"]["greet"],
             "after": "ensimmäisen kuvaus"},
            {"kind": "fact", "fact": "polku_phone", "version": versions["fact"]["polku_phone"],
             "after": {"value": "09 111 1111"}},
            {"kind": "hours", "channel": "chat", "version": versions["hours"]["chat"],
             "after": {"tue": "09:00-15:00"}},
        ]
        for body in stale:
            refused = await admin.post("/admin/api/changes", body, expect=409)
            assert refused["error"] == "conflict", body["kind"]
            assert "Lataa sivu uudelleen" in refused["message"]["fi"]
            assert set(refused["message"]) == {"fi", "sv", "en"}
            # A page that sends no version at all (loaded before this check existed) is refused alike.
            without = {k: v for k, v in body.items() if k != "version"}
            assert (await admin.post("/admin/api/changes", without, expect=409))["error"] == "conflict"
        assert {p: p.read_bytes() for p in training_copy.rglob("*.yml")} == files
        assert (await admin.get("/admin/api/changes"))["changes"] == history

        # Reloaded, the first admin sees the other's edit and can save over it knowingly.
        fresh = await admin.get("/admin/api/content")
        assert fresh["responses"]["greet"]["text"]["fi"] == "Hei, toisen ylläpitäjän teksti."
        saved = await admin.post("/admin/api/changes", {**stale[0], "version": fresh["versions"]["answer"]["greet"]})
        assert saved["change"]["after"]["text"]["fi"] == "Hei, ensimmäisen teksti."
        # Unrelated items are not held up by the other admin's edits.
        thanks = loaded["responses"]["thanks"]
        await admin.post("/admin/api/changes", {
            "kind": "answer", "response": "thanks", "version": versions["answer"]["thanks"],
            "after": {"text": {**thanks["text"], "en": "Glad to help."}, "quick_replies": thanks.get("quick_replies", [])}})
    finally:
        await other.close()
