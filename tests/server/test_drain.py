"""A clean stop (SIGTERM; here the same shutdown, run in-process): the server
stops taking work, lets the message being answered finish, and closes every
connection so that the clients reconnect (to another process) on their own.
What a resident wrote during the drain is acknowledged there, once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bot.settings import Settings

from .helpers import FakeBot, start_server

SLOW_SECS = 1.0


@dataclass
class SlowBot(FakeBot):
    """Takes SLOW_SECS over messages containing "slow"."""

    async def handle(self, text, state=None, ui_language=None, **kwargs):
        if "slow" in text:
            await asyncio.sleep(SLOW_SECS)
        return await super().handle(text, state, ui_language, **kwargs)


async def test_a_draining_server_finishes_the_turn_in_hand_and_hands_the_resident_over(
        launch, postgres_settings, connect):
    bot = SlowBot()
    a = await start_server(Settings(environ={}, **postgres_settings), bot=bot)
    b = await launch(postgres_settings, bot=bot)
    resident = await connect(a)
    reasons: list = []
    resident.sio.on("disconnect", lambda *args: reasons.append(args[0] if args else None))
    session_id = await resident.session()

    in_hand = await resident.say("a slow question")
    await asyncio.sleep(0.2)  # being answered
    began = time.monotonic()
    stopping = asyncio.create_task(a.stop())
    await asyncio.sleep(0.1)
    late = await resident.say("written during the drain")

    # The message in hand is answered and acknowledged before the connection closes.
    await resident.ack(in_hand)
    answer = await resident.next("bot_uttered", lambda body: body["metadata"]["sender"] == "bot")
    assert answer["text"] == "echo"
    await asyncio.wait_for(stopping, 10)
    stopped = time.monotonic() - began
    assert stopped < SLOW_SECS + 3, stopped
    # Closed as a dropped connection, which socket.io clients reconnect after (an
    # "io server disconnect" would stop the widget and the console reconnecting).
    assert not resident.sio.connected and reasons and reasons[0] != "io server disconnect", reasons
    assert not resident.pending("message_ack")  # the late one was not taken by the draining server
    assert bot.calls.count("written during the drain") == 0

    # As the widget does: reconnect (here: to the other process), resume, send again.
    again = await connect(b)
    assert await again.session(session_id) == session_id
    await again.say("written during the drain", client_id=late)
    await again.ack(late)
    await again.say("written during the drain", client_id=late)  # and once more: acknowledged, not stored twice
    await again.ack(late)
    assert await b.sql("SELECT count(*) FROM messages WHERE client_id IN (:a, :b)", a=in_hand, b=late) == [(2,)]


async def test_a_connect_during_the_drain_closes_the_connection_instead_of_refusing_it(launch, sqlite_settings):
    """A refused namespace connect would stop a socket.io-client socket for good; a
    closed connection makes it reconnect (to another process)."""
    import aiohttp

    server = await launch(sqlite_settings, bot=FakeBot())
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket") as ws:
            opened = await ws.receive()
            assert opened.data.startswith("0{")  # engine.io open
            server.server.sio.draining = True
            try:
                await ws.send_str("40")  # Socket.IO connect to "/"
                received = []
                while True:
                    message = await asyncio.wait_for(ws.receive(), 5)
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    received.append(message.data)
            finally:
                server.server.sio.draining = False
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert not any(data.startswith("44") for data in received), received  # no CONNECT_ERROR
