"""Several Rasa servers behind one POLKU_RASA_URL (comma-separated): parses are
spread over them, one that is down or has no model is passed over, a parse
that timed out is not sent again, and readiness names the server that fails.
Model activation across several servers is tested in test_admin_models.py."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from bot.nlu import NluUnavailable, RasaClient, split_urls
from bot.settings import Settings, SettingsError

from .helpers import OWN_BOT, StandIn, free_port


class StandInParser(StandIn):
    """``/model/parse`` and ``/status`` as Rasa answers them; ``delay`` plays a
    slow server, ``no_model`` one that has no model loaded."""

    def __init__(self, *, delay: float = 0.0, no_model: bool = False) -> None:
        self.delay = delay
        self.no_model = no_model
        self.parses = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/parse", self.parse)
        app.router.add_get("/status", self.status)

    async def parse(self, request: web.Request) -> web.Response:
        self.parses += 1
        body = await request.json()
        await asyncio.sleep(self.delay)
        if self.no_model:
            return web.json_response({"text": body["text"], "intent": {}, "entities": []})
        return web.json_response({"text": body["text"], "intent": {"name": "greet", "confidence": 0.9},
                                  "intent_ranking": [{"name": "greet", "confidence": 0.9}]})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"model_file": "polku-20260101-000000.tar.gz"})


@pytest.fixture
async def stand_ins():
    started: list[StandInParser] = []

    async def make(**kwargs) -> StandInParser:
        started.append(await StandInParser(**kwargs).start())
        return started[-1]

    yield make
    for one in started:
        await one.stop()


def test_the_setting_lists_one_or_several_servers():
    assert split_urls("http://a:5005/") == ("http://a:5005",)
    assert split_urls(" http://a:5005, http://b:5006/ ,,http://a:5005") == ("http://a:5005", "http://b:5006")
    assert Settings(environ={"POLKU_RASA_URL": "http://a:1,http://b:2"}).rasa_urls == ("http://a:1", "http://b:2")
    with pytest.raises(SettingsError, match="POLKU_RASA_URL"):
        Settings(environ={"POLKU_RASA_URL": " , "}).rasa_urls


async def test_a_server_that_refuses_is_passed_over_and_rests(stand_ins, closed_rasa_url):
    good = await stand_ins()
    client = RasaClient([closed_rasa_url, good.url], 2.0)
    try:
        for _ in range(6):
            assert (await client.parse("hei")).intent == "greet"
        assert good.parses == 6
        closed = client.backends[0]
        # Refused once, then left alone for a while: no connection attempt per parse.
        assert closed.parses == 0 and closed.resting_until > time.monotonic()
    finally:
        await client.close()


async def test_a_server_without_a_model_is_passed_over(stand_ins):
    empty, good = await stand_ins(no_model=True), await stand_ins()
    client = RasaClient([empty.url, good.url], 2.0)
    try:
        results = await asyncio.gather(*(client.parse("hei") for _ in range(4)))
        assert {r.intent for r in results} == {"greet"}
        assert good.parses == 4 and empty.parses >= 1
    finally:
        await client.close()


async def test_when_every_server_is_down_the_parse_fails_at_once(closed_rasa_url):
    other = f"http://127.0.0.1:{free_port()}"
    client = RasaClient(f"{closed_rasa_url},{other}", 2.0)
    try:
        started = time.monotonic()
        with pytest.raises(NluUnavailable, match="did not answer"):
            await client.parse("hei")
        assert time.monotonic() - started < 1.0
    finally:
        await client.close()


async def test_a_parse_that_timed_out_is_not_sent_again(stand_ins):
    slow, quick = await stand_ins(delay=2.0), await stand_ins()
    client = RasaClient([slow.url, quick.url], 0.5)
    try:
        # Two at once: one goes to each server (fewest in flight first).
        results = await asyncio.gather(client.parse("hei"), client.parse("moi"), return_exceptions=True)
        failed = [r for r in results if isinstance(r, NluUnavailable)]
        assert len(failed) == 1 and "TimeoutError" in str(failed[0])
        assert slow.parses == 1 and quick.parses == 1  # the timed-out parse was not resent
        assert client.backends[0].resting_until == 0.0  # slow is not down
    finally:
        await client.close()


async def test_ready_names_the_rasa_server_that_does_not_answer(launch, sqlite_settings, stand_ins,
                                                                closed_rasa_url):
    good = await stand_ins()
    server = await launch(sqlite_settings, POLKU_RASA_URL=f"{good.url},{closed_rasa_url}")
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/ready") as response:
            body = await response.json()
    assert response.status == 200  # the database is fine; the bot answers through the other server
    assert body["checks"]["rasa"] == "error"
    assert closed_rasa_url in body["details"]["rasa"] and good.url not in body["details"]["rasa"]


async def test_a_busy_first_server_spills_to_an_idle_one_only_at_a_moderate_load(stand_ins):
    first, second = await stand_ins(delay=0.2), await stand_ins(delay=0.2)
    client = RasaClient([first.url, second.url], 5.0)  # spill_below=3, the default
    try:
        await client.parse("hei")
        assert (first.parses, second.parses) == (1, 0)  # one at a time: the first takes all
        # Eight at once: the second server takes one while the first is busy and few are in
        # flight; past that they queue for the first (at saturation a second busy Rasa would
        # take the core the chat server needs).
        await asyncio.gather(*(client.parse("hei") for _ in range(8)))
        assert (first.parses, second.parses) == (1 + 7, 1)
        # A server loading a model is passed over while another is up.
        with client.held_back(first.url + "/"):
            await asyncio.gather(*(client.parse("hei") for _ in range(3)))
        assert (first.parses, second.parses) == (8, 4)
        await client.parse("hei")
        assert first.parses == 9
    finally:
        await client.close()


async def test_spill_below_zero_spreads_evenly(stand_ins):
    first, second = await stand_ins(delay=0.1), await stand_ins(delay=0.1)
    client = RasaClient([first.url, second.url], 5.0, spill_below=0)
    try:
        for _ in range(4):
            await client.parse("hei")
        assert (first.parses, second.parses) == (2, 2)  # one at a time: they take turns
        await asyncio.gather(*(client.parse("hei") for _ in range(8)))
        assert (first.parses, second.parses) == (6, 6)  # at once: the fewest in flight first
    finally:
        await client.close()


@pytest.mark.rasa
async def test_two_real_rasa_servers_answer_alike(rasa_url, second_rasa_url):
    client = RasaClient(f"{rasa_url}, {second_rasa_url}/", 5.0, spill_below=0)
    try:
        assert client.urls == (rasa_url, second_rasa_url)
        results = [await client.parse("miten haen asumistukea") for _ in range(4)]
        results += await asyncio.gather(*(client.parse("miten haen asumistukea") for _ in range(4)))
        assert [b.parses for b in client.backends] == [4, 4]
        assert {r.intent for r in results} == {"housing_allowance"}
        assert len({round(r.confidence, 4) for r in results}) == 1  # the same model on both
    finally:
        await client.close()


@pytest.mark.rasa
async def test_a_resident_is_answered_through_two_rasa_servers(launch, postgres_settings, rasa_url,
                                                               second_rasa_url, connect):
    server = await launch(postgres_settings, bot=OWN_BOT, POLKU_RASA_URL=f"{rasa_url},{second_rasa_url}")
    client = await connect(server)
    await client.session()
    await client.next("bot_uttered")
    for text in ("miten haen asumistukea", "tarvitsen apua velkojen kanssa"):
        ack = await client.ack(await client.say(text, language="fi"))
        await client.next("bot_uttered")
        rows = await server.sql("SELECT intent FROM messages WHERE id = :id", id=ack["message_id"])
        assert rows[0][0] in ("housing_allowance", "debt_counselling")
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/ready") as response:
            assert (await response.json())["checks"]["rasa"] == "ok"
