"""Personal data written with Unicode never gets past redaction, over the real
resident protocol: phone numbers with no-break, narrow no-break, thin and
ideographic spaces, identity codes with every Unicode dash, full-width and
other digits, zero-width characters, a full-width "@".

Each form goes over Socket.IO to a real server whose NLU is a stand-in Rasa
that records every text it is asked to parse, from a resident talking with
the bot and from one waiting in the queue. Afterwards the raw value, in
every form it could take (as sent, NFKC, the folded ASCII form, digits only,
JSON-escaped), is searched for in the database file's bytes (SQLite: the main
file, its -wal and any other file beside them) or in every row of every table
(PostgreSQL), in what the NLU received, and in everything the server logged.
The resident's own text around the data must be stored as written.

Also: a lone surrogate in a message is answered like any message, not as a
server fault.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import pytest
from aiohttp import web

from bot.normalize import fold

from .helpers import OWN_BOT, StandIn

HETU = "130875-736X"   # checked below: a valid code
PHONE = "044 739 18625"
IBAN = "FI21 1234 5600 0007 85"
EMAIL = "maija.virtanen@example.fi"


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# (what the resident writes, the token it must become)
VARIANTS = [
    (PHONE.replace(" ", "\u00a0"), "[PHONE]"),                      # no-break spaces
    (PHONE.replace(" ", "\u202f"), "[PHONE]"),                      # narrow no-break spaces
    ("044\u2009739\u300018625", "[PHONE]"),                         # thin + ideographic space
    ("+358\u00a044\u00a0739\u00a018625", "[PHONE]"),                # international, no-break
    (full_width(PHONE.replace(" ", "")), "[PHONE]"),               # full-width digits
    ("０４４\u00a0７３９－１８６２５", "[PHONE]"),                     # full width, no-break, full-width hyphen
    ("٠٤٤٧٣٩١٨٦٢٥", "[PHONE]"),                                     # Arabic-Indic digits
    ("044\u200b739\u200b18625", "[PHONE]"),                         # zero-width spaces
    *[(HETU.replace("-", dash), "[HETU]") for dash in
      ("\u2011", "\u2010", "\u2012", "\u2013", "\u2014", "\u2212", "\ufe63", "\uff0d")],
    (full_width(HETU), "[HETU]"),                                   # full-width code, letter too
    ("130875\u00a0\u2011\u00a0736X", "[HETU]"),                     # mixed
    (IBAN.replace(" ", "\u00a0"), "[IBAN]"),
    (full_width(IBAN).replace("\uff00", " "), "[IBAN]"),
    (EMAIL.replace("@", "\uff20"), "[EMAIL]"),                      # full-width @
]


def needles(raw: str) -> set[str]:
    """Every form the raw value could be stored in."""
    forms = {raw, unicodedata.normalize("NFKC", raw), unicodedata.normalize("NFC", raw), fold(raw).text}
    digits = "".join(str(unicodedata.decimal(c)) for c in raw if unicodedata.decimal(c, None) is not None)
    raw_digits = "".join(c for c in raw if unicodedata.decimal(c, None) is not None)
    forms |= {digits, raw_digits}
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}  # as JSON with \\u escapes
    # Long enough that a timestamp or a hash cannot hold it by chance.
    return {form for form in forms if len(form) >= 6}


def assert_nowhere(haystack: bytes | str, where: str) -> None:
    if isinstance(haystack, str):
        haystack = haystack.encode("utf-8", "surrogatepass")
    for raw, _ in VARIANTS:
        for needle in needles(raw):
            assert needle.encode("utf-8", "surrogatepass") not in haystack, f"{needle!r} ({raw!r}) in {where}"


class RecordingRasa(StandIn):
    """Rasa's /model/parse and /status; keeps every text it was asked to parse."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/parse", self.parse)
        app.router.add_get("/status", self.status)

    async def parse(self, request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        self.texts.append(text)
        return web.json_response({"text": text, "intent": {"name": "housing_allowance", "confidence": 0.9},
                                  "intent_ranking": [{"name": "housing_allowance", "confidence": 0.9}]})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"model_file": "polku-20260101-000000.tar.gz"})


@pytest.fixture
async def recording_rasa():
    rasa = await RecordingRasa().start()
    yield rasa
    await rasa.stop()


def test_the_test_values_are_personal_data():
    from bot.redact import is_valid_hetu, redact
    assert is_valid_hetu(HETU)
    for value, token in ((PHONE, "[PHONE]"), (HETU, "[HETU]"), (IBAN, "[IBAN]"), (EMAIL, "[EMAIL]")):
        assert redact(value) == token
        assert all(len(n) >= 6 for n in needles(value)) and needles(value)


async def database_bytes(server) -> bytes:
    """SQLite: every file of the database (main, -wal, -shm, -journal), as bytes on disk now.
    PostgreSQL: every row of every table of the test's database, as text."""
    url = server.settings.database_url
    if url.startswith("sqlite"):
        main = Path(url.split("///", 1)[1])
        files = sorted(main.parent.glob(main.name + "*"))
        assert main in files and Path(str(main) + "-wal") in files, files
        return b"".join(path.read_bytes() for path in files)
    tables = [row[0] for row in await server.sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    assert "messages" in tables
    dump = []
    for table in tables:
        dump += [str(row[0]) for row in await server.sql(f'SELECT t::text FROM "{table}" t')]
    return "\n".join(dump).encode("utf-8")


async def test_unicode_personal_data_reaches_no_database_nlu_or_log(
        launch, backend_settings, recording_rasa, connect, caplog):
    caplog.set_level(logging.DEBUG)
    server = await launch(backend_settings, bot=OWN_BOT, POLKU_RASA_URL=recording_rasa.url)
    resident = await connect(server)
    await resident.session()
    await resident.next("bot_uttered")
    sent = []
    for index, (raw, token) in enumerate(VARIANTS):
        text = f"Hyvää\u00a0päivää 😊 soita {raw} kiitos…"
        sent.append((text, f"Hyvää\u00a0päivää 😊 soita {token} kiitos…"))
        # Client ids without digits, so that no digit in the database comes from the test itself.
        await resident.ack(await resident.say(text, client_id=f"variant-{chr(97 + index)}"))
        answer = await resident.next("bot_uttered")
        assert answer["metadata"]["sender"] == "bot"

    assert recording_rasa.texts == [expected.strip() for _, expected in sent]

    # A queued resident's messages go to no bot, but are stored (and read by the
    # crisis lexicon) all the same: the same redaction on that path.
    # A counsellor online: the request queues the chat (with nobody online the bot would
    # offer the queue and answer meanwhile).
    await server.server.presence.heartbeat("anna", "Anna")
    queued = await connect(server)
    await queued.session()
    await queued.next("bot_uttered")
    await queued.ack(await queued.say("/request_counsellor", client_id="to-the-queue"))
    assert (await queued.next("handoff_state"))["state"] in ("queued", "unavailable")
    for index, (raw, token) in enumerate(VARIANTS):
        text = f"Onko ketään? {raw}"
        sent.append((text, f"Onko ketään? {token}"))
        await queued.ack(await queued.say(text, client_id=f"queued-{chr(97 + index)}"))
    await queued.settle()

    stored = [row[0] for row in await server.sql(
        "SELECT text FROM messages WHERE sender = 'resident' AND text <> '/request_counsellor' ORDER BY id")]
    assert stored == [expected for _, expected in sent]  # the rest as the resident wrote it

    assert_nowhere(await database_bytes(server), f"the {server.settings.database_url.split(':')[0]} database")
    assert_nowhere("\n".join(recording_rasa.texts), "what the NLU received")
    assert_nowhere(caplog.text, "the server log")
    assert_nowhere("\n".join(str(r.args) for r in caplog.records), "the server log's arguments")


async def test_a_lone_surrogate_is_answered_like_any_message(launch, backend_settings, connect, caplog):
    server = await launch(backend_settings)
    resident = await connect(server)
    await resident.session()
    await resident.next("bot_uttered")
    client_id = await resident.say("hei \ud800 mulla ei oo rahaa \udc00 ruokaan 😊", client_id="surrogate")
    ack = await resident.ack(client_id)
    answer = await resident.next("bot_uttered")
    assert answer["metadata"]["sender"] == "bot" and answer["text"]
    assert not resident.pending("error")
    rows = await server.sql("SELECT text FROM messages WHERE id = :id", id=ack["message_id"])
    assert rows == [("hei \ufffd mulla ei oo rahaa \ufffd ruokaan 😊",)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_surrogate_in_the_client_id_is_a_malformed_payload(server, resident):
    await resident.emit("user_uttered", {"message": "hei", "session_id": resident.session_id,
                                         "customData": {"client_id": "x\ud800"}})
    assert (await resident.error("malformed_payload"))["code"] == "malformed_payload"
    assert await server.sql("SELECT count(*) FROM messages WHERE sender = 'resident'") == [(0,)]
