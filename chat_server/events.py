"""The one place that sends Socket.IO events, to residents (namespace "/")
and to the counsellors' consoles (namespace "/counsellor").

Called from the business logic (``resident/service.py``, ``handoff.py``,
``counsellor/service.py``, ``counsellor/callbacks.py``), for changes only after their
transaction committed (``Transaction.on_commit``).
Payload shapes are the ones in ``docs/protocol.md``; each has a builder
function here so tests and docs check the same thing the server sends.

Events for a conversation go to its room, so they reach every socket of the
conversation on every server process (python-socketio's Redis manager
carries them across processes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .store.models import Message

log = logging.getLogger(__name__)

RESIDENT_NAMESPACE = "/"
COUNSELLOR_NAMESPACE = "/counsellor"  # the counsellor console's
COUNSELLORS_ROOM = "counsellors"  # every console socket (in COUNSELLOR_NAMESPACE)


def conversation_room(conversation_id: int) -> str:
    """Residents' sockets of the conversation in "/", its open consoles in "/counsellor"."""
    return f"conversation:{conversation_id}"


def staff_session_room(session_id: int) -> str:
    """Every console socket of one staff sign-in (to end them at sign-out)."""
    return f"staff_session:{session_id}"


def iso_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class HandoffView:
    """The handoff state as the resident sees it."""

    state: str  # bot, queued, counsellor, closed or unavailable (queued, nobody online)
    position: int | None = None
    estimated_wait_secs: int | None = None
    counsellor_name: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {"state": self.state, "position": self.position,
                "estimated_wait_secs": self.estimated_wait_secs,
                "counsellor_name": self.counsellor_name}


# --- payload builders -------------------------------------------------------------


def bot_uttered_payload(message: Message, counsellor_name: str | None = None) -> dict[str, Any]:
    """Rasa's socketio `bot_uttered`: only text, quick_replies (when any) and metadata."""
    body: dict[str, Any] = {"text": message.text}
    if message.quick_replies:
        body["quick_replies"] = [dict(qr) for qr in message.quick_replies]
    metadata: dict[str, Any] = {"sender": message.sender, "message_id": message.id,
                                "time": iso_time(message.created_at), "language": message.language}
    if counsellor_name:
        metadata["counsellor_name"] = counsellor_name
    body["metadata"] = metadata
    return body


def message_ack_payload(message: Message) -> dict[str, Any]:
    return {"client_id": message.client_id, "message_id": message.id,
            "time": iso_time(message.created_at)}


def history_message_payload(message: Message) -> dict[str, Any]:
    return {"message_id": message.id, "sender": message.sender, "text": message.text,
            "quick_replies": list(message.quick_replies or []), "time": iso_time(message.created_at),
            "language": message.language, "client_id": message.client_id}


def error_payload(code: str, text: str, client_id: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": text, "client_id": client_id}


def console_message_payload(message: Message, counsellor_name: str | None = None) -> dict[str, Any]:
    """A transcript line as a console shows it (the resident's text as stored: redacted)."""
    body = history_message_payload(message)
    body["counsellor_name"] = counsellor_name if message.sender == "counsellor" else None
    return body


class DirectDelivery(socketio.AsyncManager):
    """python-socketio's manager, delivering an event to this process's sockets one after
    the other instead of in a task per recipient awaited together.

    The socket's send only queues the packet (its writer task sends it), so nothing waits
    longer; but the library's ``asyncio.wait`` yields to the event loop on every emit,
    which costs a task and a loop turn each, and lets Redis publish a turn's events one
    by one (redis_backend.SocketIORedisManager batches what is emitted without a yield)."""

    async def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        room = to or room
        if callback is not None or namespace not in self.rooms:
            return await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback,
                                      **kwargs)
        if not isinstance(skip_sid, list):
            skip_sid = [skip_sid]
        recipients = [eio_sid for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip_sid]
        if not recipients:
            return
        # As the library builds it: tuples are several arguments, anything else one.
        args = list(data) if isinstance(data, tuple) else ([data] if data is not None else [])
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event] + args).encode()
        packets = [eio_packet.Packet(eio_packet.MESSAGE, p)
                   for p in (encoded if isinstance(encoded, list) else [encoded])]
        for eio_sid in recipients:
            for pkt in packets:
                try:
                    await self.server._send_eio_packet(eio_sid, pkt)
                except Exception as exc:  # that socket is closing; the others still get it
                    log.debug("event not delivered to a closing socket: %s", type(exc).__name__)


class Events:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def _emit(self, event: str, payload: Any, to: str, namespace: str = RESIDENT_NAMESPACE) -> None:
        log.debug("emit %s to %s", event, to if to.startswith("conversation:") else "socket")
        await self._sio.emit(event, payload, to=to, namespace=namespace)

    # --- to one socket -------------------------------------------------------------

    async def session_confirm(self, sid: str, session_id: str) -> None:
        # A bare string, as Rasa's channel sends it.
        await self._emit("session_confirm", session_id, to=sid)

    async def message_ack(self, sid: str, message: Message) -> None:
        await self._emit("message_ack", message_ack_payload(message), to=sid)

    async def history(self, sid: str, session_id: str, messages: Iterable[Message],
                      handoff: HandoffView) -> None:
        await self._emit("history", {
            "session_id": session_id,
            "messages": [history_message_payload(m) for m in messages],
            "handoff_state": handoff.to_payload(),
        }, to=sid)

    async def error(self, sid: str, code: str, text: str, client_id: str | None = None) -> None:
        await self._emit("error", error_payload(code, text, client_id), to=sid)

    async def typing_to_socket(self, sid: str, sender: str, typing: bool) -> None:
        """The bot's typing indicator for a session not written yet (one socket, no room)."""
        await self._emit("typing", {"sender": sender, "typing": typing}, to=sid)

    async def bot_uttered_to_socket(self, sid: str, message: Message) -> None:
        """A notice for one socket only: the welcome of a session not written yet (no room,
        no console, and ``message_id`` null until the conversation is stored)."""
        await self._emit("bot_uttered", bot_uttered_payload(message), to=sid)

    async def handoff_state_to_socket(self, sid: str, view: HandoffView) -> None:
        await self._emit("handoff_state", view.to_payload(), to=sid)

    # --- to every socket of a conversation --------------------------------------

    async def bot_uttered(self, conversation_id: int, message: Message,
                          counsellor_name: str | None = None) -> None:
        await self._emit("bot_uttered", bot_uttered_payload(message, counsellor_name),
                         to=conversation_room(conversation_id))
        await self.console_message(conversation_id, message, counsellor_name)

    async def handoff_state(self, conversation_id: int, view: HandoffView) -> None:
        await self._emit("handoff_state", view.to_payload(), to=conversation_room(conversation_id))

    async def typing(self, conversation_id: int, sender: str, typing: bool) -> None:
        await self._emit("typing", {"sender": sender, "typing": typing},
                         to=conversation_room(conversation_id))

    # --- to the consoles that have a conversation open ------------------------------

    async def resident_typing(self, conversation_id: int, typing: bool) -> None:
        await self._emit("resident_typing", {"conversation_id": conversation_id, "typing": typing},
                         to=conversation_room(conversation_id), namespace=COUNSELLOR_NAMESPACE)

    async def console_message(self, conversation_id: int, message: Message,
                              counsellor_name: str | None = None) -> None:
        """A new transcript line (the resident's, the bot's, a notice or a counsellor's)."""
        await self._emit("message", {"conversation_id": conversation_id,
                                     "message": console_message_payload(message, counsellor_name)},
                         to=conversation_room(conversation_id), namespace=COUNSELLOR_NAMESPACE)

    async def console_note(self, conversation_id: int, note: dict[str, Any]) -> None:
        """An internal note (never to the resident's namespace)."""
        await self._emit("note", {"conversation_id": conversation_id, "note": note},
                         to=conversation_room(conversation_id), namespace=COUNSELLOR_NAMESPACE)

    # --- to every console --------------------------------------------------------------

    async def console_queue(self, payload: dict[str, Any]) -> None:
        await self._emit("queue", payload, to=COUNSELLORS_ROOM, namespace=COUNSELLOR_NAMESPACE)

    async def console_conversation_state(self, payload: dict[str, Any]) -> None:
        """A conversation changed hands: {conversation_id, state, counsellor_id, counsellor_name}."""
        await self._emit("conversation_state", payload, to=COUNSELLORS_ROOM, namespace=COUNSELLOR_NAMESPACE)

    async def console_callbacks(self, payload: dict[str, Any]) -> None:
        await self._emit("callbacks", payload, to=COUNSELLORS_ROOM, namespace=COUNSELLOR_NAMESPACE)

    # --- to one console socket, or one sign-in's ----------------------------------------

    async def console_hello(self, sid: str, payload: dict[str, Any]) -> None:
        await self._emit("hello", payload, to=sid, namespace=COUNSELLOR_NAMESPACE)

    async def signed_out(self, session_id: int) -> None:
        await self._emit("signed_out", {}, to=staff_session_room(session_id), namespace=COUNSELLOR_NAMESPACE)

    # --- to the resident who asked for a call back ------------------------------------

    async def callback_ack(self, sid: str, callback_id: int) -> None:
        await self._emit("callback_ack", {"callback_id": callback_id}, to=sid)
