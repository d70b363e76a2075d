"""The counsellors' side: the Socket.IO namespace "/counsellor" of the console,
and what a counsellor does to a conversation.

Only a signed-in counsellor or admin connects: the connect is authenticated
from the staff session cookie (``auth.py``) and refused otherwise. Every
event is a request answered through the Socket.IO acknowledgement:
``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}``. As on the
resident side, untrusted input is checked first (``check_*``, which raise
ConsoleError and change nothing) and acted on after (``do_*``); events go out
through ``events.py`` after the commit.

Who reads what: a counsellor reads the transcript of a queued conversation, of
one assigned to them, and of a closed one they handled (up to when they let
it go); nothing else. Opening a transcript and picking a chat up are audited.

Background work of every process (``run``): heartbeats of the counsellors
connected here (presence), sign-outs elsewhere honoured, and, in one process
at a time, the grace period: the chats of a counsellor gone longer than
``POLKU_COUNSELLOR_GRACE_SECS`` go back to the front of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

import socketio
import yaml
from redis import asyncio as aioredis
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.content import TOPIC_INTENTS
from bot.types import LANGUAGES

from . import handoff as hs
from .auth import Staff, StaffAuth, add_audit, session_cookie_token
from .errors import BackendUnavailable, ChatServerError, IllegalTransition
from .events import (
    COUNSELLOR_NAMESPACE, COUNSELLORS_ROOM, Events, conversation_room, console_message_payload,
    iso_time, staff_session_room,
)
from .handoff import Handoff
from .store.models import Conversation, HandoffTransition, Message, utcnow
from .presence import PRESENCE_HEARTBEAT_SECS, Presence
from .redis_backend import redis_errors
from .store.staff_models import ConversationNote, ConversationTag
from .store.conversations import Conversations
from .store.core import Store

log = logging.getLogger(__name__)

COUNSELLOR_MESSAGE_MAX_CHARS = 4000
# Reason of a queued -> closed move by the system: the resident went silent (POLKU_QUEUE_ABANDON_HOURS).
REASON_ABANDONED = "abandoned"
NOTE_MAX_CHARS = 4000
OTHER_LABEL_MAX_CHARS = 80
CLIENT_ID_MAX_CHARS = 64
TRANSCRIPT_MAX_MESSAGES = 5000
GRACE_SWEEP_MIN_SECS = 0.2
# A console lists the front of the queue, at most this many (crisis chats come first, and
# the front is what a counsellor picks up); the payload's "total" says how many wait in all.
# A list of 500 was a 120 KB snapshot to every console at every change, and unusable.
QUEUE_LISTED_MAX = 50
# Tags a chat is closed with: the contract's topics (not the requests for a person) and "other".
CLOSE_TAGS: tuple[str, ...] = tuple(t for t in TOPIC_INTENTS if t != "request_counsellor") + ("other",)


class ConsoleError(ChatServerError):
    """A console request refused; ``code`` goes back in the acknowledgement. Nothing was changed."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


# --- validated input -------------------------------------------------------------------


def _object(data: Any) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConsoleError("malformed_payload", "payload is not an object")
    return data


def check_conversation_id(data: Any) -> int:
    value = _object(data).get("conversation_id")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConsoleError("malformed_payload", "conversation_id is not a positive integer")
    return value


def _has_lone_surrogate(value: str) -> bool:
    """No database driver can encode one (it was a server_busy)."""
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _text(value: Any, max_chars: int, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or "\x00" in value or _has_lone_surrogate(value):
        raise ConsoleError("malformed_payload", f"{what} is empty or not a string")
    if len(value) > max_chars:
        raise ConsoleError("message_too_long", f"{what} > {max_chars} chars")
    return value.strip()


@dataclass(frozen=True)
class CounsellorMessage:
    conversation_id: int
    text: str
    client_id: str | None


def check_send(data: Any) -> CounsellorMessage:
    payload = _object(data)
    client_id = payload.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_MAX_CHARS
                                  or not client_id.isprintable()):  # NUL, lone surrogates: server_busy before
        raise ConsoleError("malformed_payload", "client_id is not a short string")
    return CounsellorMessage(check_conversation_id(payload),
                             _text(payload.get("text"), COUNSELLOR_MESSAGE_MAX_CHARS, "text"), client_id)


def check_typing(data: Any) -> tuple[int, bool]:
    typing = _object(data).get("typing")
    if not isinstance(typing, bool):
        raise ConsoleError("malformed_payload", "typing is not a boolean")
    return check_conversation_id(data), typing


def check_note(data: Any) -> tuple[int, str]:
    return check_conversation_id(data), _text(_object(data).get("text"), NOTE_MAX_CHARS, "text")


@dataclass(frozen=True)
class Closing:
    conversation_id: int
    tags: tuple[str, ...]
    other_label: str | None


def check_close(data: Any) -> Closing:
    payload = _object(data)
    tags = payload.get("tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        raise ConsoleError("tags_required", "tags is not a non-empty list of strings")
    unknown = [t for t in tags if t not in CLOSE_TAGS]
    if unknown:
        raise ConsoleError("unknown_tag", ", ".join(unknown[:3])[:100])
    label = payload.get("other_label")
    if label is not None:
        if not isinstance(label, str) or len(label) > OTHER_LABEL_MAX_CHARS:
            raise ConsoleError("malformed_payload", f"other_label is not a string of <= {OTHER_LABEL_MAX_CHARS}")
        label = " ".join(label.split()) or None
        if label and any(unicodedata.category(c)[0] == "C" for c in label):
            raise ConsoleError("malformed_payload", "other_label has control characters")
    ordered = tuple(dict.fromkeys(tags))
    return Closing(check_conversation_id(payload), ordered, label if "other" in ordered else None)


# --- who may read what -----------------------------------------------------------------


def handled_until(transitions: list[HandoffTransition], actor: str) -> datetime | None:
    """When ``actor`` last let the conversation go (put back, closed, requeued), None if never."""
    holder: str | None = None
    until: datetime | None = None
    for row in transitions:
        if row.from_state == hs.COUNSELLOR:
            if holder == actor:
                until = row.at
            holder = None
        if row.to_state == hs.COUNSELLOR:
            holder = row.actor
    return until


def counsellor_at(transitions: list[HandoffTransition], at: datetime) -> str | None:
    """The actor who held the conversation at ``at`` (whose messages are a counsellor's then)."""
    holder = None
    for row in transitions:
        if row.at > at:
            break
        if row.to_state == hs.COUNSELLOR:
            holder = row.actor
        elif row.from_state == hs.COUNSELLOR:
            holder = None
    return holder


def _staff_id_of(actor: str | None) -> int | None:
    if actor and actor.startswith("counsellor:"):
        with contextlib.suppress(ValueError):
            return int(actor.split(":", 1)[1])
    return None


# --- content: quick inserts and tag labels ----------------------------------------------


@dataclass(frozen=True)
class ConsoleContent:
    snippets: dict[str, list[dict[str, str]]]  # language -> [{title, text}]
    tag_labels: dict[str, dict[str, str]]  # tag -> language -> label

    @classmethod
    def load(cls, path: Path) -> "ConsoleContent":
        """training_data/counsellor_snippets.yml; missing or broken parts are left out, with a warning."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            log.warning("counsellor snippets not loaded from %s: %s", path, type(exc).__name__)
            data = {}
        snippets: dict[str, list[dict[str, str]]] = {lang: [] for lang in LANGUAGES}
        for lang, items in (data.get("snippets") or {}).items():
            if lang in LANGUAGES and isinstance(items, list):
                snippets[lang] = [{"title": str(i["title"]), "text": str(i["text"])} for i in items
                                  if isinstance(i, dict) and i.get("title") and i.get("text")]
        labels: dict[str, dict[str, str]] = {}
        raw_labels = data.get("tags") or {}
        for tag in CLOSE_TAGS:
            entry = raw_labels.get(tag) if isinstance(raw_labels, dict) else None
            entry = entry if isinstance(entry, dict) else {}
            labels[tag] = {lang: str(entry.get(lang) or entry.get("en") or tag) for lang in LANGUAGES}
        return cls(snippets, labels)


# --- per-socket state --------------------------------------------------------------------


@dataclass
class ConsoleSocket:
    staff: Staff
    open_conversations: set[int] = field(default_factory=set)


GuardedHandler = Callable[[str, Any], Awaitable[dict[str, Any]]]


class CounsellorChannel:
    """Socket.IO handlers of "/counsellor", the counsellor's moves, presence and the grace period."""

    def __init__(self, sio: socketio.AsyncServer, *, settings: Any, store: Store, handoff: Handoff,
                 events: Events, auth: StaffAuth, presence: Presence, content: ConsoleContent,
                 callbacks: Any, own_origins: set[str], redis: aioredis.Redis | None = None) -> None:
        self.sio = sio
        self.settings = settings
        self.store = store
        self.conversations = Conversations(store)
        self.handoff = handoff
        self.events = events
        self.auth = auth
        self.presence = presence
        self.content = content
        self.callbacks = callbacks
        self.grace_secs = settings.counsellor_grace_secs
        self.nobody_back_secs = settings.queue_nobody_back_secs
        self.abandon_after = timedelta(hours=settings.queue_abandon_hours)
        self.own_origins = own_origins
        self.redis = redis
        self.grace_lock_key = f"{settings.redis_prefix}grace_sweep_lock"
        self.default_language = settings.default_language
        self.sockets: dict[str, ConsoleSocket] = {}
        self._task: asyncio.Task | None = None
        self._last_availability: tuple[int, bool] | None = None
        # sweep_unattended: since when nobody has been online (monotonic), and whether someone was.
        self._nobody_since: float | None = None
        self._had_counsellors = False
        self.sweep_interval_secs = min(PRESENCE_HEARTBEAT_SECS, max(GRACE_SWEEP_MIN_SECS, self.grace_secs / 4))
        handoff.queue_listeners.append(self._on_queue_changed)
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
        }
        for event, handler in handlers.items():
            self.sio.on(event, namespace=ns)(self._guarded(handler))
        self.sio.on("*", namespace=ns)(self.on_unknown_event)
        listeners = getattr(self.sio, "malformed_listeners", None)
        if listeners is not None:
            listeners[ns] = self.on_malformed_frame

    def add_handler(self, event: str, handler: GuardedHandler) -> None:
        """Another module's console request (callbacks.py), with the same guard."""
        self.sio.on(event, namespace=COUNSELLOR_NAMESPACE)(self._guarded(handler))

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
                    raise ConsoleError("malformed_payload", "more than one argument")
                result = await handler(sid, args[0] if args else None)
                return {"ok": True, **(result or {})}
            except ConsoleError as exc:
                log.info("console request refused: %s", exc)
                return {"ok": False, "error": exc.code}
            except IllegalTransition as exc:
                log.info("console move refused: %s", exc)
                return {"ok": False, "error": "not_allowed"}
            except Exception as exc:
                log.error("%s failed: %s", handler.__name__, type(exc).__name__)
                log.debug("%s failed", handler.__name__, exc_info=True)
                return {"ok": False, "error": "server_busy"}
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
            staff = await self.auth.session(session_cookie_token(request.cookies, self.settings))
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
                self._had_counsellors = True
                self._nobody_since = self._nobody_since or time.monotonic()
        except BackendUnavailable:
            pass

    async def session_ended(self, session_id: int) -> None:
        """A sign-out: every console of that session is told, and the ones here are closed."""
        await self.events.signed_out(session_id)
        for sid, state in list(self.sockets.items()):
            if state.staff.session_id == session_id:
                await self.sio.disconnect(sid, namespace=COUNSELLOR_NAMESPACE)

    # --- reading ------------------------------------------------------------------------------

    async def check_may_read(self, staff: Staff, conversation_id: int) -> tuple[Conversation, datetime | None]:
        """The conversation and how far this counsellor may read it (None: all), else ConsoleError."""
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            raise ConsoleError("not_found")
        state = conversation.handoff_state
        if state == hs.QUEUED or (state == hs.COUNSELLOR and conversation.counsellor_id == str(staff.id)):
            return conversation, None
        if state in (hs.CLOSED, hs.BOT):
            until = handled_until(await self.conversations.transitions(conversation_id), staff.actor)
            if until is not None:
                return conversation, until
        raise ConsoleError("forbidden")

    async def transcript(self, conversation: Conversation, until: datetime | None) -> dict[str, Any]:
        """Every message (the bot's and the notices too), notes, and who wrote the counsellor lines."""
        async with self.store.reading() as session:
            query = select(Message).where(Message.conversation_id == conversation.id)
            notes_query = select(ConversationNote).where(ConversationNote.conversation_id == conversation.id)
            if until is not None:
                query = query.where(Message.created_at <= until)
                notes_query = notes_query.where(ConversationNote.created_at <= until)
            messages = list((await session.execute(
                query.order_by(Message.id).limit(TRANSCRIPT_MAX_MESSAGES))).scalars().all())
            notes = list((await session.execute(notes_query.order_by(ConversationNote.id))).scalars().all())
        transitions = await self.conversations.transitions(conversation.id)
        authors = {m.id: _staff_id_of(counsellor_at(transitions, m.created_at))
                   for m in messages if m.sender == "counsellor"}
        names = await self.auth.display_names({a for a in authors.values() if a is not None}
                                               | {n.staff_id for n in notes})
        return {
            "conversation": await self.summary(conversation),
            "messages": [console_message_payload(m, names.get(authors.get(m.id))) for m in messages],
            "notes": [self.note_payload(n, names.get(n.staff_id)) for n in notes],
            "complete": until is None,
        }

    @staticmethod
    def note_payload(note: ConversationNote, author: str | None) -> dict[str, Any]:
        return {"note_id": note.id, "text": note.text, "time": iso_time(note.created_at),
                "staff_id": note.staff_id, "author": author}

    async def summary(self, conversation: Conversation, position: int | None = None) -> dict[str, Any]:
        """What a console shows of a conversation in its lists."""
        counsellor_id = int(conversation.counsellor_id) if conversation.counsellor_id else None
        name = None
        if counsellor_id is not None:
            name = (await self.auth.display_names({counsellor_id})).get(counsellor_id)
        return {
            "conversation_id": conversation.id, "state": conversation.handoff_state,
            "topic": conversation.topic, "language": conversation.language or self.default_language,
            "crisis": conversation.priority == "crisis", "priority": conversation.priority,
            "reason": conversation.handoff_reason,
            "queued_at": iso_time(conversation.queued_at) if conversation.queued_at else None,
            "position": position, "counsellor_id": counsellor_id, "counsellor_name": name,
        }

    async def queue_snapshot(self, ids: list[int] | None = None) -> dict[str, Any]:
        """The front of the queue (QUEUE_LISTED_MAX conversations), how many wait in all
        (``total``) and how many of them are crisis chats (``crisis_total``)."""
        if ids is None:
            ids = await self.handoff.queue.conversation_ids()
        front = ids[:QUEUE_LISTED_MAX]
        rows: dict[int, Conversation] = {}
        if front:
            async with self.store.reading() as session:
                result = await session.execute(select(Conversation).where(
                    Conversation.id.in_(front), Conversation.handoff_state == hs.QUEUED))
                rows = {c.id: c for c in result.scalars().all()}
        entries = []
        for position, cid in enumerate(front, start=1):
            if cid in rows:
                entries.append(await self.summary(rows[cid], position=position))
        crisis_total = await self.handoff.queue.crisis_count() if len(ids) > len(front) else sum(
            1 for entry in entries if entry["crisis"])
        return {"conversations": entries, "total": max(len(ids), len(entries)), "crisis_total": crisis_total,
                "time": iso_time(utcnow())}

    async def assigned_to(self, staff: Staff) -> list[dict[str, Any]]:
        async with self.store.reading() as session:
            result = await session.execute(select(Conversation).where(
                Conversation.handoff_state == hs.COUNSELLOR, Conversation.counsellor_id == str(staff.id))
                .order_by(Conversation.id))
            conversations = list(result.scalars().all())
        return [await self.summary(c) for c in conversations]

    async def _on_queue_changed(self, ids: list[int]) -> None:
        """The consoles get the queue when what they show changed (whichever process sent it last)."""
        snapshot = await self.queue_snapshot(ids)
        shown = json.dumps({k: v for k, v in snapshot.items() if k != "time"}, sort_keys=True)
        digest = hashlib.sha256(shown.encode()).hexdigest()
        try:
            changed = bool(await self.handoff.told.changed({hs.CONSOLES_TOLD: digest}))
        except BackendUnavailable:  # Redis away: send it
            changed = True
        if changed or self.handoff.resending:
            await self.events.console_queue(snapshot)

    async def _on_state_changed(self, conversation: Conversation, from_state: str, to_state: str) -> None:
        """Every console learns who has the conversation now; consoles that may no longer read
        it stop getting its lines (on every process: the room is closed everywhere)."""
        if to_state in (hs.COUNSELLOR, hs.CLOSED, hs.BOT) and from_state != hs.CLOSED:
            await self.sio.close_room(conversation_room(conversation.id), namespace=COUNSELLOR_NAMESPACE)
            for state in self.sockets.values():
                state.open_conversations.discard(conversation.id)
        if to_state != hs.BOT or from_state == hs.QUEUED:
            await self.events.console_conversation_state(await self.summary(conversation))

    # --- requests -------------------------------------------------------------------------------

    async def on_hello(self, sid: str, data: Any) -> dict[str, Any]:
        staff = self.sockets[sid].staff
        return {
            "staff": {"id": staff.id, "username": staff.username, "display_name": staff.display_name,
                      "role": staff.role},
            "queue": await self.queue_snapshot(),
            "mine": await self.assigned_to(staff),
            "callbacks": await self.callbacks.open_requests(),
            "snippets": self.content.snippets,
            "tags": [{"tag": t, "labels": self.content.tag_labels[t]} for t in CLOSE_TAGS],
            "available": await self.handoff.available(),
            "closures": self._closures(),
            "grace_secs": self.grace_secs,
        }

    def _closures(self) -> list[dict[str, Any]]:
        """The coming two weeks' closed days (public holidays, the area's own, exceptions)."""
        content = getattr(self.handoff.notices, "content", None)
        try:
            return [c.to_json() for c in content.hours.closures(14)] if content is not None else []
        except ValueError:
            return []

    async def on_open(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id = check_conversation_id(data)
        state = self.sockets[sid]
        conversation, until = await self.check_may_read(state.staff, conversation_id)
        await self.auth.audit(state.staff, "view_transcript", conversation_id,
                              "" if until is None else "handled part")
        await self._watch(sid, conversation_id)
        return await self.transcript(conversation, until)

    async def _watch(self, sid: str, conversation_id: int) -> None:
        state = self.sockets.get(sid)
        if state is not None:
            state.open_conversations.add(conversation_id)
            await self.sio.enter_room(sid, conversation_room(conversation_id), namespace=COUNSELLOR_NAMESPACE)

    async def on_close_view(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id = check_conversation_id(data)
        state = self.sockets[sid]
        state.open_conversations.discard(conversation_id)
        await self.sio.leave_room(sid, conversation_room(conversation_id), namespace=COUNSELLOR_NAMESPACE)
        return {}

    async def on_pick_up(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id = check_conversation_id(data)
        staff = self.sockets[sid].staff
        conversation = await self.do_pick_up(staff, conversation_id)
        await self._watch(sid, conversation_id)
        return await self.transcript(conversation, None)

    async def do_pick_up(self, staff: Staff, conversation_id: int) -> Conversation:
        """Queued -> this counsellor, atomically: the row lock makes every other try see it taken."""
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, conversation_id)
            if conversation is None:
                raise ConsoleError("not_found")
            if conversation.handoff_state != hs.QUEUED:
                raise ConsoleError("already_taken")
            with contextlib.suppress(BackendUnavailable):
                await self.presence.heartbeat(str(staff.id), staff.display_name)  # the name residents see
            await self.handoff.transition(tx, conversation, hs.COUNSELLOR, actor=staff.actor,
                                          reason="picked_up", counsellor_id=str(staff.id))
            add_audit(tx, staff, "pick_up", conversation_id)
        log.info("conversation %s picked up by staff %s", conversation_id, staff.id)
        return conversation

    async def _lock_mine(self, tx: Any, staff: Staff, conversation_id: int) -> Conversation:
        conversation = await self.conversations.lock(tx, conversation_id)
        if conversation is None:
            raise ConsoleError("not_found")
        if conversation.handoff_state != hs.COUNSELLOR or conversation.counsellor_id != str(staff.id):
            raise ConsoleError("not_yours")
        return conversation

    async def on_send(self, sid: str, data: Any) -> dict[str, Any]:
        message = check_send(data)
        stored = await self.do_send(self.sockets[sid].staff, message)
        return {"message": console_message_payload(stored, self.sockets[sid].staff.display_name)}

    async def do_send(self, staff: Staff, message: CounsellorMessage) -> Message:
        """Store the counsellor's message; the resident gets it as bot_uttered (sender counsellor).

        The hot path of a live chat, so two statements: the conditional UPDATE
        checks that the conversation is this counsellor's, locks its row and
        touches its activity time at once; the INSERT returns the stored line."""
        try:
            async with self.store.transaction() as tx:
                now = utcnow()
                row = (await tx.session.execute(
                    update(Conversation)
                    .where(Conversation.id == message.conversation_id,
                           Conversation.handoff_state == hs.COUNSELLOR,
                           Conversation.counsellor_id == str(staff.id))
                    .values(last_activity_at=now)
                    .returning(Conversation.language)
                    .execution_options(synchronize_session=False))).first()
                if row is None:
                    raise ConsoleError("not_yours")
                stored = (await tx.session.execute(
                    insert(Message).values(conversation_id=message.conversation_id, sender="counsellor",
                                           text=message.text, language=row.language,
                                           client_id=message.client_id, created_at=now)
                    .returning(Message))).scalar_one()
                tx.on_commit(lambda: self.events.bot_uttered(message.conversation_id, stored,
                                                             counsellor_name=staff.display_name))
        except IntegrityError:
            # The same client_id again (a resend after a reconnect): stored once, answered with it.
            if message.client_id is None:
                raise
            stored = await self.conversations.message_by_client_id(message.conversation_id, message.client_id)
            if stored is None:
                raise
        return stored

    async def on_typing(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id, typing = check_typing(data)
        staff = self.sockets[sid].staff
        conversation = await self.conversations.get(conversation_id)
        if (conversation is None or conversation.handoff_state != hs.COUNSELLOR
                or conversation.counsellor_id != str(staff.id)):
            raise ConsoleError("not_yours")
        await self.events.typing(conversation_id, "counsellor", typing)
        return {}

    async def on_put_back(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id = check_conversation_id(data)
        staff = self.sockets[sid].staff
        async with self.store.transaction() as tx:
            conversation = await self._lock_mine(tx, staff, conversation_id)
            await self.handoff.transition(tx, conversation, hs.QUEUED, actor=staff.actor,
                                          reason=hs.REASON_PUT_BACK)
            add_audit(tx, staff, "put_back", conversation_id)
        return {}

    async def on_close(self, sid: str, data: Any) -> dict[str, Any]:
        closing = check_close(data)
        await self.do_close(self.sockets[sid].staff, closing)
        return {}

    async def do_close(self, staff: Staff, closing: Closing) -> None:
        """Close with topic tags (for statistics); the resident's next message goes to the bot."""
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, closing.conversation_id)
            if conversation is None:
                raise ConsoleError("not_found")
            queued = conversation.handoff_state == hs.QUEUED
            if not queued:
                conversation = await self._lock_mine(tx, staff, closing.conversation_id)
            now = utcnow()
            for tag in closing.tags:
                tx.session.add(ConversationTag(conversation_id=conversation.id, tag=tag, staff_id=staff.id,
                                               label=closing.other_label if tag == "other" else None,
                                               created_at=now))
            await self.handoff.transition(tx, conversation, hs.CLOSED, actor=staff.actor, reason="closed")
            add_audit(tx, staff, "close", conversation.id, "tags: " + ",".join(closing.tags))
        log.info("conversation %s closed by staff %s", closing.conversation_id, staff.id)

    async def on_note(self, sid: str, data: Any) -> dict[str, Any]:
        conversation_id, text = check_note(data)
        staff = self.sockets[sid].staff
        conversation, until = await self.check_may_read(staff, conversation_id)
        if until is not None:
            raise ConsoleError("not_yours")  # notes go on chats one has now, not on old ones
        async with self.store.transaction() as tx:
            note = ConversationNote(conversation_id=conversation_id, staff_id=staff.id, text=text,
                                    created_at=utcnow())
            tx.session.add(note)
            await tx.session.flush()
            add_audit(tx, staff, "note", conversation_id)
            payload = self.note_payload(note, staff.display_name)
            tx.on_commit(lambda: self.events.console_note(conversation_id, payload))
        return {"note": payload}

    # --- background: presence, sign-outs, grace period ---------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def run(self) -> None:
        next_heartbeat = 0.0
        while True:
            try:
                if time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + PRESENCE_HEARTBEAT_SECS
                    await self.heartbeat()
                if await self._lead_sweep():
                    await self.sweep_grace()
                    await self.sweep_abandoned()
                    await self._watch_availability()
                    await self.sweep_unattended()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or the database away for a moment: try again next round
                log.warning("counsellor background work failed: %s", type(exc).__name__)
            await asyncio.sleep(self.sweep_interval_secs)

    async def heartbeat(self) -> None:
        """Keep this process's counsellors online; close the consoles of ended sign-ins."""
        staff_by_id = {state.staff.id: state.staff for state in self.sockets.values()}
        for staff in staff_by_id.values():
            await self.presence.heartbeat(str(staff.id), staff.display_name)
        sessions = {state.staff.session_id for state in self.sockets.values()}
        live = await self.auth.live_session_ids(sessions)
        for sid, state in list(self.sockets.items()):
            if state.staff.session_id not in live:
                log.info("console of staff %s closed: signed out, expired or disabled", state.staff.id)
                await self.sio.disconnect(sid, namespace=COUNSELLOR_NAMESPACE)

    async def _lead_sweep(self) -> bool:
        """Whether this process does this round's sweep: one process at a time (a Redis lock)."""
        if self.redis is None:
            return True
        async with redis_errors():
            return bool(await self.redis.set(self.grace_lock_key, secrets.token_hex(8), nx=True,
                                             px=max(1, int(self.sweep_interval_secs * 900))))

    async def sweep_grace(self) -> None:
        """Requeue, to the front, the chats of counsellors gone longer than the grace period."""
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation.id, Conversation.counsellor_id, Conversation.queued_at)
                .where(Conversation.handoff_state == hs.COUNSELLOR))
            assigned = result.all()
        if not assigned:
            return
        online = await self.presence.online_ids()
        gone = {cid for _, cid, _ in assigned if cid and cid not in online}
        if not gone:
            return
        seen = await self.presence.last_seen(gone)
        now = time.time()
        expired = set()
        for counsellor_id in gone:
            if seen.get(counsellor_id) is None:  # never seen here (a restart): the grace starts now
                await self.presence.mark_seen(counsellor_id, now)
            elif now - seen[counsellor_id] >= self.grace_secs:
                expired.add(counsellor_id)
        # The latest queued first: each goes before the one requeued before it, so the
        # longest-waiting ends up in front.
        for conversation_id, counsellor_id, queued_at in sorted(
                (row for row in assigned if row[1] in expired),
                key=lambda row: row[2] or utcnow(), reverse=True):
            await self.do_requeue(conversation_id, counsellor_id)

    async def sweep_abandoned(self) -> None:
        """Close queued conversations whose resident has been silent longer than
        POLKU_QUEUE_ABANDON_HOURS: they would hold a place and inflate every wait."""
        if self.abandon_after <= timedelta(0):
            return
        cutoff = utcnow() - self.abandon_after
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation.id).where(Conversation.handoff_state == hs.QUEUED,
                                              Conversation.last_activity_at < cutoff))
            stale = [row[0] for row in result.all()]
        for conversation_id in stale:
            async with self.store.transaction() as tx:
                conversation = await self.conversations.lock(tx, conversation_id)
                if (conversation is None or conversation.handoff_state != hs.QUEUED
                        or conversation.last_activity_at >= cutoff):
                    continue  # picked up, left, or the resident wrote meanwhile
                await self.handoff.transition(tx, conversation, hs.CLOSED, actor="system",
                                              reason=REASON_ABANDONED)
            log.info("conversation %s closed: queued without a word from the resident for %s",
                     conversation_id, self.abandon_after)

    async def do_requeue(self, conversation_id: int, counsellor_id: str) -> None:
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, conversation_id)
            if (conversation is None or conversation.handoff_state != hs.COUNSELLOR
                    or conversation.counsellor_id != counsellor_id):
                return  # moved meanwhile (another process, or the counsellor came back and acted)
            await self.handoff.transition(tx, conversation, hs.QUEUED, actor="system",
                                          reason=hs.REASON_COUNSELLOR_GONE, to_front=True)
            add_audit(tx, None, "requeue_after_grace", conversation_id, f"staff {counsellor_id}")
        log.info("conversation %s back in the queue: staff %s gone longer than %.0f s",
                 conversation_id, counsellor_id, self.grace_secs)

    async def sweep_unattended(self, *, now: float | None = None) -> list[int]:
        """Never a queue nobody will read. When every counsellor has left (nobody online
        for POLKU_QUEUE_NOBODY_BACK_SECS after someone was), or nobody is online and no counsellor is
        expected today (the chat's hours are over), every normal queued conversation goes
        back to the bot and its resident is told (handoff_no_counsellors). Crisis chats
        stay queued: a counsellor signing in sees them first. Returns the ones moved."""
        now = time.monotonic() if now is None else now
        if await self.presence.online_count() > 0:
            self._nobody_since, self._had_counsellors = None, True
            return []
        if self._nobody_since is None:
            self._nobody_since = now
        all_left = self._had_counsellors and now - self._nobody_since >= self.nobody_back_secs
        day_over = not self.handoff.is_open() and not self.handoff.expected_soon()
        if not (all_left or day_over):
            return []
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation.id).where(Conversation.handoff_state == hs.QUEUED,
                                              Conversation.priority != "crisis"))
            waiting = [row[0] for row in result.all()]
        moved = []
        for conversation_id in waiting:
            async with self.store.transaction() as tx:
                conversation = await self.conversations.lock(tx, conversation_id)
                if (conversation is None or conversation.handoff_state != hs.QUEUED
                        or conversation.priority == "crisis"):
                    continue  # picked up, left, or escalated meanwhile
                await self.handoff.transition(tx, conversation, hs.BOT, actor="system",
                                              reason=hs.REASON_NO_COUNSELLORS)
            moved.append(conversation_id)
        if all_left:
            self._had_counsellors = False
        if moved:
            log.info("%d queued conversations back with the bot: %s", len(moved),
                     "every counsellor left" if all_left else "no counsellor expected today")
        return moved

    async def _watch_availability(self) -> None:
        """Counsellors who vanished with a process, or the chat's hours beginning or ending, change
        every queued resident's state: tell them."""
        now = (await self.presence.online_count(), self.handoff.is_open())
        if self._last_availability is not None and now != self._last_availability:
            await self.handoff.queue_changed()
        self._last_availability = now
