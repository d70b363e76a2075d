"""The handoff state machine: who the resident is talking to.

    bot ──> queued ──> counsellor ──> closed ──> bot
             │  ^          │            ^
             │  └──────────┘ (put back / counsellor disconnected)
             ├──> bot (the resident left the queue)
             └──> closed (closed while waiting)

``Handoff.transition`` is the only way a conversation's ``handoff_state``
changes. It checks the move and who makes it, records a
``handoff_transitions`` row (actor, reason, time), keeps the counsellor queue
in step, stores the notice the resident reads, and emits ``handoff_state``
and the notice after the commit. When the queue changed, the other queued
residents whose place or wait changed get it, and the counsellors' consoles
the new front of the queue (``queue_changed``, ``queue_listeners``).

Queue updates are coalesced: ``queue_changed`` only marks the queue changed,
and one broadcast per ``QUEUE_UPDATE_DELAY_SECS`` sends what changed since
the last one. A resident is sent a ``handoff_state`` only when their view
(state, place, wait) differs from the one last sent to them, by any process
(``Told``, in Redis when configured). So a resident joining at the end costs
one event, not one per queued resident, and ten changes in a moment cost one
broadcast, not ten: a queue of 500 used to cost about 125,000 events to fill.

The counsellor's moves (``counsellor/service.py``): pick up (queued -> counsellor),
put back (counsellor -> queued, keeps its old place), close (-> closed), and
the grace-period requeue of a counsellor who lost their connection
(counsellor -> queued at the front, actor "system").
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from datetime import timedelta
from typing import Any, Awaitable, Callable, Protocol

from bot.types import Availability

from .errors import BackendUnavailable, IllegalTransition
from .events import Events, HandoffView
from .store.models import Conversation, utcnow
from .presence import Presence
from .queue import HandoffQueue, MemoryTold, Told
from .store.conversations import Conversations
from .store.core import Transaction

log = logging.getLogger(__name__)

BOT = "bot"
QUEUED = "queued"
COUNSELLOR = "counsellor"
CLOSED = "closed"
STATES = (BOT, QUEUED, COUNSELLOR, CLOSED)
UNAVAILABLE = "unavailable"  # shown to the resident; the conversation itself stays queued

# Reasons of counsellor -> queued moves; each tells the resident in its own words.
REASON_PUT_BACK = "put_back"
REASON_COUNSELLOR_GONE = "counsellor_disconnected"
# A queued -> queued record: the resident wrote of a crisis while waiting.
REASON_CRISIS = "crisis_while_waiting"
# queued -> bot by the system: every counsellor left, or the chat's hours ended with nobody online.
REASON_NO_COUNSELLORS = "no_counsellors"
# How far before the current front a requeued conversation is placed.
FRONT_OFFSET = timedelta(milliseconds=1)
# Queue changes within this long are sent as one update.
QUEUE_UPDATE_DELAY_SECS = 0.2
QUEUED_VIEW_STATES = ("queued", "unavailable")
CONSOLES_TOLD = "consoles"  # the Told field of what the consoles were last sent

# (from, to) -> the kinds of actor that may make the move.
MOVES: dict[tuple[str, str], frozenset[str]] = {
    (BOT, QUEUED): frozenset({"bot", "resident", "system"}),
    (QUEUED, COUNSELLOR): frozenset({"counsellor"}),
    (QUEUED, BOT): frozenset({"resident", "system"}),
    (QUEUED, CLOSED): frozenset({"counsellor", "system"}),
    (COUNSELLOR, QUEUED): frozenset({"counsellor", "system"}),
    (COUNSELLOR, CLOSED): frozenset({"counsellor", "system"}),
    (CLOSED, BOT): frozenset({"resident", "system"}),
}

_ACTOR_RE = re.compile(r"(resident|bot|system)|counsellor:[A-Za-z0-9._@-]{1,64}")


def actor_kind(actor: str) -> str:
    """"resident", "bot", "system" or "counsellor" (for "counsellor:<id>")."""
    if not isinstance(actor, str) or not _ACTOR_RE.fullmatch(actor):
        raise ValueError(f"not a handoff actor: {actor!r} (resident, bot, system or counsellor:<id>)")
    return actor.split(":", 1)[0]


def check_move(from_state: str, to_state: str, actor: str) -> None:
    """Raise IllegalTransition unless ``actor`` may move a conversation from -> to."""
    allowed = MOVES.get((from_state, to_state))
    if allowed is None or actor_kind(actor) not in allowed:
        raise IllegalTransition(from_state, to_state, actor)


class NoticeSource(Protocol):
    def notice(self, response_id: str, language: str, **params: Any) -> Any: ...


def _told_value(view: HandoffView) -> str:
    return f"{view.state}:{view.position}:{view.estimated_wait_secs}"


QueueListener = Callable[[list[int]], Awaitable[None]]
# (conversation, from state, to state), after the commit of a move.
StateListener = Callable[[Conversation, str, str], Awaitable[None]]


class Handoff:
    def __init__(self, queue: HandoffQueue, presence: Presence, events: Events,
                 notices: NoticeSource, *, conversations: Conversations,
                 secs_per_conversation: float, default_language: str,
                 is_open: Callable[[], bool] | None = None,
                 expected_soon: Callable[[], bool] | None = None, told: Told | None = None,
                 update_delay_secs: float = QUEUE_UPDATE_DELAY_SECS) -> None:
        self.queue = queue
        self.presence = presence
        self.events = events
        self.notices = notices
        self.conversations = conversations
        self.secs_per_conversation = secs_per_conversation
        self.default_language = default_language
        self.is_open = is_open or (lambda: True)
        # Whether a counsellor is expected later today when nobody is online now (chat hours
        # today); by default, whether it is chat hours now.
        self.expected_soon = expected_soon or (lambda: self.is_open())
        self.queue_listeners: list[QueueListener] = []
        self.state_listeners: list[StateListener] = []
        self._broadcast_lock = asyncio.Lock()
        self.told = told or MemoryTold()
        self.update_delay_secs = update_delay_secs
        self._queue_dirty = False
        self._resend_all = False
        self.resending = False  # during a broadcast that goes to everyone (queue_listeners see it)
        self._broadcast_task: asyncio.Task | None = None

    async def available(self) -> bool:
        """Whether a resident can get a counsellor now: chat hours, and someone online."""
        return self.is_open() and await self.presence.online_count() > 0

    async def availability(self, state: str) -> Availability:
        """What the bot may promise a resident whose conversation is in ``state``."""
        now = await self.available()
        return Availability(now=now, expected_soon=not now and bool(self.expected_soon()),
                            queued=state == QUEUED, notices=True)

    def _queued_view(self, position: int | None, online: int, open_now: bool) -> HandoffView:
        if online == 0 or not open_now:
            return HandoffView(UNAVAILABLE, position=position)
        wait = None
        if position is not None:
            wait = int(math.ceil(position * self.secs_per_conversation / online))
        return HandoffView(QUEUED, position=position, estimated_wait_secs=wait)

    async def view(self, conversation: Conversation) -> HandoffView:
        """The conversation's handoff state as the resident sees it now."""
        state = conversation.handoff_state
        if state == QUEUED:
            position = await self.queue.position(conversation.id)
            online = await self.presence.online_count()
            return self._queued_view(position, online, self.is_open())
        if state == COUNSELLOR:
            name = None
            if conversation.counsellor_id:
                name = await self.presence.display_name(conversation.counsellor_id)
            return HandoffView(COUNSELLOR, counsellor_name=name)
        return HandoffView(state)

    async def transition(self, tx: Transaction, conversation: Conversation, to_state: str, *,
                         actor: str, reason: str | None = None, priority: str | None = None,
                         topic: str | None = None, counsellor_id: str | None = None,
                         to_front: bool = False) -> HandoffView:
        """Move the conversation (locked in ``tx``) to ``to_state``, or raise IllegalTransition.

        ``to_front``: a requeued conversation goes before every other of its
        priority (crisis conversations still come before normal ones)."""
        from_state = conversation.handoff_state
        check_move(from_state, to_state, actor)
        now = utcnow()
        conversation.handoff_state = to_state
        await self.conversations.add_transition(tx, conversation, from_state, to_state, actor, reason, now)

        if to_state == QUEUED:
            if from_state == BOT:
                conversation.queued_at = now
                conversation.priority = priority or "normal"
                conversation.topic = topic or conversation.topic
                conversation.handoff_reason = reason
            # Put back from a counsellor: keeps its old place, near the front.
            conversation.queued_at = conversation.queued_at or now
            if to_front:
                front = await self.queue.front_time(conversation.priority)
                if front is not None and front <= conversation.queued_at:
                    conversation.queued_at = front - FRONT_OFFSET
            conversation.counsellor_id = None
            cid, prio, at = conversation.id, conversation.priority, conversation.queued_at
            await self.queue.add(cid, prio, at)
            tx.on_rollback(lambda: self.queue.remove(cid))
        elif from_state == QUEUED:
            cid, prio, at = conversation.id, conversation.priority, conversation.queued_at or now
            await self.queue.remove(cid)
            tx.on_rollback(lambda: self.queue.add(cid, prio, at))
        if to_state == COUNSELLOR:
            conversation.counsellor_id = counsellor_id or actor.split(":", 1)[1]
        if to_state in (BOT, CLOSED):
            conversation.queued_at = None
            conversation.priority = "normal"
            conversation.counsellor_id = None

        view = await self.view(conversation)
        conversation_id = conversation.id
        tx.on_commit(lambda: self._send_view(conversation_id, view))
        await self._notify(tx, conversation, from_state, view, reason)
        if QUEUED in (from_state, to_state):
            tx.on_commit(lambda: self.queue_changed(exclude=conversation_id))
        if self.state_listeners:
            tx.on_commit(lambda: self._tell_state_listeners(conversation, from_state, to_state))
        return view

    async def escalate(self, tx: Transaction, conversation: Conversation, *, actor: str) -> bool:
        """A crisis message from a resident who is already queued or with a counsellor:
        the conversation becomes a crisis one (recorded like a move, queued -> queued).

        Queued: it goes before every normal conversation, and the resident gets the
        emergency guidance now (or, with nobody online, where to get help at once).
        With a counsellor: only the flag; the counsellor reads the message. Does
        nothing (returns False) when the conversation is already a crisis one."""
        state = conversation.handoff_state
        if state not in (QUEUED, COUNSELLOR) or conversation.priority == "crisis":
            return False
        actor_kind(actor)
        conversation.priority = "crisis"
        await self.conversations.add_transition(tx, conversation, state, state, actor, REASON_CRISIS, utcnow())
        conversation_id = conversation.id
        if state == QUEUED:
            queued_at = conversation.queued_at or utcnow()
            await self._requeue(conversation_id, "crisis", queued_at)
            tx.on_rollback(lambda: self._requeue(conversation_id, "normal", queued_at))
            view = await self.view(conversation)
            tx.on_commit(lambda: self._send_view(conversation_id, view))
            await self._notify(tx, conversation, QUEUED, view, REASON_CRISIS)
            tx.on_commit(lambda: self.queue_changed(exclude=conversation_id))
        log.info("conversation %s escalated to crisis while %s", conversation_id, state)
        return True

    async def _requeue(self, conversation_id: int, priority: str, queued_at) -> None:
        """Queue again under another priority (add() alone keeps the old place)."""
        await self.queue.remove(conversation_id)
        await self.queue.add(conversation_id, priority, queued_at)

    async def _tell_state_listeners(self, conversation: Conversation, from_state: str, to_state: str) -> None:
        for listener in self.state_listeners:
            try:
                await listener(conversation, from_state, to_state)
            except Exception as exc:
                log.error("handoff state listener failed: %s", type(exc).__name__)

    async def _send_view(self, conversation_id: int, view: HandoffView) -> None:
        """A conversation's own move: its sockets get the new view now (and the broadcast
        knows they have it)."""
        await self.events.handoff_state(conversation_id, view)
        if view.state in QUEUED_VIEW_STATES:
            try:
                await self.told.changed({str(conversation_id): _told_value(view)})
            except Exception as exc:  # at worst the broadcast sends the same view again
                log.warning("queue view not recorded: %s", type(exc).__name__)

    async def queue_changed(self, exclude: int | None = None, *, resend_all: bool = False) -> None:
        """The queue or the counsellors online changed: within QUEUE_UPDATE_DELAY_SECS the
        queued residents whose place or wait changed get it, and the queue listeners (the
        consoles) the new order. Changes meanwhile join the same broadcast. Never raises.
        (``exclude``, the conversation that moved, was told by its move and is skipped by
        the broadcast unless its view changed since.) ``resend_all``: every queued resident and
        console gets it, changed or not (after the queue was restored: events sent while Redis
        was away, or before another process subscribed again, may have been lost)."""
        self._queue_dirty = True
        self._resend_all = self._resend_all or resend_all
        if self._broadcast_task is None or self._broadcast_task.done():
            self._broadcast_task = asyncio.get_running_loop().create_task(self._broadcast_soon())

    async def _broadcast_soon(self) -> None:
        await asyncio.sleep(self.update_delay_secs)
        while self._queue_dirty:
            self._queue_dirty = False
            await self.broadcast_queue()

    async def close(self) -> None:
        """Stop a pending broadcast (at shutdown)."""
        task = self._broadcast_task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def broadcast_queue(self) -> None:
        """Send the queued residents whose view changed their new one, and the consoles the
        queue. Never raises."""
        try:
            async with self._broadcast_lock:  # one at a time: a later broadcast is never overtaken
                ids = await self.queue.conversation_ids()
                online = await self.presence.online_count()
                open_now = self.is_open()
                views = {str(cid): self._queued_view(position, online, open_now)
                         for position, cid in enumerate(ids, start=1)}
                resend_all, self._resend_all = self._resend_all, False
                try:
                    changed = await self.told.changed({cid: _told_value(v) for cid, v in views.items()})
                    await self.told.keep_only([*views, CONSOLES_TOLD])
                except BackendUnavailable:  # Redis away: everyone gets their view, changed or not
                    resend_all = True
                if resend_all:
                    changed = list(views)
                self.resending = resend_all
                for cid in changed:
                    await self.events.handoff_state(int(cid), views[cid])
                try:
                    for listener in self.queue_listeners:
                        await listener(ids)
                finally:
                    self.resending = False
        except Exception as exc:  # a missed update is healed by the next one or a resume
            log.error("queue broadcast failed: %s", type(exc).__name__)

    async def _notify(self, tx: Transaction, conversation: Conversation, from_state: str,
                      view: HandoffView, reason: str | None = None) -> None:
        """Store and (after commit) send the notice that tells the resident of the move."""
        response_id, params = self._notice_for(conversation, from_state, view, reason)
        if response_id is None:
            return
        language = conversation.language or self.default_language
        reply = self.notices.notice(response_id, language, **params)
        message = await self.conversations.add_message(
            tx, conversation, sender="system", text=reply.text,
            quick_replies=[qr.to_rasa() for qr in reply.quick_replies] or None,
            response_id=response_id, language=language)
        conversation_id = conversation.id
        tx.on_commit(lambda: self.events.bot_uttered(conversation_id, message))

    @staticmethod
    def _notice_for(conversation: Conversation, from_state: str, view: HandoffView,
                    reason: str | None = None) -> tuple[str | None, dict[str, Any]]:
        to_state = conversation.handoff_state
        crisis = conversation.priority == "crisis"
        if to_state == QUEUED:
            if view.state == UNAVAILABLE:
                if crisis:
                    return "handoff_crisis_unavailable", {}
                if from_state == COUNSELLOR and reason == REASON_COUNSELLOR_GONE:
                    return "handoff_requeued_unavailable", {}
                # Joined while nobody is online (a counsellor expected soon): the bot answers meanwhile.
                return "handoff_queued_waiting", {"position": view.position or 1}
            if reason == REASON_CRISIS:  # escalated while waiting: the emergency guidance itself
                return "crisis", {}
            if crisis:
                return "handoff_crisis_queued", {}
            if from_state == COUNSELLOR:
                return ("handoff_put_back" if reason == REASON_PUT_BACK else "handoff_requeued"), {}
            wait_minutes = max(1, math.ceil((view.estimated_wait_secs or 0) / 60))
            return "handoff_queued", {"position": view.position or 1, "wait_minutes": wait_minutes}
        if to_state == COUNSELLOR:
            return "handoff_joined", {"counsellor_name": view.counsellor_name or ""}
        if to_state == BOT and from_state == QUEUED:
            if reason == REASON_NO_COUNSELLORS:
                return "handoff_no_counsellors", {}
            return "handoff_left_queue", {}
        if to_state == CLOSED:
            return "handoff_closed", {}
        return None, {}
