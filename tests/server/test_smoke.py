"""`python -m chat_server` as a real process, on embedded defaults."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp

from bot.settings import PROJECT_ROOT

from .helpers import ResidentClient, free_port


STARTUP_TIMEOUT_SECS = 30


async def _wait_healthy(url: str, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(STARTUP_TIMEOUT_SECS * 10):
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}")
            try:
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not become healthy")


async def test_serve_as_a_process(tmp_path, closed_rasa_url):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLKU_")}
    env.update(POLKU_DATA_DIR=str(tmp_path), POLKU_RASA_URL=closed_rasa_url, POLKU_PORT="1")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        # --port overrides POLKU_PORT (which would not even be usable).
        proc = subprocess.Popen([sys.executable, "-m", "chat_server", "--port", str(port)],
                                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    client = ResidentClient(url)
    try:
        await _wait_healthy(url, proc)
        await client.connect()
        session_id = await client.session()
        await client.next("bot_uttered")  # welcome
        secret = "Soita minulle 040 7654321, hetu 131052-308T"
        client_id = await client.say(secret)
        await client.ack(client_id)
        answer = await client.next("bot_uttered")
        assert answer["metadata"]["sender"] == "bot"
    finally:
        await client.close()
        proc.terminate()
        proc.wait(timeout=10)
    assert (tmp_path / "polku.db").exists()  # the embedded default: SQLite in POLKU_DATA_DIR
    logged = log_path.read_text()
    # INFO logs carry ids and lengths, never what the resident wrote or their session id.
    assert "chat server ready" in logged
    assert "7654321" not in logged and "131052" not in logged and session_id not in logged
    access = [line for line in logged.splitlines() if '"GET ' in line]
    assert access and not any("127.0.0.1" in line for line in access)  # no client addresses
