"""Frames that do not follow the Engine.IO / Socket.IO protocols: counted,
answered where the protocol allows, never logged one by one.

python-engineio and python-socketio log a frame they cannot decode (``42[``,
``42[123]``, ``x``) as a full traceback, at ERROR, per frame; a client could
fill the disk with them. Here every frame is checked before it is
dispatched:

- an Engine.IO text frame that is not a packet (``x``, an empty frame, an
  unknown packet type) is dropped (``GuardedWebSocket.wait``);
- a Socket.IO packet that does not decode, an event whose name is not a
  string (or is one of the reserved ``connect``/``disconnect``), an event for
  a namespace the socket is not connected to, and unexpected binary
  attachments are refused (``GuardedAsyncServer._handle_eio_message``).

Each refusal is counted (``FrameStats``, shown in ``GET /health`` and summed up
in one log line a minute), answered with the namespace's own refusal (a
resident gets an ``error`` event ``malformed_payload``; a console gets
``{"ok": false, "error": "malformed_payload"}`` when the frame asked for an
acknowledgement), and after ``MAX_MALFORMED_FRAMES`` on one connection the
connection is closed. A real client never sends a malformed frame.

An exception raised while a well-formed event is dispatched is a bug of ours:
logged at ERROR with its type only (never its text, which may quote the
payload), the traceback at DEBUG.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections import Counter
from typing import Any, Awaitable, Callable

import socketio
from engineio import async_socket as engineio_socket
from engineio import exceptions as engineio_exceptions
from engineio import packet as eio_packet
from engineio import payload as engineio_payload
from engineio.async_drivers import aiohttp as engineio_aiohttp
from socketio import packet as sio_packet

from .events import DirectDelivery

log = logging.getLogger(__name__)

# A connection that sent this many malformed frames is closed (a real client sends none).
MAX_MALFORMED_FRAMES = 10
# Binary attachments of one Socket.IO packet: no client of ours sends any; a
# bound keeps a client from making the server hold attachments without end
# (the library accepts a count of up to 10 digits).
MAX_ATTACHMENTS = 4
# The counters are summed up in the log at most this often (one line per period with refusals).
SUMMARY_SECS = 60.0
# Event names the library dispatches to the connection handlers, and "*" (the catch-all
# handler, which would get the payload as its socket id): a client must not send them.
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "*"})
ENGINEIO_TEXT_TYPES = frozenset("0123456")

MalformedListener = Callable[[str, int | None], Awaitable[None]]


class FrameStats:
    """Counters of refused frames and input (process totals), and the periodic log summary."""

    def __init__(self, summary_secs: float = SUMMARY_SECS) -> None:
        self.summary_secs = summary_secs
        self.totals: Counter[str] = Counter()
        self._window: Counter[str] = Counter()
        self._summary: asyncio.TimerHandle | None = None

    def count(self, kind: str, n: int = 1) -> None:
        self.totals[kind] += n
        self._window[kind] += n
        if self._summary is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._summary = loop.call_later(self.summary_secs, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last summary (one line), and start a new period."""
        self._summary = None
        if not self._window:
            return
        parts = ", ".join(f"{kind} {n}" for kind, n in sorted(self._window.items()))
        log.warning("refused client input in the last %.0f s: %s", self.summary_secs, parts,
                    extra={"periodic": True})
        self._window.clear()

    def close(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        self.flush()

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.totals.items()))


def engineio_text_frame_ok(frame: str) -> bool:
    """Whether python-engineio can decode this text frame without an exception."""
    if not frame or frame[0] not in ENGINEIO_TEXT_TYPES and frame[0] != "b":
        return False
    if frame[0] == "b":
        try:
            base64.b64decode(frame[1:], validate=True)
        except (binascii.Error, ValueError):
            return False
    return True


class GuardedWebSocket(engineio_aiohttp.WebSocket):
    """engine.io's aiohttp WebSocket without permessage-deflate, dropping text
    frames that are not Engine.IO packets.

    Chat lines are short, so compression saves almost no bytes, while every
    compressed socket keeps two zlib streams (tens of KB) for its whole life
    and spends CPU on every frame. An undecodable frame would end the
    connection with a traceback in the log (aiohttp's "Error handling
    request"); it is counted instead, and after MAX_MALFORMED_FRAMES the
    connection is closed."""

    async def __call__(self, environ):
        from aiohttp import web

        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock

    async def wait(self):
        while True:
            # The Engine.IO socket this connection serves (its handler's owner) was
            # closed by the server (GuardedAsyncServer._malformed): end the connection
            # instead of reading what the client sends next.
            owner = getattr(self.handler, "__self__", None)
            if owner is not None and owner.closed:
                return None
            frame = await super().wait()
            if isinstance(frame, bytes) or engineio_text_frame_ok(frame):
                return frame
            if _count_engineio_malformed(self.server, self):
                return None  # as if the client had closed: the connection ends


def _count_engineio_malformed(server: object, connection: Any) -> bool:
    """Count a dropped Engine.IO frame of a connection; True when the connection has to close.
    ``server`` is whichever Engine.IO server object the connection holds: only its
    ``polku_frame_stats``, when it has them, is read."""
    connection.polku_malformed = getattr(connection, "polku_malformed", 0) + 1
    stats = getattr(server, "polku_frame_stats", None)
    if stats is not None:
        stats.count("malformed_frame")
    if connection.polku_malformed >= MAX_MALFORMED_FRAMES:
        if stats is not None:
            stats.count("connection_closed")
        return True
    return False


class GuardedEngineIOSocket(engineio_socket.AsyncSocket):
    """engine.io's socket whose long-polling POSTs drop what is not an Engine.IO
    packet (the library would log a traceback per request), counted as above."""

    async def handle_post_request(self, environ):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length > self.server.max_http_buffer_size:
            raise engineio_exceptions.ContentTooLongError()
        body = await environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            text = body.decode("utf-8")
            if text.startswith("d="):
                raise ValueError("JSONP payload")  # not offered by this server
            frames = text.split("\x1e") if text else []
        except ValueError:
            frames = [""]
        if len(frames) > engineio_payload.Payload.max_decode_packets:
            frames = [""]  # the library refuses as many: one malformed frame
        for frame in frames:
            if engineio_text_frame_ok(frame):
                await self.receive(eio_packet.Packet(encoded_packet=frame))
            elif _count_engineio_malformed(self.server, self):
                raise engineio_exceptions.EngineIOError("too many malformed frames")


class GuardedAsyncServer(socketio.AsyncServer):
    """python-socketio's server, checking every Socket.IO packet before it is dispatched."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("client_manager") is None:
            kwargs["client_manager"] = DirectDelivery()  # events.py: one process, no Redis
        super().__init__(*args, **kwargs)
        self.frame_stats = FrameStats()
        self.eio.polku_frame_stats = self.frame_stats
        self._malformed_counts: dict[str, int] = {}
        # namespace -> coroutine(sid, packet id or None): tells that socket its frame was refused.
        self.malformed_listeners: dict[str, MalformedListener] = {}

    async def _handle_eio_message(self, eio_sid, data):
        namespace: str | None = None
        pkt_id: int | None = None
        try:
            if eio_sid in self._binary_packet:
                pkt = self._binary_packet[eio_sid]
                if not pkt.add_attachment(data):
                    return
                del self._binary_packet[eio_sid]
                namespace, pkt_id = pkt.namespace or "/", pkt.id
                self._check_event(eio_sid, pkt)
                if pkt.packet_type == sio_packet.BINARY_EVENT:
                    dispatch = self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
                else:
                    dispatch = self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
            else:
                if not isinstance(data, str):
                    raise ValueError("binary frame without a packet announcing it")
                pkt = self.packet_class(encoded_packet=data)
                namespace, pkt_id = pkt.namespace or "/", pkt.id
                kind = pkt.packet_type
                if kind == sio_packet.CONNECT:
                    dispatch = self._handle_connect(eio_sid, pkt.namespace, pkt.data)
                elif kind == sio_packet.DISCONNECT:
                    dispatch = self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
                elif kind == sio_packet.EVENT:
                    self._check_event(eio_sid, pkt)
                    dispatch = self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
                elif kind == sio_packet.ACK:
                    self._check_connected(eio_sid, namespace)
                    dispatch = self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
                elif kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK):
                    self._check_connected(eio_sid, namespace)
                    if not 0 < pkt.attachment_count <= MAX_ATTACHMENTS:
                        raise ValueError("attachment count out of bounds")
                    self._binary_packet[eio_sid] = pkt
                    return
                else:
                    raise ValueError("packet type a client does not send")
        except Exception as exc:
            self._binary_packet.pop(eio_sid, None)
            await self._malformed(eio_sid, namespace, pkt_id, exc)
            return
        try:
            await dispatch
        except Exception as exc:
            # A well-formed frame made one of our handlers (or the library) fail: a bug.
            self.frame_stats.count("handler_error")
            log.error("dispatching a Socket.IO packet failed: %s", type(exc).__name__)
            log.debug("dispatching a Socket.IO packet failed", exc_info=True)

    def _check_connected(self, eio_sid: str, namespace: str) -> None:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            raise ValueError("namespace not connected")

    def _check_event(self, eio_sid: str, pkt: Any) -> None:
        self._check_connected(eio_sid, pkt.namespace or "/")
        data = pkt.data
        if not isinstance(data, list) or not data:
            raise ValueError("event without a name")
        if not isinstance(data[0], str):
            raise ValueError("event name is not a string")
        if data[0] in RESERVED_EVENTS:
            raise ValueError("reserved event name")

    async def _malformed(self, eio_sid: str, namespace: str | None, pkt_id: int | None, exc: Exception) -> None:
        """Count a refused frame, answer it where the protocol allows, close the connection after too many."""
        self.frame_stats.count("malformed_frame")
        count = self._malformed_counts.get(eio_sid, 0) + 1
        self._malformed_counts[eio_sid] = count
        log.debug("malformed Socket.IO frame (%s) on a connection (%d so far)", type(exc).__name__, count)
        if count >= MAX_MALFORMED_FRAMES:
            self.frame_stats.count("connection_closed")
            self._malformed_counts.pop(eio_sid, None)
            await self.eio.disconnect(eio_sid)
            return
        for ns in ([namespace] if namespace else []) + [n for n in self.malformed_listeners if n != namespace]:
            listener = self.malformed_listeners.get(ns)
            sid = self.manager.sid_from_eio_sid(eio_sid, ns) if listener else None
            if sid is None or not self.manager.is_connected(sid, ns):
                continue
            try:
                await listener(sid, pkt_id if ns == namespace else None)
            except Exception as answer_exc:  # the socket went away meanwhile
                log.debug("could not answer a malformed frame: %s", type(answer_exc).__name__)
            return

    async def send_ack(self, sid: str, namespace: str, packet_id: int, payload: Any) -> None:
        """Acknowledge a packet with this payload (a refusal of a frame the handlers never saw)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        if eio_sid is not None:
            await self._send_packet(eio_sid, self.packet_class(
                sio_packet.ACK, namespace=namespace, id=packet_id, data=[payload]))

    async def _handle_eio_connect(self, eio_sid, environ):
        sock = self.eio.sockets.get(eio_sid)
        if type(sock) is engineio_socket.AsyncSocket:
            sock.__class__ = GuardedEngineIOSocket  # same state; only its POST handling differs
        return await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_eio_disconnect(self, eio_sid, reason):
        self._malformed_counts.pop(eio_sid, None)
        await super()._handle_eio_disconnect(eio_sid, reason)
