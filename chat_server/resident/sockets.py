"""Which conversation each resident socket of this process is in, and the sessions not written
yet (a session costs no database row until the resident's first message: ``write_session``).

A socket is bound to a conversation when it confirms, resumes or writes its session: it joins
the conversation's room (events reach every socket of it on every process). A session not
written yet is known by the id it carries (``SessionIds``: the id proves itself ours), and its
sockets on every process are remembered so that they all join the room when one writes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.exc import IntegrityError

from ..errors import UnknownSession
from ..events import conversation_room
from ..store.conversations import Conversations, is_expired
from ..store.core import Store
from ..store.models import Conversation, Message, utcnow
from .sessions import RedisUnwrittenSockets, SessionIds, hash_session_id, looks_like_session_id

log = logging.getLogger(__package__)


class Rooms(Protocol):
    """python-socketio's rooms (the AsyncServer)."""

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None: ...

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None: ...


class WelcomeSource(Protocol):
    def notice(self, response_id: str, language: str, **params: object) -> object: ...


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


class ResidentSockets:
    """The resident sockets of this process and the conversation each is bound to."""

    def __init__(self, rooms: Rooms, *, store: Store, conversations: Conversations, notices: WelcomeSource,
                 session_ids: SessionIds, session_ttl_hours: float, default_language: str,
                 shared_unwritten: RedisUnwrittenSockets | None = None) -> None:
        self.rooms = rooms
        self.store = store
        self.conversations = conversations
        self.notices = notices
        self.session_ids = session_ids
        self.session_ttl_hours = session_ttl_hours
        self.default_language = default_language
        self.sockets: dict[str, SocketState] = {}
        # The sockets of each session not written yet (by session hash), so that the other
        # tabs of this process join the conversation when one of them writes it.
        self._unwritten_sockets: dict[str, set[str]] = {}
        # And over every process (sessions.RedisUnwrittenSockets), when Redis is configured.
        self.shared_unwritten = shared_unwritten

    def __getitem__(self, sid: str) -> SocketState:
        return self.sockets[sid]

    def __contains__(self, sid: object) -> bool:
        return sid in self.sockets

    def __len__(self) -> int:
        return len(self.sockets)

    def get(self, sid: str) -> SocketState | None:
        return self.sockets.get(sid)

    def add(self, sid: str, state: SocketState) -> None:
        self.sockets[sid] = state

    def remove(self, sid: str) -> SocketState | None:
        state = self.sockets.pop(sid, None)
        if state is not None:
            self._forget_unwritten(sid, state)
        return state

    def language_of(self, sid: str) -> str:
        state = self.sockets.get(sid)
        return (state.language if state else None) or self.default_language

    # --- binding --------------------------------------------------------------------

    async def bind(self, sid: str, session_id: str, conversation: Conversation) -> None:
        """Make the socket one of the conversation's: it gets the conversation's events."""
        state = self.sockets[sid]
        if state.conversation_id == conversation.id:
            return
        if state.conversation_id is not None:
            await self.rooms.leave_room(sid, conversation_room(state.conversation_id))
        await self.rooms.enter_room(sid, conversation_room(conversation.id))
        self._forget_unwritten(sid, state)
        state.conversation_id = conversation.id
        state.session_id = session_id
        state.session_hash = conversation.session_hash
        state.unwritten_since = None
        if state.language is None:
            state.language = conversation.language

    async def resolve(self, sid: str, session_id: str | None, client_id: str | None = None, *,
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
            return await self.write_session(sid)  # no read first: the insert finds a row written meanwhile
        conversation = await self.conversations.find(hash_session_id(session_id))
        if conversation is None:
            minted = self.unwritten(session_id)
            if minted is None:
                raise UnknownSession("unknown or expired session", client_id=client_id)
            await self.bind_unwritten(sid, session_id, minted)
            return await self.write_session(sid) if write else None
        if is_expired(conversation, self.session_ttl_hours):
            raise UnknownSession("unknown or expired session", client_id=client_id)
        await self.bind(sid, session_id, conversation)
        return conversation

    def unwritten(self, session_id: str) -> tuple[float, str | None] | None:
        """(when we minted this id, its welcome's language), if it is ours and has not expired
        (called for ids with no conversation: not written yet)."""
        minted = self.session_ids.minted(session_id)
        if minted is None:
            return None
        age = time.time() - minted[0]
        if age > self.session_ttl_hours * 3600 or age < -300:
            return None
        return minted

    async def bind_unwritten(self, sid: str, session_id: str, minted: tuple[float, str | None]) -> None:
        state = self.sockets[sid]
        if state.conversation_id is not None:
            await self.rooms.leave_room(sid, conversation_room(state.conversation_id))
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

    def unwritten_language(self, state: SocketState) -> str:
        """The language of the welcome an unwritten session was shown."""
        return state.unwritten_language or state.language or self.default_language

    def welcome(self, language: str, at: datetime) -> Message:
        """The welcome notice as a message (stored only with the conversation)."""
        welcome = self.notices.notice("welcome", language)
        return Message(sender="system", text=welcome.text,
                       quick_replies=[qr.to_rasa() for qr in welcome.quick_replies] or None,
                       response_id="welcome", language=language, created_at=at)

    # --- writing a session ------------------------------------------------------------

    async def write_session(self, sid: str) -> Conversation:
        """Write the conversation of the socket's session (not written yet): the row, and the
        welcome the resident was shown. Another socket (or process) may have written it first."""
        return (await self.write_session_created(sid))[0]

    async def write_session_created(self, sid: str) -> tuple[Conversation, bool]:
        """write_session, and whether this call wrote it (False: someone had already)."""
        state = self.sockets[sid]
        assert state.session_hash is not None and state.session_id is not None
        language = self.unwritten_language(state)
        created = True
        try:
            async with self.store.transaction() as tx:
                conversation = await self.conversations.create(tx, state.session_hash, language)
                welcome = self.welcome(language, utcnow())
                await self.conversations.add_message(
                    tx, conversation, sender="system", text=welcome.text, quick_replies=welcome.quick_replies,
                    response_id="welcome", language=language)
            log.info("conversation %s started", conversation.id)
        except IntegrityError:
            conversation = await self.conversations.find(state.session_hash)
            if conversation is None:
                raise
            created = False
        # This socket and the session's other sockets (tabs) join the conversation: the ones
        # here are bound now, the ones on other processes enter its room (and are bound at
        # their next event, which finds the conversation written).
        for other in [sid, *(self._unwritten_sockets.get(conversation.session_hash, ()) - {sid})]:
            other_state = self.sockets.get(other)
            if other_state is not None and other_state.session_id is not None:
                await self.bind(other, other_state.session_id, conversation)
        if self.shared_unwritten is not None and created:
            try:
                elsewhere = [o for o in await self.shared_unwritten.take(conversation.session_hash)
                             if o not in self.sockets]
                for other in elsewhere:
                    await self.rooms.enter_room(other, conversation_room(conversation.id))
            except Exception as exc:
                log.warning("other processes' sockets of the session not told: %s", type(exc).__name__)
        return conversation, created
