"""The counsellor queue across Redis outages (a Redis of the test's own, killed
and started again empty): handing off while Redis is away, and the queue
restored from the database when it is back."""

from __future__ import annotations

import asyncio
import time

import redis as redis_lib

from chat_server.queue_redis import QueueKeeper

from .counsellor_helpers import StaffBrowser, create_staff
from .test_scaling import _start_redis, own_redis  # noqa: F401 (a fixture)

CRISIS_TEXT = "en jaksa enää elää"


def _port(redis_url: str) -> int:
    return int(redis_url.rsplit(":", 1)[1].split("/")[0])


async def _queued_state(client, where=None) -> dict:
    return await client.next("handoff_state", lambda s: s["state"] in ("queued", "unavailable")
                             and (where is None or where(s)))


async def test_handing_off_while_redis_is_away_and_the_queue_after_it_is_back(
        launch, postgres_settings, own_redis, connect, tmp_path):  # noqa: F811
    redis_url, proc = own_redis
    server = await launch(postgres_settings, POLKU_REDIS_URL=redis_url)
    prefix = postgres_settings["POLKU_REDIS_PREFIX"]
    # A counsellor's console on another process.
    other = await launch(postgres_settings, POLKU_REDIS_URL=redis_url)
    await create_staff(server, "anna")
    anna = StaffBrowser(other)
    await anna.sign_in("anna")
    console = await anna.open_console()
    first = await connect(server)
    await first.session()
    await first.ack(await first.say("/request_counsellor"))
    assert (await _queued_state(first))["position"] == 1

    proc.kill()
    proc.wait()
    # While Redis is away: handed off all the same, at the place the database gives.
    second = await connect(server)
    await second.session()
    await second.ack(await second.say("/request_counsellor"))
    assert (await _queued_state(second))["position"] == 2
    # A resident in crisis gets the emergency guidance at once, and goes first.
    third = await connect(server)
    await third.session()
    await third.ack(await third.say(CRISIS_TEXT))
    crisis = await third.next("bot_uttered", lambda b: b["metadata"]["sender"] == "bot")
    assert "112" in crisis["text"]
    assert (await _queued_state(third))["position"] == 1
    rows = await server.sql("SELECT id, priority FROM conversations WHERE handoff_state = 'queued' ORDER BY id")
    assert [priority for _, priority in rows] == ["normal", "normal", "crisis"]

    # Redis is back, empty: the queue is whole again within seconds, crisis first,
    # and the residents are told their places.
    back = _start_redis(_port(redis_url), None)
    try:
        began = time.monotonic()
        client = redis_lib.Redis.from_url(redis_url)
        expected = [rows[2][0], rows[0][0], rows[1][0]]
        while [int(m) for m in client.zrange(prefix + "queue", 0, -1)] != expected:
            assert time.monotonic() - began < 5, client.zrange(prefix + "queue", 0, -1)
            await asyncio.sleep(0.05)
        client.close()
        assert (await _queued_state(first, lambda s: s["position"] == 2))
        assert (await _queued_state(second, lambda s: s["position"] == 3))
        # The console on the other process gets the whole queue again, and its counsellor is
        # online again at once (not at the next heartbeat): the residents are "queued".
        await console.next("queue", lambda q: [c["conversation_id"] for c in q["conversations"]] == expected)
        assert (await _queued_state(third, lambda s: s["state"] == "queued" and s["position"] == 1))
    finally:
        back.kill()
        back.wait()
        await anna.close()


async def test_the_keeper_removes_a_stray_only_when_seen_twice(launch, postgres_settings, own_redis):  # noqa: F811
    redis_url, _ = own_redis
    server = await launch(postgres_settings, POLKU_REDIS_URL=redis_url)
    queue = server.server.queue
    restored: list = []

    async def on_restored(added):
        restored.append(added)
    keeper = QueueKeeper(queue, server.server.conversations.queued, on_restored, full_check_secs=0)
    # Left behind by a process killed between its Redis write and its commit.
    client = redis_lib.Redis.from_url(redis_url)
    client.zadd(postgres_settings["POLKU_REDIS_PREFIX"] + "queue", {"999999": 1})
    try:
        await keeper.check()
        assert await queue.conversation_ids() == [999999]  # once: it may be committing
        await keeper.check()
        assert await queue.conversation_ids() == []
        assert restored == [[]]  # the queue changed: residents and consoles are told
    finally:
        client.close()
