"""The counsellor's rules: what a counsellor may read and do to a conversation.

The ``do_*`` functions assume input already checked (``protocol.py``), act
in one transaction and queue their events on it (``tx.on_commit``): they go
out through ``events.py`` after the commit. A refused request raises
``RequestRefused`` and changes nothing.

Who reads what: a counsellor reads the transcript of a queued conversation, of
one assigned to them, and of a closed one they handled (up to when they let
it go); nothing else. Opening a transcript and picking a chat up are audited.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from .. import handoff as hs
from ..staff.audit import add_audit
from ..staff.service import StaffAuth
from ..staff.sessions import Staff
from ..errors import BackendUnavailable, RequestRefused
from ..events import Events, console_message_payload, iso_time
from ..handoff import Handoff
from ..presence import Presence
from ..store.casework import Casework
from ..store.conversations import Conversations
from ..store.core import Store, Transaction
from ..store.models import Conversation, HandoffTransition, Message, utcnow
from ..store.staff_models import ConversationNote
from .callbacks import Callbacks
from .content import ConsoleContent
from .protocol import CLOSE_TAGS, Closing, CounsellorMessage

log = logging.getLogger(__name__)

# Reason of a queued -> closed move by the system: the resident went silent (POLKU_QUEUE_ABANDON_HOURS).
REASON_ABANDONED = "abandoned"
# A console lists the front of the queue, at most this many (crisis chats come first, and
# the front is what a counsellor picks up); the payload's "total" says how many wait in all.
# A list of 500 was a 120 KB snapshot to every console at every change, and unusable.
QUEUE_LISTED_MAX = 50


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


def note_payload(note: ConversationNote, author: str | None) -> dict[str, Any]:
    return {"note_id": note.id, "text": note.text, "time": iso_time(note.created_at),
            "staff_id": note.staff_id, "author": author}


class CounsellorService:
    """The counsellors' moves and reads; the channel and the console's HTTP routes call it."""

    def __init__(self, *, store: Store, conversations: Conversations, casework: Casework, handoff: Handoff,
                 events: Events,
                 auth: StaffAuth, presence: Presence, callbacks: Callbacks, content: ConsoleContent,
                 default_language: str, grace_secs: float) -> None:
        self.store = store
        self.conversations = conversations
        self.casework = casework
        self.handoff = handoff
        self.events = events
        self.auth = auth
        self.presence = presence
        self.callbacks = callbacks
        self.content = content
        self.default_language = default_language
        self.grace_secs = grace_secs

    # --- reading ------------------------------------------------------------------------------

    async def check_may_read(self, staff: Staff, conversation_id: int) -> tuple[Conversation, datetime | None]:
        """The conversation and how far this counsellor may read it (None: all), else RequestRefused."""
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            raise RequestRefused("not_found")
        state = conversation.handoff_state
        if state == hs.QUEUED or (state == hs.COUNSELLOR and conversation.counsellor_id == str(staff.id)):
            return conversation, None
        if state in (hs.CLOSED, hs.BOT):
            until = handled_until(await self.conversations.transitions(conversation_id), staff.actor)
            if until is not None:
                return conversation, until
        raise RequestRefused("forbidden")

    async def do_view(self, staff: Staff, conversation_id: int) -> tuple[Conversation, datetime | None]:
        """``check_may_read``, and the opening of the transcript audited."""
        conversation, until = await self.check_may_read(staff, conversation_id)
        await self.auth.audit(staff, "view_transcript", conversation_id, "" if until is None else "handled part")
        return conversation, until

    async def transcript(self, conversation: Conversation, until: datetime | None) -> dict[str, Any]:
        """Every message (the bot's and the notices too), notes, and who wrote the counsellor lines."""
        messages, notes = await self.casework.transcript_rows(conversation.id, until)
        transitions = await self.conversations.transitions(conversation.id)
        authors = {m.id: _staff_id_of(counsellor_at(transitions, m.created_at))
                   for m in messages if m.sender == "counsellor"}
        names = await self.auth.display_names({a for a in authors.values() if a is not None}
                                               | {n.staff_id for n in notes})
        return {
            "conversation": await self.summary(conversation),
            "messages": [console_message_payload(m, names.get(authors.get(m.id))) for m in messages],
            "notes": [note_payload(n, names.get(n.staff_id)) for n in notes],
            "complete": until is None,
        }

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
        rows = await self.casework.queued_by_id(front)
        entries = []
        for position, cid in enumerate(front, start=1):
            if cid in rows:
                entries.append(await self.summary(rows[cid], position=position))
        crisis_total = await self.handoff.queue.crisis_count() if len(ids) > len(front) else sum(
            1 for entry in entries if entry["crisis"])
        return {"conversations": entries, "total": max(len(ids), len(entries)), "crisis_total": crisis_total,
                "time": iso_time(utcnow())}

    async def assigned_to(self, staff: Staff) -> list[dict[str, Any]]:
        return [await self.summary(c) for c in await self.casework.assigned_to(str(staff.id))]

    async def hello(self, staff: Staff) -> dict[str, Any]:
        """Everything a console shows when it (re)connects."""
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

    async def queue_changed(self, ids: list[int]) -> None:
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

    # --- a counsellor's moves ----------------------------------------------------------------

    async def do_pick_up(self, staff: Staff, conversation_id: int) -> Conversation:
        """Queued -> this counsellor, atomically: the row lock makes every other try see it taken."""
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, conversation_id)
            if conversation is None:
                raise RequestRefused("not_found")
            if conversation.handoff_state != hs.QUEUED:
                raise RequestRefused("already_taken")
            with contextlib.suppress(BackendUnavailable):
                await self.presence.heartbeat(str(staff.id), staff.display_name)  # the name residents see
            await self.handoff.transition(tx, conversation, hs.COUNSELLOR, actor=staff.actor,
                                          reason="picked_up", counsellor_id=str(staff.id))
            add_audit(tx, staff, "pick_up", conversation_id)
        log.info("conversation %s picked up by staff %s", conversation_id, staff.id)
        return conversation

    async def _lock_mine(self, tx: Transaction, staff: Staff, conversation_id: int) -> Conversation:
        conversation = await self.conversations.lock(tx, conversation_id)
        if conversation is None:
            raise RequestRefused("not_found")
        if conversation.handoff_state != hs.COUNSELLOR or conversation.counsellor_id != str(staff.id):
            raise RequestRefused("not_yours")
        return conversation

    async def do_send(self, staff: Staff, message: CounsellorMessage) -> Message:
        """Store the counsellor's message; the resident gets it as bot_uttered (sender counsellor)."""
        try:
            async with self.store.transaction() as tx:
                stored = await self.casework.add_counsellor_message(
                    tx, message.conversation_id, str(staff.id), message.text, message.client_id)
                if stored is None:
                    raise RequestRefused("not_yours")
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

    async def do_typing(self, staff: Staff, conversation_id: int, typing: bool) -> None:
        """The resident sees the counsellor typing (only in a conversation that is theirs)."""
        conversation = await self.conversations.get(conversation_id)
        if (conversation is None or conversation.handoff_state != hs.COUNSELLOR
                or conversation.counsellor_id != str(staff.id)):
            raise RequestRefused("not_yours")
        await self.events.typing(conversation_id, "counsellor", typing)

    async def do_put_back(self, staff: Staff, conversation_id: int) -> None:
        """This counsellor's chat back in the queue."""
        async with self.store.transaction() as tx:
            conversation = await self._lock_mine(tx, staff, conversation_id)
            await self.handoff.transition(tx, conversation, hs.QUEUED, actor=staff.actor,
                                          reason=hs.REASON_PUT_BACK)
            add_audit(tx, staff, "put_back", conversation_id)

    async def do_close(self, staff: Staff, closing: Closing) -> None:
        """Close with topic tags (for statistics); the resident's next message goes to the bot."""
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, closing.conversation_id)
            if conversation is None:
                raise RequestRefused("not_found")
            queued = conversation.handoff_state == hs.QUEUED
            if not queued:
                conversation = await self._lock_mine(tx, staff, closing.conversation_id)
            self.casework.add_tags(tx, conversation.id, staff.id, closing.tags, closing.other_label)
            await self.handoff.transition(tx, conversation, hs.CLOSED, actor=staff.actor, reason="closed")
            add_audit(tx, staff, "close", conversation.id, "tags: " + ",".join(closing.tags))
        log.info("conversation %s closed by staff %s", closing.conversation_id, staff.id)

    async def do_note(self, staff: Staff, conversation_id: int, text: str) -> dict[str, Any]:
        """A note on a chat this counsellor may read now (not on old ones); every console
        watching it gets the note. Returns the note as the consoles see it."""
        _conversation, until = await self.check_may_read(staff, conversation_id)
        if until is not None:
            raise RequestRefused("not_yours")  # notes go on chats one has now, not on old ones
        async with self.store.transaction() as tx:
            note = await self.casework.add_note(tx, conversation_id, staff.id, text)
            add_audit(tx, staff, "note", conversation_id)
            payload = note_payload(note, staff.display_name)
            tx.on_commit(lambda: self.events.console_note(conversation_id, payload))
        return payload

    # --- the system's moves (the sweeps) --------------------------------------------------------

    async def do_requeue(self, conversation_id: int, counsellor_id: str) -> None:
        """A gone counsellor's chat back to the front of the queue."""
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

    async def do_close_abandoned(self, conversation_id: int, cutoff: datetime) -> bool:
        """Close a queued chat whose resident has said nothing since ``cutoff``; False if it moved
        or the resident wrote meanwhile."""
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, conversation_id)
            if (conversation is None or conversation.handoff_state != hs.QUEUED
                    or conversation.last_activity_at >= cutoff):
                return False  # picked up, left, or the resident wrote meanwhile
            await self.handoff.transition(tx, conversation, hs.CLOSED, actor="system", reason=REASON_ABANDONED)
        return True

    async def do_back_to_bot(self, conversation_id: int) -> bool:
        """A normal queued chat back with the bot, its resident told (nobody will come); False if it
        moved or became a crisis meanwhile."""
        async with self.store.transaction() as tx:
            conversation = await self.conversations.lock(tx, conversation_id)
            if (conversation is None or conversation.handoff_state != hs.QUEUED
                    or conversation.priority == "crisis"):
                return False  # picked up, left, or escalated meanwhile
            await self.handoff.transition(tx, conversation, hs.BOT, actor="system",
                                          reason=hs.REASON_NO_COUNSELLORS)
        return True
