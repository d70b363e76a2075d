"""The resident side's rules (``do_*``): sessions, the first message, the bot turn, queue
admission, leaving the queue, history and typing. Input here is already validated
(``protocol``); refusals are raised as ChatServerError and told by the channel.

The path of one resident message answered by the bot: ``do_resident_message`` reads the
conversation's state (one statement, nothing to commit), the bot answers (asking whether a
counsellor can come only when its answer depends on it), and ``_store_turn`` writes the turn
in one transaction (``Conversations.write_bot_turn``); the ack, the console's copy and the
answers are queued on that transaction and go out after its commit.

Logs carry conversation ids, lengths and intents; never message text or session ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol

from sqlalchemy.exc import IntegrityError

from bot.safety import crisis_check
from bot.types import Availability, BotTurn, DialogueState, Reply

from .. import handoff as hs
from ..errors import BackendUnavailable, QueueLimited, UnknownSession
from ..events import Events, HandoffView
from ..handoff import Handoff
from ..ratelimit import RateLimits, address_key
from ..store.conversations import Conversations, StoredTurn, is_expired
from ..store.core import Store, Transaction
from ..store.models import Conversation, Message
from .protocol import ResidentMessage
from .sessions import hash_session_id, looks_like_session_id
from .sockets import ResidentSockets

log = logging.getLogger(__package__)

# The bot's typing indicator shows only when its answer takes longer than this.
BOT_TYPING_DELAY_SECS = 0.3

AvailabilitySource = Availability | Callable[[], Awaitable[Availability]]


class ResidentBot(Protocol):
    """What the resident side needs of the bot (``bot.policy.Bot``)."""

    async def handle(self, text: str, state: DialogueState | None = None, ui_language: str | None = None, *,
                     availability: AvailabilitySource | None = None) -> BotTurn: ...

    def notice(self, response_id: str, language: str, **params: Any) -> Reply: ...

    def redact(self, text: str) -> str: ...


class ResidentService:
    def __init__(self, sockets: ResidentSockets, *, store: Store, conversations: Conversations,
                 bot: ResidentBot, handoff: Handoff, events: Events, limits: RateLimits,
                 session_ttl_hours: float, history_max_messages: int, queued_per_address: int = 3) -> None:
        self.sockets = sockets
        self.store = store
        self.conversations = conversations
        self.bot = bot
        self.handoff = handoff
        self.events = events
        self.limits = limits
        self.session_ttl_hours = session_ttl_hours
        self.history_max_messages = history_max_messages
        self.queued_per_address = queued_per_address
        # Orders the turns of one conversation whose tabs share this process
        # (one socket's own events are already handled in order).
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, conversation_id: int) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    # --- sessions ----------------------------------------------------------------------

    async def do_session_request(self, sid: str, session_id: str | None, language: str | None) -> None:
        state = self.sockets[sid]
        state.language = language or state.language
        await self.limits.check_address(state.address)
        conversation, minted = await self._known_session(session_id)
        if conversation is not None:
            await self.do_resume(sid, session_id, conversation)
        elif minted is not None:
            await self.do_resume_unwritten(sid, session_id, minted)
        else:
            await self.do_start_session(sid, language or state.language)

    async def _known_session(self, session_id: str | None
                             ) -> tuple[Conversation | None, tuple[float, str | None] | None]:
        """The live conversation of a session id, or (not written yet) when we minted it."""
        if session_id is None or not looks_like_session_id(session_id):
            return None, None
        conversation = await self.conversations.find(hash_session_id(session_id))
        if conversation is None:
            return None, self.sockets.unwritten(session_id)
        if is_expired(conversation, self.session_ttl_hours):
            return None, None
        return conversation, None

    async def do_resume(self, sid: str, session_id: str, conversation: Conversation) -> None:
        await self.sockets.bind(sid, session_id, conversation)
        log.info("conversation %s resumed", conversation.id)
        await self.events.session_confirm(sid, session_id)
        await self.events.handoff_state_to_socket(sid, await self.handoff.view(conversation))

    async def do_resume_unwritten(self, sid: str, session_id: str, minted: tuple[float, str | None]) -> None:
        """A session of ours that was never written to (a reload before the first message)."""
        await self.sockets.bind_unwritten(sid, session_id, minted)
        await self.events.session_confirm(sid, session_id)
        await self.events.handoff_state_to_socket(sid, HandoffView(hs.BOT))

    async def do_start_session(self, sid: str, language: str | None) -> None:
        """A new session: an id and the welcome at once, and nothing written. The conversation
        is written with the resident's first message (``ResidentSockets.write_session``), so
        sockets that never write (a page view, a crawler, a flood) cost no database work; the id
        proves itself ours (``SessionIds``) when it resumes before that."""
        now = time.time()
        language = language or self.sockets.default_language
        session_id = self.sockets.session_ids.mint(now, language)
        await self.sockets.bind_unwritten(sid, session_id, (now, language))
        await self.events.session_confirm(sid, session_id)
        # The welcome says the resident is talking to a machine: every new
        # session gets it, whatever widget is in use.
        await self.events.bot_uttered_to_socket(
            sid, self.sockets.welcome(language, datetime.fromtimestamp(now, timezone.utc)))

    # --- user_uttered ------------------------------------------------------------------

    async def do_user_uttered(self, sid: str, message: ResidentMessage) -> None:
        state = self.sockets[sid]
        state.language = message.language or state.language
        bound = (state.conversation_id is not None or state.unwritten_since is not None) and (
            message.session_id in (None, state.session_id))
        if bound:
            # The socket is bound to this session: both limits in one go (one Redis round trip).
            assert state.session_hash is not None
            await self.limits.check_message(state.address, state.session_hash, message.client_id)
        else:
            await self.limits.check_address(state.address, message.client_id)
            await self.sockets.resolve(sid, message.session_id, message.client_id)
            assert state.session_hash is not None
            await self.limits.check_session(state.session_hash, message.client_id)
        # The socket is bound to this session now; do_resident_message reads the conversation
        # (fresh, with its expiry) once.
        conversation_id = state.conversation_id
        if conversation_id is None:  # the session's first message: nothing written yet
            await self.do_first_message(sid, message)
            return
        # A resend after a reconnect (same client_id) is not looked up first: the
        # unique constraint refuses it when it is stored, and it is acknowledged
        # again, not answered twice (do_resident_message). Residents' messages
        # are nearly all new, so this saves a read on nearly every message.
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
        typing: asyncio.Task | None = asyncio.create_task(bot_typing())
        try:
            turn = await self.bot.handle(
                message.text, DialogueState.from_dict({}), message.language or state.language,
                availability=lambda: self.handoff.availability(hs.BOT))
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
        conversation, created = await self.sockets.write_session_created(sid)
        async with self._lock(conversation.id):
            if not created:  # another tab wrote it meanwhile: the ordinary path, from its state
                await self.do_resident_message(sid, conversation.id, message)
                return
            stored = await self._store_turn_or_ack(sid, conversation.id, message, turn)
        if stored is not None:
            log.info("conversation %s: resident message %s (%d chars, intent %s)", conversation.id,
                     stored.id, len(message.text), turn.parse.intent)

    async def do_resident_message(self, sid: str, conversation_id: int, message: ResidentMessage) -> None:
        """Store the message, answer it when the bot has the conversation, acknowledge it."""
        current = await self.conversations.turn_state(conversation_id)
        if current is None or is_expired(current, self.session_ttl_hours):
            raise UnknownSession("unknown or expired session", client_id=message.client_id)
        ui_language = message.language or self.sockets[sid].language
        state = current.handoff_state
        turn: BotTurn | None = None
        # Never silent: the bot answers unless a counsellor has the chat or can pick it
        # up now; a queued resident nobody can reach yet gets the bot meanwhile. With the bot,
        # whether a counsellor can come is asked only if the answer depends on it.
        availability: AvailabilitySource = lambda: self.handoff.availability(state)  # noqa: E731
        with_bot = state in (hs.BOT, hs.CLOSED)
        if state == hs.QUEUED:
            availability = await self.handoff.availability(state)
            with_bot = not availability.now
        typing = asyncio.create_task(self._bot_typing(conversation_id)) if with_bot else None
        try:
            if with_bot:
                turn = await self.bot.handle(message.text, DialogueState.from_dict(current.dialogue_state),
                                             ui_language, availability=availability)
            stored = await self._store_turn_or_ack(sid, conversation_id, message, turn,
                                                   for_queue=state == hs.QUEUED)
        finally:
            if typing is not None:
                if not typing.done():
                    typing.cancel()  # answered before the indicator was due: none shown
                elif not typing.cancelled() and typing.exception() is None:
                    await self.events.typing(conversation_id, "bot", False)
        if stored is not None:
            log.info("conversation %s: resident message %s (%d chars, intent %s)", conversation_id,
                     stored.id, len(message.text), turn.parse.intent if turn else "-")

    async def _store_turn_or_ack(self, sid: str, conversation_id: int, message: ResidentMessage,
                                 turn: BotTurn | None, *, for_queue: bool = False) -> Message | None:
        try:
            return await self._store_turn(sid, conversation_id, message, turn, for_queue=for_queue)
        except IntegrityError:
            # The same client_id came again (a resend after a reconnect, or a race
            # through another socket): it was answered when it first came;
            # acknowledge it again.
            if message.client_id is None:
                raise
            stored = await self.conversations.message_by_client_id(conversation_id, message.client_id)
            if stored is None:
                raise
            await self.events.message_ack(sid, stored)
            return None

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
            # The common turn: the bot answers and keeps the conversation. Written in one go
            # (on SQLite in the database's own thread) while the bot still has it.
            stored = await self.conversations.write_bot_turn(
                conversation_id, turn, message.client_id, hs.BOT,
                lambda tx, stored: self._turn_events(tx, sid, conversation_id, stored))
            if stored is not None:
                return stored.message
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, conversation_id)
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
            stored = await self.conversations.add_message(
                tx, conversation, sender="resident", text=text, language=language,
                client_id=message.client_id, intent="crisis" if crisis else None)
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

    def _turn_events(self, tx: Transaction, sid: str, conversation_id: int, stored: StoredTurn) -> None:
        """What a stored bot turn sends after the commit: the ack, the console's copy, the answers."""
        message = stored.message
        tx.on_commit(lambda: self.events.message_ack(sid, message))
        tx.on_commit(lambda: self.events.console_message(conversation_id, message))
        for answer in stored.answers:
            tx.on_commit(lambda answer=answer: self.events.bot_uttered(conversation_id, answer))

    async def _apply_turn(self, tx: Transaction, sid: str, conversation: Conversation,
                          message: ResidentMessage, turn: BotTurn, *, keep_queue: bool = False) -> Message:
        stored = await self.conversations.record_bot_turn(tx, conversation, turn, message.client_id)
        self._turn_events(tx, sid, conversation.id, stored)
        if keep_queue:
            if turn.handoff is not None and turn.handoff.priority == "crisis":
                await self.handoff.escalate(tx, conversation, actor="system")
            return stored.message
        if turn.handoff is not None:
            await self.handoff.transition(
                tx, conversation, hs.QUEUED, actor="bot", reason=turn.handoff.reason,
                priority=turn.handoff.priority, topic=turn.handoff.topic)
            await self._admit_to_queue(sid, conversation.id, turn.handoff.priority, message.client_id)
            log.info("conversation %s queued (%s, %s)", conversation.id,
                     turn.handoff.reason, turn.handoff.priority)
        return stored.message

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

    # --- history, queue, call-back ---------------------------------------------------------

    async def do_history(self, sid: str, session_id: str | None) -> None:
        await self.limits.check_address(self.sockets[sid].address)
        conversation = await self.sockets.resolve(sid, session_id)
        state = self.sockets[sid]
        if conversation is None:  # not written yet: only the welcome it was shown
            minted = datetime.fromtimestamp(state.unwritten_since or time.time(), timezone.utc)
            welcome = self.sockets.welcome(self.sockets.unwritten_language(state), minted)
            await self.events.history(sid, state.session_id, [welcome], HandoffView(hs.BOT))
            return
        messages = await self.conversations.history(conversation.id, self.history_max_messages)
        view = await self.handoff.view(conversation)
        await self.events.history(sid, state.session_id, messages, view)

    async def do_leave_queue(self, sid: str, session_id: str | None) -> None:
        await self.limits.check_address(self.sockets[sid].address)
        conversation = await self.sockets.resolve(sid, session_id)
        if conversation is None:  # not written yet: with the bot, nothing to leave
            await self.events.handoff_state_to_socket(sid, HandoffView(hs.BOT))
            return
        async with self._lock(conversation.id):
            await self._leave_queue(sid, conversation.id)

    async def _leave_queue(self, sid: str, conversation_id: int) -> None:
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, conversation_id)
            if conversation is None:
                raise UnknownSession("conversation vanished")
            if conversation.handoff_state == hs.QUEUED:
                await self.handoff.transition(tx, conversation, hs.BOT, actor="resident",
                                              reason="left_queue")
                log.info("conversation %s left the queue", conversation_id)
                return
        # Not queued (any more): nothing to leave; tell this socket where it stands.
        await self.events.handoff_state_to_socket(sid, await self.handoff.view(conversation))

    async def do_callback_conversation(self, sid: str, session_id: str | None) -> Conversation:
        """The conversation a call-back request is for (written now if it was not yet)."""
        await self.limits.check_address(self.sockets[sid].address)
        conversation = await self.sockets.resolve(sid, session_id, write=True)
        assert conversation is not None
        return conversation
