"""Fixtures of the chat server tests: settings per backend, servers started
in-process on real ports, resident clients over real sockets.

Backends: "sqlite" (the embedded default: SQLite file, everything else in
memory) and "postgres" (a fresh PostgreSQL database of the test's own plus
the shared Redis under the test's own key prefix). The bot is the real
``bot.policy.Bot`` with Rasa pointed at a closed port, so it answers
nlu_unavailable (and button payloads and the crisis lexicon work as in
production) unless a test passes its own.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from bot.settings import Settings

from .counsellor_helpers import StaffBrowser, create_staff
from .helpers import OWN_BOT, ResidentClient, RunningServer, free_port, start_server

HERE = Path(__file__).resolve().parent
# Every shutdown step of the server is bounded at 10 s (chat_server.app.bounded); the whole stop at this.
SERVER_STOP_TIMEOUT_SECS = 90.0


def pytest_collection_modifyitems(config, items):
    # Servers started by fixtures run on the session's event loop (the
    # project's asyncio_default_fixture_loop_scope), so the tests talking to
    # them must run on it too.
    for item in items:
        function = getattr(item, "function", None)
        if HERE in Path(item.path).parents and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)


@pytest.fixture(scope="session")
def closed_rasa_url() -> str:
    # Nothing listens here: the real Bot gets "connection refused" at once.
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
async def real_bot(closed_rasa_url):
    """The real Bot, loaded once (loading and validating the content takes most of a second)."""
    from bot.policy import Bot

    bot = Bot.from_settings(Settings(environ={}, POLKU_RASA_URL=closed_rasa_url))
    yield bot
    await bot.close()


def _base(tmp_path, rasa_url: str) -> dict[str, Any]:
    # Chat hours ignored: a test must not depend on the hour it runs at. No
    # training process started ahead for every admin page a test opens.
    return {"POLKU_DATA_DIR": str(tmp_path / "data"), "POLKU_RASA_URL": rasa_url,
            "POLKU_RASA_TIMEOUT_SECS": 1.0, "POLKU_CHAT_ALWAYS_OPEN": True,
            "POLKU_ADMIN_PREWARM_TRAINER": False,
            # Every test's sockets come from 127.0.0.1; the tests of this limit set their own.
            "POLKU_SOCKETS_PER_ADDRESS": 1000}


@pytest.fixture
def sqlite_settings(tmp_path, closed_rasa_url) -> dict[str, Any]:
    return _base(tmp_path, closed_rasa_url)


@pytest.fixture
def postgres_settings(tmp_path, closed_rasa_url, pg_url, redis_url, redis_prefix) -> dict[str, Any]:
    return {**_base(tmp_path, closed_rasa_url), "POLKU_DATABASE_URL": pg_url,
            "POLKU_REDIS_URL": redis_url, "POLKU_REDIS_PREFIX": redis_prefix}


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(request) -> dict[str, Any]:
    return request.getfixturevalue(f"{request.param}_settings")


Launch = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def launch(real_bot) -> AsyncIterator[Launch]:
    """launch(settings_dict, bot=real_bot, **overrides) -> a running server, stopped after the test.

    bot=OWN_BOT lets the server load its own Bot from the settings, as in production."""
    running: list[RunningServer] = []

    async def _launch(base: dict[str, Any], *, bot: Any = None, widget_dir=None,
                      **overrides: Any) -> RunningServer:
        settings = Settings(environ={}, **{**base, **overrides})
        bot = None if bot is OWN_BOT else (bot or real_bot)
        server = await start_server(settings, bot=bot, widget_dir=widget_dir)
        running.append(server)
        return server

    yield _launch
    for server in reversed(running):
        # Bounded: a stuck shutdown fails this test instead of hanging the whole run.
        await asyncio.wait_for(server.stop(), SERVER_STOP_TIMEOUT_SECS)


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[ResidentClient]]]:
    """connect(server_or_url, **client_kwargs) -> a connected resident client, closed after the test."""
    clients: list[ResidentClient] = []

    async def _connect(target: RunningServer | str, **kwargs: Any) -> ResidentClient:
        url = target if isinstance(target, str) else target.url
        client = ResidentClient(url, **kwargs)
        clients.append(client)
        return await client.connect()

    yield _connect
    for client in clients:
        await client.close()


@pytest.fixture
async def server(launch, backend_settings) -> RunningServer:
    """A server on each backend, with the real Bot."""
    return await launch(backend_settings)


@pytest.fixture
async def resident(server, connect) -> ResidentClient:
    """A connected resident with a fresh session (welcome already taken)."""
    client = await connect(server)
    await client.session()
    await client.next("bot_uttered")
    return client


@pytest.fixture
async def browsers():
    """browsers(server) -> a staff browser (cookies of its own), closed after the test."""
    opened: list[StaffBrowser] = []

    def _open(server) -> StaffBrowser:
        browser = StaffBrowser(server)
        opened.append(browser)
        return browser

    yield _open
    for browser in opened:
        await browser.close()


@pytest.fixture
async def staff(browsers):
    """staff(server, username, **create_staff_kwargs) -> a new staff account's console, signed in
    (both factors) and past "hello"; its browser is closed after the test."""

    async def _console(server, username: str, **kwargs: Any):
        await create_staff(server, username, **kwargs)
        browser = browsers(server)
        await browser.sign_in(username)
        console = await browser.open_console()
        await console.ok("hello")
        return console

    return _console


@pytest.fixture
async def console(server, staff):
    """The console of counsellor "anna" (Anna) on ``server``."""
    return await staff(server, "anna", display_name="Anna")
