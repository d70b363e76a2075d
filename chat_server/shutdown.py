"""Stopping a chat server: bounded shutdown steps, and the drain that hands
every socket over to another process.

On SIGTERM (or Ctrl-C) aiohttp stops listening, then the app's on_shutdown
calls ``DrainingServer.drain``: from then on no new connection is accepted
and no new event is handled (its socket is closed at once instead); the
events being handled finish (at most DRAIN_SECS); then every remaining
socket, residents' and consoles', is closed at the transport level, without
a Socket.IO disconnect. The clients (socket.io-client in the widget and the
console, python-socketio) take that as a lost connection and reconnect on
their own, to another process or to this one restarted; the widget resumes
its session and sends again what was not acknowledged (the server
acknowledges a resent message again without answering it twice). A
Socket.IO "disconnect" from the server would instead stop them reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable

import socketio

log = logging.getLogger(__name__)

SHUTDOWN_STEP_SECS = 10.0
# The events being handled when a drain begins get this long to finish.
DRAIN_SECS = 5.0
_DRAIN_POLL_SECS = 0.02


async def bounded(what: str, step: Awaitable[Any], secs: float = SHUTDOWN_STEP_SECS) -> None:
    """Await one shutdown step, at most ``secs``; a step that fails or hangs is logged and left."""
    try:
        await asyncio.wait_for(step, secs)
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %.0f s; going on", what, secs)
    except Exception as exc:
        log.warning("shutdown: stopping %s failed: %s", what, type(exc).__name__)


class DrainingServer(socketio.AsyncServer):
    """python-socketio's server that can drain (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.draining = False
        self._in_flight = 0

    async def _trigger_event(self, event, namespace, *args):
        if event in ("disconnect", "__disconnect_final"):
            return await super()._trigger_event(event, namespace, *args)
        if self.draining:
            # Not handled here: the connection is closed, and the client reconnects
            # (elsewhere) and sends it again. A refused connect alone would stop a
            # socket.io-client socket for good.
            if args:
                await self._close_transport_of(args[0], namespace, wait=event == "connect")
            return False if event == "connect" else None
        self._in_flight += 1
        try:
            return await super()._trigger_event(event, namespace, *args)
        finally:
            self._in_flight -= 1

    async def _close_transport_of(self, sid: str, namespace: str | None, *, wait: bool = False) -> None:
        try:
            eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        except Exception:
            eio_sid = None
        if eio_sid is None:
            return
        if wait:
            await self._close_transport(eio_sid)
        else:  # from inside the connection's own receive loop: not awaited there
            asyncio.get_running_loop().create_task(self._close_transport(eio_sid))

    async def _close_transport(self, eio_sid: str) -> None:
        """Close one engine.io connection as if the network had dropped it: the
        client reconnects (a Socket.IO or engine.io "close" would stop it)."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return
        try:
            await socket.close(wait=False, abort=True, reason=self.eio.reason.SERVER_DISCONNECT)
            await socket.queue.put(None)  # ends the writer, which closes the websocket (or the poll)
        except Exception as exc:  # already going away
            log.debug("closing a transport: %s", type(exc).__name__)
        self.eio.sockets.pop(eio_sid, None)

    async def drain(self, secs: float = DRAIN_SECS) -> None:
        """Stop taking work, let the events being handled finish, close every connection."""
        self.draining = True
        started = time.monotonic()
        count = len(self.eio.sockets)
        deadline = started + secs
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_POLL_SECS)
        unfinished = self._in_flight
        await asyncio.gather(*(self._close_transport(eio_sid) for eio_sid in list(self.eio.sockets)),
                             return_exceptions=True)
        log.info("drained: %d connection(s) handed over in %.2f s%s", count, time.monotonic() - started,
                 f"; {unfinished} event(s) still being handled" if unfinished else "")
