"""The Socket.IO namespace "/counsellor" of the console.

Only a signed-in counsellor or admin connects: the connect is authenticated
from the staff session cookie (``staff/web.py``) and refused otherwise. Every
event is a request answered through the Socket.IO acknowledgement:
``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}``. The handlers
here are thin: check the payload (``protocol.py``), call the rule
(``service.py``, ``callbacks.py``); errors become the acknowledgement in one
place (``_refusal``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import socketio

from .. import handoff as hs
from ..staff.service import StaffAuth
from ..staff.sessions import Staff
from ..staff.web import session_cookie_token
from ..errors import BackendUnavailable, IllegalTransition, RequestRefused
from ..events import (
    COUNSELLOR_NAMESPACE, COUNSELLORS_ROOM, Events, conversation_room, console_message_payload,
    staff_session_room,
)
from ..handoff import Handoff
from ..presence import Presence
from ..store.models import Conversation, utcnow
from .callbacks import Callbacks
from .protocol import check_callback_id, check_close, check_conversation_id, check_note, check_send, check_typing
from .service import CounsellorService

log = logging.getLogger(__name__)

GuardedHandler = Callable[[str, Any], Awaitable[dict[str, Any]]]


@dataclass
class ConsoleSocket:
    staff: Staff
    open_conversations: set[int] = field(default_factory=set)


@dataclass
class Attendance:
    """Since when nobody has been online (monotonic), and whether someone was: the channel
    notes the last console leaving, the unattended sweep (``sweeps.py``) acts on it."""

    nobody_since: float | None = None
    had_counsellors: bool = False


def _refusal(handler: str, exc: BaseException) -> dict[str, Any]:
    """The acknowledgement of a request that failed: the one translation of errors for consoles."""
    if isinstance(exc, RequestRefused):
        log.info("console request refused: %s: %s", exc.code, exc.detail)
        return {"ok": False, "error": exc.code}
    if isinstance(exc, IllegalTransition):
        log.info("console move refused: %s", exc)
        return {"ok": False, "error": "not_allowed"}
    log.error("%s failed: %s", handler, type(exc).__name__)
    log.debug("%s failed", handler, exc_info=exc)
    return {"ok": False, "error": "server_busy"}


class CounsellorChannel:
    """Socket.IO handlers of "/counsellor": connections, and each request of a console."""

    def __init__(self, sio: socketio.AsyncServer, *, service: CounsellorService, callbacks: Callbacks,
                 handoff: Handoff, events: Events, auth: StaffAuth, presence: Presence,
                 own_origins: set[str]) -> None:
        self.sio = sio
        self.service = service
        self.callbacks = callbacks
        self.handoff = handoff
        self.events = events
        self.auth = auth
        self.presence = presence
        self.own_origins = own_origins
        self.sockets: dict[str, ConsoleSocket] = {}
        self.attendance = Attendance()
        handoff.queue_listeners.append(service.queue_changed)
        handoff.state_listeners.append(self._on_state_changed)

    # --- wiring ----------------------------------------------------------------------------

    def register(self) -> None:
        ns = COUNSELLOR_NAMESPACE
        self.sio.on("connect", namespace=ns)(self.on_connect)
        self.sio.on("disconnect", namespace=ns)(self.on_disconnect)
        handlers: dict[str, GuardedHandler] = {
            "hello": self.on_hello, "open": self.on_open, "close_view": self.on_close_view,
            "pick_up": self.on_pick_up, "send": self.on_send, "typing": self.on_typing,
            "put_back": self.on_put_back, "close": self.on_close, "note": self.on_note,
            "callback_done": self.on_callback_done,
        }
        for event, handler in handlers.items():
            self.sio.on(event, namespace=ns)(self._guarded(handler))
        self.sio.on("*", namespace=ns)(self.on_unknown_event)
        listeners = getattr(self.sio, "malformed_listeners", None)
        if listeners is not None:
            listeners[ns] = self.on_malformed_frame

    def _guarded(self, handler: GuardedHandler):
        async def run(sid: str, *args: Any) -> dict[str, Any]:
            state = self.sockets.get(sid)
            if state is None:
                return {"ok": False, "error": "not_signed_in"}
            if state.staff.expires_at <= utcnow():
                await self.sio.disconnect(sid, namespace=COUNSELLOR_NAMESPACE)
                return {"ok": False, "error": "not_signed_in"}
            try:
                if len(args) > 1:
                    raise RequestRefused("malformed_payload", "more than one argument")
                result = await handler(sid, args[0] if args else None)
                return {"ok": True, **(result or {})}
            except Exception as exc:
                return _refusal(handler.__name__, exc)
        run.__name__ = handler.__name__
        return run

    async def on_unknown_event(self, event: Any, sid: str, *args: Any) -> dict[str, Any]:
        return {"ok": False, "error": "unknown_event"}

    async def on_malformed_frame(self, sid: str, packet_id: int | None = None) -> None:
        """A frame that did not follow the protocol (frames.GuardedAsyncServer): refused in its
        acknowledgement when it asked for one (a console has no other channel for errors)."""
        if packet_id is not None and sid in self.sockets:
            await self.sio.send_ack(sid, COUNSELLOR_NAMESPACE, packet_id, {"ok": False, "error": "malformed_payload"})

    # --- connection -------------------------------------------------------------------------

    def _origin_allowed(self, environ: dict) -> bool:
        origin = environ.get("HTTP_ORIGIN")
        if not origin:
            return True  # not a browser: no cross-site request to fear
        same = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin == same or origin in self.own_origins

    async def on_connect(self, sid: str, environ: dict, auth: Any = None) -> bool:
        request = environ.get("aiohttp.request")
        if request is None or not self._origin_allowed(environ):
            raise socketio.exceptions.ConnectionRefusedError("forbidden_origin")
        try:
            staff = await self.auth.session(session_cookie_token(request.cookies))
        except BackendUnavailable:
            raise socketio.exceptions.ConnectionRefusedError("server_busy") from None
        if staff is None or not staff.has_role("counsellor"):
            raise socketio.exceptions.ConnectionRefusedError("not_signed_in")
        first_here = not any(s.staff.id == staff.id for s in self.sockets.values())
        self.sockets[sid] = ConsoleSocket(staff)
        await self.sio.enter_room(sid, COUNSELLORS_ROOM, namespace=COUNSELLOR_NAMESPACE)
        await self.sio.enter_room(sid, staff_session_room(staff.session_id), namespace=COUNSELLOR_NAMESPACE)
        try:
            was_online = str(staff.id) in await self.presence.online_ids()
            await self.presence.heartbeat(str(staff.id), staff.display_name)
        except BackendUnavailable:
            log.warning("presence not recorded for staff %s", staff.id)
            was_online = True
        log.info("console of staff %s connected", staff.id)
        if first_here and not was_online:
            asyncio.get_running_loop().create_task(self.handoff.queue_changed())
        return True

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        state = self.sockets.pop(sid, None)
        if state is None:
            return
        if any(s.staff.id == state.staff.id for s in self.sockets.values()):
            return  # another tab of theirs is still here
        try:
            await self.presence.leave(str(state.staff.id))
        except BackendUnavailable:
            log.warning("presence leave not recorded for staff %s", state.staff.id)
        log.info("console of staff %s disconnected", state.staff.id)
        await self.handoff.queue_changed()
        await self._note_last_left()

    async def _note_last_left(self) -> None:
        """The last counsellor's console closed here: sweep_unattended counts from now."""
        try:
            if await self.presence.online_count() == 0:
                self.attendance.had_counsellors = True
                self.attendance.nobody_since = self.attendance.nobody_since or time.monotonic()
        except BackendUnavailable:
            pass

    def connected_staff(self) -> list[Staff]:
        """The staff of every console connected to this process (one per socket)."""
        return [state.staff for state in self.sockets.values()]

    async def close_consoles(self, session_ids: set[int], *, keep: bool = False) -> None:
        """Close this process's consoles of those sign-ins (``keep``: of every other sign-in)."""
        for sid, state in list(self.sockets.items()):
            if (state.staff.session_id in session_ids) != keep:
                log.info("console of staff %s closed: signed out, expired or disabled", state.staff.id)
                await self.sio.disconnect(sid, namespace=COUNSELLOR_NAMESPACE)

    async def session_ended(self, session_id: int) -> None:
        """A sign-out: every console of that session is told, and the ones here are closed."""
        await self.events.signed_out(session_id)
        await self.close_consoles({session_id})

    async def _on_state_changed(self, conversation: Conversation, from_state: str, to_state: str) -> None:
        """Every console learns who has the conversation now; consoles that may no longer read
        it stop getting its lines (on every process: the room is closed everywhere)."""
        if to_state in (hs.COUNSELLOR, hs.CLOSED, hs.BOT) and from_state != hs.CLOSED:
            await self.sio.close_room(conversation_room(conversation.id), namespace=COUNSELLOR_NAMESPACE)
            for state in self.sockets.values():
                state.open_conversations.discard(conversation.id)
        if to_state != hs.BOT or from_state == hs.QUEUED:
            await self.events.console_conversation_state(await self.service.summary(conversation))

    # --- requests -------------------------------------------------------------------------------

    def _staff(self, sid: str) -> Staff:
        return self.sockets[sid].staff

    async def _watch(self, sid: str, conversation_id: int) -> None:
        state = self.sockets.get(sid)
        if state is not None:
            state.open_conversations.add(conversation_id)
            await self.sio.enter_room(sid, conversation_room(conversation_id), namespace=COUNSELLOR_NAMESPACE)

    async def on_hello(self, sid: str, data: Any) -> dict[str, Any]:
        return await self.service.hello(self._staff(sid))

    async def on_open(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id = check_conversation_id(data)
        conversation, until = await self.service.do_view(self._staff(sid), conversation_id)
        await self._watch(sid, conversation_id)
        return await self.service.transcript(conversation, until)

    async def on_close_view(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id = check_conversation_id(data)
        self.sockets[sid].open_conversations.discard(conversation_id)
        await self.sio.leave_room(sid, conversation_room(conversation_id), namespace=COUNSELLOR_NAMESPACE)
        return {}

    async def on_pick_up(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id = check_conversation_id(data)
        conversation = await self.service.do_pick_up(self._staff(sid), conversation_id)
        await self._watch(sid, conversation_id)
        return await self.service.transcript(conversation, None)

    async def on_send(self, sid: str, data: Any) -> dict[str, Any]:
        message = check_send(data)
        staff = self._staff(sid)
        stored = await self.service.do_send(staff, message)
        return {"message": console_message_payload(stored, staff.display_name)}

    async def on_typing(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id, typing = check_typing(data)
        await self.service.do_typing(self._staff(sid), conversation_id, typing)
        return {}

    async def on_put_back(self, sid: str, data: Any) -> dict[str, Any]:
        await self.service.do_put_back(self._staff(sid), check_conversation_id(data))
        return {}

    async def on_close(self, sid: str, data: Any) -> dict[str, Any]:
        await self.service.do_close(self._staff(sid), check_close(data))
        return {}

    async def on_note(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id, text = check_note(data)
        return {"note": await self.service.do_note(self._staff(sid), conversation_id, text)}

    async def on_callback_done(self, sid: str, data: Any) -> dict[str, Any]:
        await self.callbacks.do_done(self._staff(sid), check_callback_id(data))
        return {}
