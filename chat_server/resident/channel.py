"""The resident side of the Socket.IO protocol (docs/protocol.md): the handlers of the default
namespace.

Each ``on_*`` handler parses its payload (``protocol.check_*``, which raise and change nothing)
and calls the service (``service.ResidentService.do_*``). ``_guarded`` translates every refusal
(a ChatServerError) into one ``error`` event in the resident's language, in this one place;
nothing else is sent for refused input.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Protocol

import socketio

from ..errors import BackendUnavailable, MalformedPayload, ResidentError, ServerBusy, TooManyConnections, UnknownEvent
from ..events import Events
from ..ratelimit import MemorySocketCounter, Network, SocketCounter, client_address
from ..store.models import Conversation
from .protocol import (NoticeSource, check_session_only, check_session_request, check_typing, check_user_uttered,
                       client_id_of, connect_language, error_text, known_language, payload_language)
from .service import ResidentService
from .sockets import SocketState
from .typing import TypingRelay

log = logging.getLogger(__package__)


class CallbackDesk(Protocol):
    """The call-back requests (``callbacks.Callbacks``): what the callback_request event needs."""

    async def do_request(self, sid: str, conversation: Conversation, form: Any) -> int: ...


class ResidentChannel:
    """Socket.IO handlers of the default namespace."""

    def __init__(self, sio: socketio.AsyncServer, service: ResidentService, *, events: Events,
                 texts: NoticeSource | None, trusted_proxies: tuple[Network, ...], max_message_chars: int,
                 default_language: str, callbacks: CallbackDesk | None = None,
                 check_callback: Callable[[Any], Any] | None = None,
                 socket_counter: SocketCounter | None = None, sockets_per_address: int = 20) -> None:
        self.sio = sio
        self.service = service
        self.sockets = service.sockets
        self.typing = TypingRelay(service.sockets, events)
        self.events = events
        self.texts = texts  # the bot's content: the admins' wording of the error texts
        self.trusted_proxies = trusted_proxies
        self.max_message_chars = max_message_chars
        self.default_language = default_language
        self.callbacks = callbacks
        self.check_callback = check_callback
        self.socket_counter = socket_counter or MemorySocketCounter()
        self.sockets_per_address = sockets_per_address

    def register(self) -> None:
        self.sio.on("connect")(self.on_connect)
        self.sio.on("disconnect")(self.on_disconnect)
        handlers: dict[str, Callable[[str, Any], Awaitable[None]]] = {
            "session_request": self.on_session_request,
            "user_uttered": self.on_user_uttered,
            "history_request": self.on_history_request,
            "leave_queue": self.on_leave_queue,
            "resident_typing": self.on_resident_typing,
        }
        if self.callbacks is not None and self.check_callback is not None:
            handlers["callback_request"] = self.on_callback_request
        for event, handler in handlers.items():
            self.sio.on(event)(self._guarded(handler))
        self.sio.on("*")(self.on_unknown_event)
        listeners = getattr(self.sio, "malformed_listeners", None)
        if listeners is not None:
            listeners["/"] = self.on_malformed_frame

    # --- errors: told once, here --------------------------------------------------------

    async def _refuse(self, sid: str, error: ResidentError, data: Any = None) -> None:
        # Counted, and summed up in the log once a minute (frames.FrameStats): one
        # line per refusal would let a client write the log as fast as it sends.
        stats = getattr(self.sio, "frame_stats", None)
        if stats is not None:
            stats.count(f"refused_{error.code}")
        log.debug("refused input: %s (%s)", error.code, error.detail)
        language = payload_language(data) or self.sockets.language_of(sid)
        text = error_text(error.code, language, self.texts)
        try:
            await self.events.error(sid, error.code, text, error.client_id or client_id_of(data))
        except Exception as exc:  # the socket went away meanwhile; nothing more to tell
            log.warning("could not send error %s: %s", error.code, type(exc).__name__)

    def _guarded(self, handler: Callable[[str, Any], Awaitable[None]]):
        async def run(sid: str, *args: Any) -> None:
            if sid not in self.sockets:
                return  # disconnected meanwhile
            data = args[0] if args else None
            try:
                if len(args) > 1:
                    raise MalformedPayload("more than one argument")
                await handler(sid, data)
            except ResidentError as exc:
                await self._refuse(sid, exc, data)
            except Exception as exc:
                # Never log str(exc): database errors quote their parameters, message text included.
                log.error("%s failed: %s", handler.__name__, type(exc).__name__)
                log.debug("%s failed", handler.__name__, exc_info=True)
                await self._refuse(sid, ServerBusy(type(exc).__name__), data)
        run.__name__ = handler.__name__
        return run

    async def on_unknown_event(self, event: Any, sid: str, *args: Any) -> None:
        # The name is the client's text: only its kind and length are logged.
        # (frames.GuardedAsyncServer already refuses names that are not strings.)
        if sid in self.sockets:
            length = len(event) if isinstance(event, str) else None
            await self._refuse(sid, UnknownEvent(f"unknown event ({type(event).__name__} of {length} chars)"),
                               args[0] if len(args) == 1 else None)

    async def on_malformed_frame(self, sid: str, packet_id: int | None = None) -> None:
        """A frame of this socket that did not follow the protocol (frames.GuardedAsyncServer)."""
        if sid in self.sockets:
            await self._refuse(sid, MalformedPayload("malformed frame"))

    # --- connection --------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict, auth: Any = None) -> bool:
        request = environ.get("aiohttp.request")
        peer = request.remote if request is not None else None
        headers = request.headers if request is not None else {}
        address = client_address(peer, headers, self.trusted_proxies)
        try:
            counted = await self.socket_counter.acquire(address, self.sockets_per_address)
        except BackendUnavailable as exc:
            # Redis is down: let the resident in uncounted rather than lock everyone out.
            log.warning("open sockets not counted: %s", exc.detail)
            counted = None
        if counted is False:
            # Refused with the reason in the resident's language: the client's connect_error
            # carries {"code", "message"} (docs/protocol.md).
            log.info("refused a socket: the address holds %d already", self.sockets_per_address)
            code = TooManyConnections.code
            language = connect_language(auth, headers) or self.default_language
            raise socketio.exceptions.ConnectionRefusedError(
                code, {"code": code, "message": error_text(code, language, self.texts)})
        self.sockets.add(sid, SocketState(
            address=address, counted=bool(counted),
            language=known_language(auth.get("language")) if isinstance(auth, dict) else None))
        return True

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        state = self.sockets.remove(sid)
        if state is None:
            return
        if state.typing_timer is not None:
            state.typing_timer.cancel()
        if state.counted:
            try:
                await self.socket_counter.release(state.address)
            except BackendUnavailable as exc:
                log.warning("closed socket not uncounted: %s", exc.detail)

    # --- events --------------------------------------------------------------------------

    async def on_session_request(self, sid: str, data: Any) -> None:
        request = check_session_request(data)
        await self.service.do_session_request(sid, request.session_id, request.language)

    async def on_user_uttered(self, sid: str, data: Any) -> None:
        await self.service.do_user_uttered(sid, check_user_uttered(data, self.max_message_chars))

    async def on_history_request(self, sid: str, data: Any) -> None:
        await self.service.do_history(sid, check_session_only(data))

    async def on_leave_queue(self, sid: str, data: Any) -> None:
        await self.service.do_leave_queue(sid, check_session_only(data))

    async def on_callback_request(self, sid: str, data: Any) -> None:
        assert self.callbacks is not None and self.check_callback is not None
        form = self.check_callback(data)
        conversation = await self.service.do_callback_conversation(sid, form.session_id)
        await self.callbacks.do_request(sid, conversation, form)

    async def on_resident_typing(self, sid: str, data: Any) -> None:
        # Faster than one per TYPING_MIN_INTERVAL_SECS: coalesced, and invalid ones dropped
        # quietly (no error per event flooding back).
        due = self.typing.typing_due(sid)
        try:
            session_id, typing = check_typing(data)
        except ResidentError:
            if not due:
                return
            raise
        await self.typing.do_typing(sid, session_id, typing, due=due)
