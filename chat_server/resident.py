"""The resident side of the Socket.IO protocol (docs/protocol.md).

Every handler first validates the untrusted payload (``check_*``, which
raise ResidentError and change nothing), then acts on valid input
(``do_*``). ``_guarded`` turns every refusal into one ``error`` event in the
resident's language; nothing else is sent for refused input.

Logs carry conversation ids, lengths and intents; never message text or
session ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import socketio
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from bot.safety import crisis_check
from bot.types import LANGUAGES, BotTurn, DialogueState

from . import handoff as hs
from .errors import (BackendUnavailable, MalformedPayload, MessageTooLong, QueueLimited, ResidentError, ServerBusy,
                     TooManyConnections, UnknownEvent, UnknownSession)
from .events import Events, HandoffView, conversation_room
from .handoff import Handoff
from .messages import error_text
from .store.models import Conversation, Message, utcnow
from .ratelimit import MemorySocketCounter, Network, RateLimits, SocketCounter, address_key, client_address
from .sessions import SessionIds, hash_session_id, looks_like_session_id, mint_session_id
from .store.core import (Store, Transaction, TurnChanges, insert_messages, is_expired, lock_state, message_row,
                    run_after_commit)

log = logging.getLogger(__name__)

CLIENT_ID_MAX_CHARS = 64
INTENT_GUESSES_KEPT = 3  # the model's best guesses stored with a resident message (admin inbox)
# The intent stored for a resident message the model could not read (Rasa down).
NLU_UNAVAILABLE_INTENT = "nlu_unavailable"

# --- validated input -----------------------------------------------------------------


@dataclass(frozen=True)
class SessionRequest:
    session_id: str | None
    language: str | None


@dataclass(frozen=True)
class ResidentMessage:
    text: str
    session_id: str | None
    language: str | None
    client_id: str | None


def _language(value: Any) -> str | None:
    # Widgets may send any UI language; the ones we do not speak count as none.
    return value if isinstance(value, str) and value in LANGUAGES else None


def _payload_dict(data: Any, *, optional: bool = False) -> dict:
    if data is None and optional:
        return {}
    if not isinstance(data, dict):
        raise MalformedPayload("payload is not an object")
    return data


def _session_id_field(data: dict, client_id: str | None = None) -> str | None:
    value = data.get("session_id")
    if value is not None and not isinstance(value, str):
        raise MalformedPayload("session_id is not a string", client_id=client_id)
    return value or None


def _client_id_of(data: Any) -> str | None:
    """The payload's client_id if it has a usable one (to echo it in an error)."""
    if not isinstance(data, dict):
        return None
    custom = data.get("customData", data.get("metadata"))
    value = custom.get("client_id") if isinstance(custom, dict) else None
    value = value if value is not None else data.get("client_id")
    return value if isinstance(value, str) and 0 < len(value) <= CLIENT_ID_MAX_CHARS else None


def _payload_language(data: Any) -> str | None:
    """The language a (maybe invalid) payload asks for, so its error speaks it."""
    if not isinstance(data, dict):
        return None
    custom = data.get("customData", data.get("metadata"))
    return _language(custom.get("language")) if isinstance(custom, dict) else _language(data.get("language"))


def check_session_request(data: Any) -> SessionRequest:
    payload = _payload_dict(data, optional=True)
    session_id = payload.get("session_id")
    # Anything that is not one of our ids simply gets a fresh session (as in Rasa).
    return SessionRequest(session_id if isinstance(session_id, str) else None,
                          _language(payload.get("language")))


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_user_uttered(data: Any, max_chars: int) -> ResidentMessage:
    payload = _payload_dict(data)
    custom = payload.get("customData", payload.get("metadata"))
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        raise MalformedPayload("customData is not an object")
    client_id = custom.get("client_id", payload.get("client_id"))
    if client_id is not None and (not isinstance(client_id, str) or not client_id
                                  or len(client_id) > CLIENT_ID_MAX_CHARS or _has_surrogate(client_id)):
        raise MalformedPayload("client_id is not a short string")
    if client_id is not None and "\x00" in client_id:  # PostgreSQL's text cannot hold NUL: server_busy before
        raise MalformedPayload("client_id contains NUL")
    text = payload.get("message")
    if not isinstance(text, str):
        raise MalformedPayload("message is not a string", client_id=client_id)
    # JSON may carry a lone UTF-16 surrogate ("\ud800"), which no database
    # driver can encode: it becomes U+FFFD, and the message is answered like
    # any other (a surrogate pair split in two code points is joined again).
    if _has_surrogate(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if not text.strip():
        raise MalformedPayload("message is empty", client_id=client_id)
    if "\x00" in text:
        raise MalformedPayload("message contains NUL", client_id=client_id)
    if len(text) > max_chars:
        raise MessageTooLong(f"{len(text)} > {max_chars} chars", client_id=client_id)
    return ResidentMessage(text=text, session_id=_session_id_field(payload, client_id),
                           language=_language(custom.get("language")), client_id=client_id)


def check_session_only(data: Any) -> str | None:
    """history_request and leave_queue: an optional session_id, nothing else needed."""
    return _session_id_field(_payload_dict(data, optional=True))


def check_typing(data: Any) -> tuple[str | None, bool]:
    payload = _payload_dict(data)
    typing = payload.get("typing")
    if not isinstance(typing, bool):
        raise MalformedPayload("typing is not a boolean")
    return _session_id_field(payload), typing


# The bot's typing indicator shows only when its answer takes longer than this.
BOT_TYPING_DELAY_SECS = 0.3
# One socket's resident_typing reaches the consoles at most this often; what comes
# faster is coalesced (the latest value is sent when the interval ends), and never
# answered with an error per event. Our widget sends one every 3 s while typing.
TYPING_MIN_INTERVAL_SECS = 1.0
_ACCEPT_LANGUAGE_MAX_CHARS = 200


def connect_language(auth: Any, headers: Any) -> str | None:
    """The language a connecting widget speaks: its Socket.IO auth ``{"language"}``, else the
    browser's Accept-Language (the first of fi, sv, en it names)."""
    if isinstance(auth, dict) and _language(auth.get("language")):
        return auth["language"]
    accept = headers.get("Accept-Language", "") if headers is not None else ""
    for part in str(accept)[:_ACCEPT_LANGUAGE_MAX_CHARS].split(","):
        tag = part.split(";", 1)[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return None


# --- per-socket state --------------------------------------------------------------


@dataclass
class SocketState:
    address: str
    language: str | None = None
    session_id: str | None = None  # kept in memory only, to echo it in `history`
    session_hash: str | None = None
    conversation_id: int | None = None
    # The session is confirmed but its conversation is not written yet (no row until the
    # resident's first message): when it was minted, else None.
    unwritten_since: float | None = None
    unwritten_language: str | None = None  # the language of the welcome it was shown
    counted: bool = False  # counted in the address's open sockets (released at disconnect)
    typing_next_at: float = 0.0  # loop time before which resident_typing is coalesced
    typing_pending: bool | None = None  # the latest value coalesced, sent when the interval ends
    typing_timer: asyncio.TimerHandle | None = None


# --- a bot turn's rows (plain functions of a synchronous Connection: Store.run_write) -


def _write_bot_turn(conn: Connection, conversation_id: int, message: ResidentMessage,
                    turn: BotTurn) -> tuple[Message, list[Message]] | None:
    """The turn's rows when the bot still has the conversation; None when it
    changed while the bot thought (closed, queued, with a counsellor): the
    caller takes the general path, which knows those states."""
    state = lock_state(conn, conversation_id)
    if state is None:
        raise UnknownSession("conversation vanished", client_id=message.client_id)
    if state != hs.BOT:
        return None
    rows, changes = _turn_rows(conversation_id, message, turn)
    stored, *answers = insert_messages(conn, conversation_id, rows, changes,
                                       turn.parse.ranking[:INTENT_GUESSES_KEPT])
    return stored, answers


def _turn_rows(conversation_id: int, message: ResidentMessage,
               turn: BotTurn) -> tuple[list[dict[str, Any]], TurnChanges]:
    """The resident's message and the bot's answers (column values, in order),
    and the conversation's new values."""
    parse = turn.parse
    now = utcnow()
    # Unread because Rasa was down: not "not understood" (the admin inbox would
    # fill with every message of an outage), so no confidence either.
    intent, confidence = ((parse.intent, parse.confidence) if parse.nlu_available
                          else (NLU_UNAVAILABLE_INTENT, None))
    rows = [message_row(conversation_id, sender="resident", text=parse.text, intent=intent,
                        confidence=confidence, language=parse.language, client_id=message.client_id,
                        created_at=now)]
    rows += [message_row(conversation_id, sender="bot", text=reply.text,
                         quick_replies=[qr.to_rasa() for qr in reply.quick_replies] or None,
                         response_id=reply.response_id, language=turn.language, created_at=now)
             for reply in turn.replies]
    return rows, TurnChanges(now, turn.language, turn.state.to_dict(), turn.state.last_topic)


class ResidentChannel:
    """Socket.IO handlers of the default namespace."""

    def __init__(self, sio: socketio.AsyncServer, *, store: Store, bot: Any, handoff: Handoff,
                 events: Events, limits: RateLimits, trusted_proxies: tuple[Network, ...],
                 max_message_chars: int, session_ttl_hours: float, history_max_messages: int,
                 default_language: str, callbacks: Any = None, socket_counter: SocketCounter | None = None,
                 sockets_per_address: int = 20, queued_per_address: int = 3,
                 session_ids: SessionIds | None = None, unwritten_sockets: Any = None) -> None:
        self.sio = sio
        self.callbacks = callbacks  # callbacks.Callbacks: the callback_request event
        self.store = store
        self.bot = bot
        self.handoff = handoff
        self.events = events
        self.limits = limits
        self.trusted_proxies = trusted_proxies
        self.max_message_chars = max_message_chars
        self.session_ttl_hours = session_ttl_hours
        self.history_max_messages = history_max_messages
        self.default_language = default_language
        self.socket_counter = socket_counter or MemorySocketCounter()
        # Without a key of the installation's, ids are still minted lazily, under a key of this
        # process's own (tests); the server passes the shared one.
        self.session_ids = session_ids or SessionIds(mint_session_id().encode())
        self.sockets_per_address = sockets_per_address
        self.queued_per_address = queued_per_address
        self.sockets: dict[str, SocketState] = {}
        # The sockets of each session not written yet (by session hash), so that the other
        # tabs of this process join the conversation when one of them writes it.
        self._unwritten_sockets: dict[str, set[str]] = {}
        # And over every process (sessions.RedisUnwrittenSockets), when Redis is configured.
        self.shared_unwritten = unwritten_sockets
        # Orders the turns of one conversation whose tabs share this process
        # (one socket's own events are already handled in order).
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

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
        if self.callbacks is not None:
            handlers["callback_request"] = self.on_callback_request
        for event, handler in handlers.items():
            self.sio.on(event)(self._guarded(handler))
        self.sio.on("*")(self.on_unknown_event)
        listeners = getattr(self.sio, "malformed_listeners", None)
        if listeners is not None:
            listeners["/"] = self.on_malformed_frame

    # --- plumbing ----------------------------------------------------------------------

    def _language_of(self, sid: str) -> str:
        state = self.sockets.get(sid)
        return (state.language if state else None) or self.default_language

    async def _refuse(self, sid: str, error: ResidentError, data: Any = None) -> None:
        # Counted, and summed up in the log once a minute (frames.FrameStats): one
        # line per refusal would let a client write the log as fast as it sends.
        stats = getattr(self.sio, "frame_stats", None)
        if stats is not None:
            stats.count(f"refused_{error.code}")
        log.debug("refused input: %s (%s)", error.code, error.detail)
        language = _payload_language(data) or self._language_of(sid)
        text = error_text(error.code, language, self.bot)
        try:
            await self.events.error(sid, error.code, text, error.client_id or _client_id_of(data))
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

    def _lock(self, conversation_id: int) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    async def _bind(self, sid: str, session_id: str, conversation: Conversation) -> None:
        """Make the socket one of the conversation's: it gets the conversation's events."""
        state = self.sockets[sid]
        if state.conversation_id == conversation.id:
            return
        if state.conversation_id is not None:
            await self.sio.leave_room(sid, conversation_room(state.conversation_id))
        await self.sio.enter_room(sid, conversation_room(conversation.id))
        self._forget_unwritten(sid, state)
        state.conversation_id = conversation.id
        state.session_id = session_id
        state.session_hash = conversation.session_hash
        state.unwritten_since = None
        if state.language is None:
            state.language = conversation.language

    async def _resolve(self, sid: str, session_id: str | None, client_id: str | None = None, *,
                       write: bool = False) -> Conversation | None:
        """The live conversation the input is for (payload's session id, else the socket's).

        None for a session of ours not written yet (the socket is bound to it), unless
        ``write``: then its conversation is written now (the resident's first message)."""
        state = self.sockets[sid]
        if session_id is None:
            session_id = state.session_id
        if session_id is None or not looks_like_session_id(session_id):
            raise UnknownSession("no valid session id", client_id=client_id)
        if write and state.unwritten_since is not None and session_id == state.session_id:
            return await self._write_session(sid)  # no read first: the insert finds a row written meanwhile
        conversation = await self.store.find_conversation(hash_session_id(session_id))
        if conversation is None:
            minted = self._unwritten(session_id)
            if minted is None:
                raise UnknownSession("unknown or expired session", client_id=client_id)
            await self._bind_unwritten(sid, session_id, minted)
            return await self._write_session(sid) if write else None
        if is_expired(conversation, self.session_ttl_hours):
            raise UnknownSession("unknown or expired session", client_id=client_id)
        await self._bind(sid, session_id, conversation)
        return conversation

    def _unwritten(self, session_id: str) -> tuple[float, str | None] | None:
        """(when we minted this id, its welcome's language), if it is ours and has not expired
        (called for ids with no conversation: not written yet)."""
        minted = self.session_ids.minted(session_id)
        if minted is None:
            return None
        age = time.time() - minted[0]
        if age > self.session_ttl_hours * 3600 or age < -300:
            return None
        return minted

    async def _bind_unwritten(self, sid: str, session_id: str, minted: tuple[float, str | None]) -> None:
        state = self.sockets[sid]
        if state.conversation_id is not None:
            await self.sio.leave_room(sid, conversation_room(state.conversation_id))
        self._forget_unwritten(sid, state)
        state.conversation_id = None
        state.session_id = session_id
        state.session_hash = hash_session_id(session_id)
        state.unwritten_since, state.unwritten_language = minted
        self._unwritten_sockets.setdefault(state.session_hash, set()).add(sid)
        if self.shared_unwritten is not None:
            try:
                await self.shared_unwritten.add(state.session_hash, sid)
            except Exception as exc:  # at worst another process's tab joins at its next event
                log.warning("unwritten session's socket not shared: %s", type(exc).__name__)

    def _forget_unwritten(self, sid: str, state: SocketState) -> None:
        if state.unwritten_since is None or state.session_hash is None:
            return
        sids = self._unwritten_sockets.get(state.session_hash)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._unwritten_sockets[state.session_hash]

    def _unwritten_language(self, state: SocketState) -> str:
        """The language of the welcome an unwritten session was shown."""
        return state.unwritten_language or state.language or self.default_language

    def _welcome(self, language: str, at: datetime) -> Message:
        """The welcome notice as a message (stored only with the conversation)."""
        welcome = self.bot.notice("welcome", language)
        return Message(sender="system", text=welcome.text,
                       quick_replies=[qr.to_rasa() for qr in welcome.quick_replies] or None,
                       response_id="welcome", language=language, created_at=at)

    async def _write_session(self, sid: str) -> Conversation:
        """Write the conversation of the socket's session (not written yet): the row, and the
        welcome the resident was shown. Another socket (or process) may have written it first."""
        return (await self._write_session_created(sid))[0]

    async def _write_session_created(self, sid: str) -> tuple[Conversation, bool]:
        """_write_session, and whether this call wrote it (False: someone had already)."""
        state = self.sockets[sid]
        assert state.session_hash is not None and state.session_id is not None
        language = self._unwritten_language(state)
        created = True
        try:
            async with self.store.transaction() as tx:
                conversation = await tx.create_conversation(state.session_hash, language)
                welcome = self._welcome(language, utcnow())
                await tx.add_message(conversation, sender="system", text=welcome.text,
                                     quick_replies=welcome.quick_replies, response_id="welcome",
                                     language=language)
            log.info("conversation %s started", conversation.id)
        except IntegrityError:
            conversation = await self.store.find_conversation(state.session_hash)
            if conversation is None:
                raise
            created = False
        # This socket and the session's other sockets (tabs) join the conversation: the ones
        # here are bound now, the ones on other processes enter its room (and are bound at
        # their next event, which finds the conversation written).
        for other in [sid, *(self._unwritten_sockets.get(conversation.session_hash, ()) - {sid})]:
            other_state = self.sockets.get(other)
            if other_state is not None and other_state.session_id is not None:
                await self._bind(other, other_state.session_id, conversation)
        if self.shared_unwritten is not None and created:
            try:
                elsewhere = [o for o in await self.shared_unwritten.take(conversation.session_hash)
                             if o not in self.sockets]
                for other in elsewhere:
                    await self.sio.enter_room(other, conversation_room(conversation.id))
            except Exception as exc:
                log.warning("other processes' sockets of the session not told: %s", type(exc).__name__)
        return conversation, created

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
                code, {"code": code, "message": error_text(code, language, self.bot)})
        self.sockets[sid] = SocketState(address=address, counted=bool(counted),
                                        language=_language(auth.get("language")) if isinstance(auth, dict) else None)
        return True

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        state = self.sockets.pop(sid, None)
        if state is None:
            return
        self._forget_unwritten(sid, state)
        if state.typing_timer is not None:
            state.typing_timer.cancel()
        if state.counted:
            try:
                await self.socket_counter.release(state.address)
            except BackendUnavailable as exc:
                log.warning("closed socket not uncounted: %s", exc.detail)

    # --- session_request ---------------------------------------------------------------

    async def on_session_request(self, sid: str, data: Any) -> None:
        request = check_session_request(data)
        state = self.sockets[sid]
        state.language = request.language or state.language
        await self.limits.check_address(state.address)
        conversation = None
        minted = None
        if looks_like_session_id(request.session_id):
            conversation = await self.store.find_conversation(hash_session_id(request.session_id))
            if conversation is None:
                minted = self._unwritten(request.session_id)
            elif is_expired(conversation, self.session_ttl_hours):
                conversation = None
        if conversation is not None:
            await self.do_resume(sid, request.session_id, conversation)
        elif minted is not None:
            await self.do_resume_unwritten(sid, request.session_id, minted)
        else:
            await self.do_start_session(sid, request.language or state.language)

    async def do_resume(self, sid: str, session_id: str, conversation: Conversation) -> None:
        await self._bind(sid, session_id, conversation)
        log.info("conversation %s resumed", conversation.id)
        await self.events.session_confirm(sid, session_id)
        await self.events.handoff_state_to_socket(sid, await self.handoff.view(conversation))

    async def do_resume_unwritten(self, sid: str, session_id: str, minted: tuple[float, str | None]) -> None:
        """A session of ours that was never written to (a reload before the first message)."""
        await self._bind_unwritten(sid, session_id, minted)
        await self.events.session_confirm(sid, session_id)
        await self.events.handoff_state_to_socket(sid, HandoffView(hs.BOT))

    async def do_start_session(self, sid: str, language: str | None) -> None:
        """A new session: an id and the welcome at once, and nothing written. The conversation
        is written with the resident's first message (``_write_session``), so sockets that
        never write (a page view, a crawler, a flood) cost no database work; the id proves
        itself ours (``SessionIds``) when it resumes before that."""
        now = time.time()
        language = language or self.default_language
        session_id = self.session_ids.mint(now, language)
        await self._bind_unwritten(sid, session_id, (now, language))
        await self.events.session_confirm(sid, session_id)
        # The welcome says the resident is talking to a machine: every new
        # session gets it, whatever widget is in use.
        await self.events.bot_uttered_to_socket(sid, self._welcome(language, datetime.fromtimestamp(now, timezone.utc)))

    # --- user_uttered ------------------------------------------------------------------

    async def on_user_uttered(self, sid: str, data: Any) -> None:
        message = check_user_uttered(data, self.max_message_chars)
        state = self.sockets[sid]
        state.language = message.language or state.language
        await self.limits.check_address(state.address, message.client_id)
        if (state.conversation_id is None and state.unwritten_since is None) or (
                message.session_id not in (None, state.session_id)):
            await self._resolve(sid, message.session_id, message.client_id)
        # else: the socket is bound to this session; do_resident_message reads
        # the conversation (fresh, with its expiry) once.
        conversation_id = state.conversation_id
        assert state.session_hash is not None
        if conversation_id is None:  # the session's first message: nothing written yet
            await self.limits.check_session(state.session_hash, message.client_id)
            await self.do_first_message(sid, message)
            return
        # A resend after a reconnect (same client_id) is not looked up first: the
        # unique constraint refuses it when it is stored, and it is acknowledged
        # again, not answered twice (do_resident_message). Residents' messages
        # are nearly all new, so this saves a read on nearly every message.
        await self.limits.check_session(state.session_hash, message.client_id)
        async with self._lock(conversation_id):
            await self.do_resident_message(sid, conversation_id, message)

    async def do_first_message(self, sid: str, message: ResidentMessage) -> None:
        """The first message of a session not written yet: the bot answers it from a fresh
        dialogue, then the conversation, the message and the answer are written (a refused or
        failed message writes nothing at all)."""
        state = self.sockets[sid]

        async def bot_typing() -> None:
            await asyncio.sleep(BOT_TYPING_DELAY_SECS)
            await self.events.typing_to_socket(sid, "bot", True)
        typing = asyncio.create_task(bot_typing())
        try:
            turn = await self.bot.handle(
                message.text, DialogueState.from_dict({}), message.language or state.language,
                availability=await self.handoff.availability(hs.BOT))
        finally:
            if not typing.done():
                typing.cancel()  # answered before the indicator was due: none shown
                typing = None
        try:
            await self._first_turn(sid, message, turn)
        finally:
            if typing is not None and not typing.cancelled() and typing.exception() is None:
                await self.events.typing(state.conversation_id, "bot", False) if state.conversation_id \
                    else await self.events.typing_to_socket(sid, "bot", False)

    async def _first_turn(self, sid: str, message: ResidentMessage, turn: BotTurn) -> None:
        conversation, created = await self._write_session_created(sid)
        async with self._lock(conversation.id):
            if not created:  # another tab wrote it meanwhile: the ordinary path, from its state
                await self.do_resident_message(sid, conversation.id, message)
                return
            try:
                stored = await self._store_turn(sid, conversation.id, message, turn)
            except IntegrityError:
                if message.client_id is None:
                    raise
                stored = await self.store.message_by_client_id(conversation.id, message.client_id)
                if stored is None:
                    raise
                await self.events.message_ack(sid, stored)
                return
        log.info("conversation %s: resident message %s (%d chars, intent %s)", conversation.id,
                 stored.id, len(message.text), turn.parse.intent)

    async def do_resident_message(self, sid: str, conversation_id: int, message: ResidentMessage) -> None:
        """Store the message, answer it when the bot has the conversation, acknowledge it."""
        current = await self.store.turn_state(conversation_id)
        if current is None or is_expired(current, self.session_ttl_hours):
            raise UnknownSession("unknown or expired session", client_id=message.client_id)
        ui_language = message.language or self.sockets[sid].language
        turn: BotTurn | None = None
        availability = await self.handoff.availability(current.handoff_state)
        # Never silent: the bot answers unless a counsellor has the chat or can pick it
        # up now; a queued resident nobody can reach yet gets the bot meanwhile.
        with_bot = current.handoff_state in (hs.BOT, hs.CLOSED) or (
            current.handoff_state == hs.QUEUED and not availability.now)
        typing = asyncio.create_task(self._bot_typing(conversation_id)) if with_bot else None
        try:
            if with_bot:
                turn = await self.bot.handle(
                    message.text, DialogueState.from_dict(current.dialogue_state), ui_language,
                    availability=availability)
            stored = await self._store_turn(sid, conversation_id, message, turn,
                                            for_queue=current.handoff_state == hs.QUEUED)
        except IntegrityError:
            # The same client_id came again (a resend after a reconnect, or a race
            # through another socket): it was answered when it first came;
            # acknowledge it again.
            if message.client_id is None:
                raise
            stored = await self.store.message_by_client_id(conversation_id, message.client_id)
            if stored is None:
                raise
            await self.events.message_ack(sid, stored)
            return
        finally:
            if typing is not None:
                if not typing.done():
                    typing.cancel()  # answered before the indicator was due: none shown
                elif not typing.cancelled() and typing.exception() is None:
                    await self.events.typing(conversation_id, "bot", False)
        log.info("conversation %s: resident message %s (%d chars, intent %s)", conversation_id,
                 stored.id, len(message.text), turn.parse.intent if turn else "-")

    async def _bot_typing(self, conversation_id: int) -> None:
        """The bot's typing indicator, when its answer is slower than BOT_TYPING_DELAY_SECS
        (most answers are faster: an indicator flashing for a moment only distracts)."""
        await asyncio.sleep(BOT_TYPING_DELAY_SECS)
        await self.events.typing(conversation_id, "bot", True)

    async def _store_turn(self, sid: str, conversation_id: int, message: ResidentMessage,
                          turn: BotTurn | None, *, for_queue: bool = False) -> Message:
        """``for_queue``: the bot answered a conversation it read as queued (nobody able to
        pick it up); a turn read in another state is not applied to a queued one."""
        if turn is not None and turn.handoff is None:
            # The common turn: the bot answers and keeps the conversation. Its
            # rows are written in one go (on SQLite in the database's own thread).
            rows = await self.store.run_write(
                lambda conn: _write_bot_turn(conn, conversation_id, message, turn))
            if rows is not None:
                await run_after_commit(self._turn_events(sid, conversation_id, *rows))
                return rows[0]
        async with self.store.transaction() as tx:
            conversation = await tx.lock_conversation(conversation_id)
            if conversation is None:
                raise UnknownSession("conversation vanished", client_id=message.client_id)
            if turn is not None and conversation.handoff_state == hs.CLOSED:
                await self.handoff.transition(tx, conversation, hs.BOT, actor="resident",
                                              reason="resident_wrote")
            if turn is not None and conversation.handoff_state == hs.BOT:
                return await self._apply_turn(tx, sid, conversation, message, turn)
            if turn is not None and for_queue and conversation.handoff_state == hs.QUEUED:
                # Queued, and nobody can pick it up yet: the bot answers meanwhile and the
                # chat keeps its place (the counsellor reads it all when they come).
                return await self._apply_turn(tx, sid, conversation, message, turn, keep_queue=True)
            # Queued or with a counsellor (or it changed while the bot thought):
            # stored for the counsellor, not sent to the bot. The crisis lexicon
            # still reads it: a resident in crisis while waiting gets the emergency
            # guidance at once and moves to the front of the queue.
            text = turn.parse.text if turn is not None else self.bot.redact(message.text)
            language = turn.language if turn is not None else (message.language or conversation.language)
            crisis = crisis_check(text) is not None
            stored = await tx.add_message(conversation, sender="resident", text=text,
                                          language=language, client_id=message.client_id,
                                          intent="crisis" if crisis else None)
            tx.on_commit(lambda: self.events.message_ack(sid, stored))
            tx.on_commit(lambda: self.events.console_message(conversation_id, stored))
            if crisis:
                await self.handoff.escalate(tx, conversation, actor="system")
            # A clear status with the ack, crisis or not: waiting (place, wait) or with a counsellor.
            # (A second crisis message of a chat already at the front escalates nothing new, and the
            # queue's own updates go only where a view changed: without this it got the ack alone.)
            tx.on_commit(lambda: self._tell_status(sid, conversation))
            return stored

    async def _tell_status(self, sid: str, conversation: Conversation) -> None:
        try:
            await self.events.handoff_state_to_socket(sid, await self.handoff.view(conversation))
        except Exception as exc:  # the socket went away, or Redis: the next message tells again
            log.warning("could not send the handoff status: %s", type(exc).__name__)

    def _turn_events(self, sid: str, conversation_id: int, stored: Message,
                     answers: list[Message]) -> list[Callable[[], Awaitable[None]]]:
        """What a stored bot turn sends: the ack, the console's copy, the answers."""
        events = [lambda: self.events.message_ack(sid, stored),
                  lambda: self.events.console_message(conversation_id, stored)]
        events += [lambda answer=answer: self.events.bot_uttered(conversation_id, answer) for answer in answers]
        return events

    async def _apply_turn(self, tx: Transaction, sid: str, conversation: Conversation,
                          message: ResidentMessage, turn: BotTurn, *, keep_queue: bool = False) -> Message:
        rows, changes = _turn_rows(conversation.id, message, turn)
        stored, *answers = [Message(**row) for row in rows]
        tx.session.add_all([stored, *answers])
        changes.apply(conversation)
        await tx.flush()  # one insert for the turn; a resent client_id fails here
        tx.add_guesses(stored, turn.parse.ranking[:INTENT_GUESSES_KEPT])
        for event in self._turn_events(sid, conversation.id, stored, answers):
            tx.on_commit(event)
        if keep_queue:
            if turn.handoff is not None and turn.handoff.priority == "crisis":
                await self.handoff.escalate(tx, conversation, actor="system")
            return stored
        if turn.handoff is not None:
            await self.handoff.transition(
                tx, conversation, hs.QUEUED, actor="bot", reason=turn.handoff.reason,
                priority=turn.handoff.priority, topic=turn.handoff.topic)
            await self._admit_to_queue(sid, conversation.id, turn.handoff.priority, message.client_id)
            log.info("conversation %s queued (%s, %s)", conversation.id,
                     turn.handoff.reason, turn.handoff.priority)
        return stored

    async def _admit_to_queue(self, sid: str, conversation_id: int, priority: str,
                              client_id: str | None) -> None:
        """Per address, at most POLKU_QUEUED_PER_ADDRESS conversations wait in the queue at once;
        past that the request is refused (QueueLimited rolls the whole turn back: nothing stored,
        the widget gives the resident their text back). A crisis is never refused: it is
        queued and counted whatever the address already has, and its resident gets the crisis
        answer like anyone else. Called inside the transaction, after the conversation is in the
        queue, so that two requests at once cannot both take the last place."""
        state = self.sockets.get(sid)
        if state is None:
            return
        limit = None if priority == "crisis" else self.queued_per_address
        try:
            admitted = await self.handoff.queue.admit(address_key("queued", state.address), conversation_id, limit)
        except BackendUnavailable as exc:
            log.warning("queued conversations of the address not counted: %s", exc.detail)
            return
        if not admitted:
            log.info("conversation %s not queued: the address has %d waiting", conversation_id, limit)
            raise QueueLimited("address has its queued conversations", client_id=client_id)

    # --- history, queue, typing ---------------------------------------------------------

    async def on_history_request(self, sid: str, data: Any) -> None:
        session_id = check_session_only(data)
        await self.limits.check_address(self.sockets[sid].address)
        conversation = await self._resolve(sid, session_id)
        state = self.sockets[sid]
        if conversation is None:  # not written yet: only the welcome it was shown
            minted = datetime.fromtimestamp(state.unwritten_since or time.time(), timezone.utc)
            welcome = self._welcome(self._unwritten_language(state), minted)
            await self.events.history(sid, state.session_id, [welcome], HandoffView(hs.BOT))
            return
        messages = await self.store.history(conversation.id, self.history_max_messages)
        view = await self.handoff.view(conversation)
        await self.events.history(sid, state.session_id, messages, view)

    async def on_leave_queue(self, sid: str, data: Any) -> None:
        session_id = check_session_only(data)
        await self.limits.check_address(self.sockets[sid].address)
        conversation = await self._resolve(sid, session_id)
        if conversation is None:  # not written yet: with the bot, nothing to leave
            await self.events.handoff_state_to_socket(sid, HandoffView(hs.BOT))
            return
        async with self._lock(conversation.id):
            await self.do_leave_queue(sid, conversation.id)

    async def do_leave_queue(self, sid: str, conversation_id: int) -> None:
        async with self.store.transaction() as tx:
            conversation = await tx.lock_conversation(conversation_id)
            if conversation is None:
                raise UnknownSession("conversation vanished")
            if conversation.handoff_state == hs.QUEUED:
                await self.handoff.transition(tx, conversation, hs.BOT, actor="resident",
                                              reason="left_queue")
                log.info("conversation %s left the queue", conversation_id)
                return
        # Not queued (any more): nothing to leave; tell this socket where it stands.
        await self.events.handoff_state_to_socket(sid, await self.handoff.view(conversation))

    async def on_callback_request(self, sid: str, data: Any) -> None:
        from .counsellor.callbacks import check_callback_request

        form = check_callback_request(data)
        await self.limits.check_address(self.sockets[sid].address)
        conversation = await self._resolve(sid, form.session_id, write=True)
        await self.callbacks.do_request(sid, conversation, form)

    async def on_resident_typing(self, sid: str, data: Any) -> None:
        state = self.sockets[sid]
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < state.typing_next_at:
            # Faster than TYPING_MIN_INTERVAL_SECS: keep the latest valid value for the end of
            # the interval; drop the rest quietly (no error per event flooding back).
            try:
                session_id, typing = check_typing(data)
            except ResidentError:
                return
            if session_id is None or session_id == state.session_id:
                state.typing_pending = typing
                if state.typing_timer is None:
                    state.typing_timer = loop.call_at(state.typing_next_at, self._typing_interval_ended, sid)
            return
        state.typing_next_at = now + TYPING_MIN_INTERVAL_SECS
        session_id, typing = check_typing(data)
        if state.unwritten_since is not None and session_id in (None, state.session_id):
            return  # no conversation written yet: no console can have it open
        # Typing is frequent and unimportant: no database lookup, only the socket's own session.
        if state.conversation_id is None or (session_id is not None and session_id != state.session_id):
            raise UnknownSession("typing for a session this socket has not confirmed")
        state.typing_pending = None
        await self.events.resident_typing(state.conversation_id, typing)

    def _typing_interval_ended(self, sid: str) -> None:
        state = self.sockets.get(sid)
        if state is None:
            return
        state.typing_timer = None
        typing, state.typing_pending = state.typing_pending, None
        if typing is None or state.conversation_id is None:
            return
        state.typing_next_at = asyncio.get_running_loop().time() + TYPING_MIN_INTERVAL_SECS
        conversation_id = state.conversation_id

        async def send() -> None:
            try:
                await self.events.resident_typing(conversation_id, typing)
            except Exception as exc:  # unimportant: the next typing event mends it
                log.warning("typing not forwarded: %s", type(exc).__name__)
        asyncio.get_running_loop().create_task(send())
