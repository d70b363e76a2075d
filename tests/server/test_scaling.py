"""Several server processes (here: two apps on two ports) sharing PostgreSQL
and Redis, and what happens when Redis or the database goes away."""

from __future__ import annotations

import os
import subprocess
import time

import aiohttp
import psycopg
import pytest
import redis as redis_lib

from .helpers import free_port

# The same server the shared pg_url fixture (tests/conftest.py) creates databases on.
PG_ADMIN_DSN = os.environ.get("POLKU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")



async def test_events_cross_processes_through_redis(launch, postgres_settings, connect):
    a = await launch(postgres_settings)
    b = await launch(postgres_settings)
    on_a = await connect(a)
    session_id = await on_a.session()
    await on_a.next("bot_uttered")
    on_b = await connect(b)
    assert await on_b.session(session_id) == session_id
    await on_b.next("handoff_state")

    await on_a.ack(await on_a.say("moi"))
    answer = await on_a.next("bot_uttered")
    assert await on_b.next("bot_uttered") == answer  # sent by a, delivered by b

    # And the other way round, with a handoff: b's state change reaches a.
    await on_b.ack(await on_b.say("/join_queue"))  # nobody online: the resident chooses to wait
    state = await on_b.next("handoff_state")
    assert await on_a.next("handoff_state") == state


async def test_limits_and_queue_are_shared_between_processes(launch, postgres_settings, connect):
    a = await launch(postgres_settings, POLKU_RATE_SESSION_PER_MIN=3)
    b = await launch(postgres_settings, POLKU_RATE_SESSION_PER_MIN=3)
    await a.server.presence.heartbeat("anna", "Anna")
    on_a = await connect(a)
    session_id = await on_a.session()
    on_b = await connect(b)
    await on_b.session(session_id)
    await on_a.ack(await on_a.say("/request_counsellor"))
    await on_a.ack(await on_a.say("moi"))
    await on_b.ack(await on_b.say("moi"))
    await on_b.say("moi")
    await on_b.error("rate_limited")

    other = await connect(b)  # queued through b, behind the one queued through a
    await other.session()
    await other.ack(await other.say("/request_counsellor"))
    state = await other.next("handoff_state")
    assert (state["state"], state["position"]) == ("queued", 2)  # a's counsellor counts on b


def _start_redis(port: int, directory) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", *(["--dir", str(directory)] if directory else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis_lib.Redis(port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return proc
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise
                time.sleep(0.02)
    finally:
        client.close()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which the test may kill."""
    port = free_port()
    proc = _start_redis(port, tmp_path)
    yield f"redis://127.0.0.1:{port}/0", proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def _get_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return response.status, await response.json()


async def test_redis_outage_the_bot_keeps_answering_and_the_server_keeps_running(
        launch, postgres_settings, own_redis, connect):
    redis_url, proc = own_redis
    server = await launch(postgres_settings, POLKU_REDIS_URL=redis_url)
    client = await connect(server)
    await client.session()
    await client.ack(await client.say("moi"))
    await client.next("bot_uttered")
    messages = await server.count("messages")

    proc.kill()
    proc.wait()
    # A bot turn needs the database, not Redis: answered as usual (limits count in memory).
    client_id = await client.say("moi taas")
    await client.ack(client_id)
    answer = await client.next("bot_uttered", lambda body: body["metadata"]["sender"] == "bot"
                               and body["metadata"]["message_id"] > messages)
    assert answer["text"]
    fresh = await connect(server)
    await fresh.session()  # a new session too
    assert (await fresh.next("bot_uttered"))["metadata"]["sender"] == "system"  # its welcome
    # The message and its answer (a new session writes nothing before its first message).
    assert await server.count("messages") == messages + 2

    status, body = await _get_json(server.url + "/health")
    assert status == 200
    status, body = await _get_json(server.url + "/ready")
    assert status == 200 and body["checks"]["redis"] == "error" and body["checks"]["database"] == "ok"

    # Redis comes back: shared again, without a restart.
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    back = _start_redis(port, None)
    try:
        client_id = await client.say("olen taas täällä")
        await client.ack(client_id)
        status, body = await _get_json(server.url + "/ready")
        assert body["checks"]["redis"] == "ok"
    finally:
        back.kill()
        back.wait()


def _allow_connections(dbname: str, allow: bool) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                         (dbname,))


async def test_database_outage_is_server_busy_and_the_server_keeps_running(
        launch, postgres_settings, pg_url, connect):
    server = await launch(postgres_settings)
    client = await connect(server)
    await client.session()
    await client.ack(await client.say("moi"))
    dbname = pg_url.rsplit("/", 1)[1]

    _allow_connections(dbname, False)
    try:
        client_id = await client.say("moi taas")
        assert (await client.error("server_busy"))["client_id"] == client_id
        # A new session needs no database until its first message: the id and the welcome come.
        fresh = await connect(server)
        await fresh.session()
        assert (await fresh.next("bot_uttered"))["metadata"]["sender"] == "system"
        first_id = await fresh.say("hei")
        assert (await fresh.error("server_busy"))["client_id"] == first_id
        status, body = await _get_json(server.url + "/ready")
        assert status == 503 and body["checks"]["database"] == "error"
        assert (await _get_json(server.url + "/health"))[0] == 200
    finally:
        _allow_connections(dbname, True)

    # The database is back: the same server answers again.
    client_id = await client.say("moi taas")
    await client.ack(client_id)
    assert await server.sql("SELECT count(*) FROM messages WHERE client_id = :c", c=client_id) == [(1,)]
