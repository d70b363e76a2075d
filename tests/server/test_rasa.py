"""End to end with the real Rasa server (trained once per test session):
resident socket -> chat server -> Bot -> Rasa -> answer, stored."""

from __future__ import annotations

import aiohttp
import pytest

from .helpers import OWN_BOT

pytestmark = pytest.mark.rasa


@pytest.fixture
async def rasa_server(launch, postgres_settings, rasa_url):
    return await launch(postgres_settings, bot=OWN_BOT, POLKU_RASA_URL=rasa_url)


async def test_topic_answer_through_rasa(rasa_server, connect):
    client = await connect(rasa_server)
    await client.session()
    await client.next("bot_uttered")
    client_id = await client.say("miten haetaan toimeentulotukea", language="fi")
    ack = await client.ack(client_id)
    answer = await client.next("bot_uttered")
    assert answer["metadata"]["sender"] == "bot" and answer["metadata"]["language"] == "fi"
    rows = await rasa_server.sql("SELECT intent, confidence FROM messages WHERE id = :id",
                                 id=ack["message_id"])
    assert rows[0][0] == "income_support_basic" and rows[0][1] > 0.45
    assert await rasa_server.sql("SELECT response_id FROM messages WHERE id = :id",
                                 id=answer["metadata"]["message_id"]) == [("income_support_basic",)]
    assert await rasa_server.sql("SELECT topic FROM conversations") == [("income_support_basic",)]


async def test_swedish_resident_gets_swedish_answers_and_errors(rasa_server, connect):
    client = await connect(rasa_server)
    await client.session(None, language="sv")
    welcome = await client.next("bot_uttered")
    assert welcome["metadata"]["language"] == "sv"
    await client.ack(await client.say("hej", language="sv"))
    assert (await client.next("bot_uttered"))["metadata"]["language"] == "sv"
    await client.emit("user_uttered", {"message": "x" * 5000, "session_id": client.session_id})
    assert "meddelande" in (await client.error("message_too_long"))["message"]


async def test_ready_sees_rasa(rasa_server):
    async with aiohttp.ClientSession() as session:
        async with session.get(rasa_server.url + "/ready") as response:
            body = await response.json()
    assert body["checks"] == {"database": "ok", "redis": "ok", "rasa": "ok"}
