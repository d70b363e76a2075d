"""Conversations, their messages, handoff transitions and the model's intent guesses: every query
of them, and the one write path of a bot turn.

Reads open their own read (``Store.reading`` / ``Store.run_read``); changes take the
``Transaction`` they belong to (``Store.transaction()`` or ``Store.run_write``), so that the
caller queues the change's events on it (``on_commit``) and they go out after the commit.

A bot turn (the resident's message, the bot's answers, the conversation's new values, the
model's guesses) is written by ``insert_turn`` only, whichever way the caller came: the common
turn in one go while the bot still has the conversation (``write_bot_turn``), or inside a
transaction that also moves the conversation (``record_bot_turn``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bot.types import BotTurn

from .admin_models import MessageGuess
from .core import Store, Transaction
from .models import Conversation, HandoffTransition, Message, utcnow

INTENT_GUESSES_KEPT = 3  # the model's best guesses stored with a resident message (admin inbox)
# The intent stored for a resident message the model could not read (Rasa down).
NLU_UNAVAILABLE_INTENT = "nlu_unavailable"

_MESSAGES = Message.__table__
_CONVERSATIONS = Conversation.__table__
_GUESSES = MessageGuess.__table__


def is_expired(conversation: Conversation | Row, ttl_hours: float, now: datetime | None = None) -> bool:
    return (now or utcnow()) - conversation.last_activity_at > timedelta(hours=ttl_hours)


def message_row(conversation_id: int, *, sender: str, text: str, created_at: datetime,
                quick_replies: list[dict] | None = None, response_id: str | None = None,
                intent: str | None = None, confidence: float | None = None, language: str | None = None,
                client_id: str | None = None) -> dict[str, Any]:
    """The column values of one message (everything but its id)."""
    return {"conversation_id": conversation_id, "sender": sender, "text": text,
            "quick_replies": quick_replies or None, "response_id": response_id or None, "intent": intent,
            "confidence": confidence, "language": language, "client_id": client_id, "created_at": created_at}


def new_message(conversation: Conversation, **fields: Any) -> Message:
    """A message row of the conversation (not yet added to a session); it counts as activity."""
    now = utcnow()
    conversation.last_activity_at = now
    return Message(**message_row(conversation.id, created_at=now, **fields))


def guess_list(guesses: tuple[tuple[str, float], ...]) -> list[list]:
    return [[name, round(conf, 4)] for name, conf in guesses]


@dataclass(frozen=True)
class TurnChanges:
    """A conversation's new values after a bot turn (``topic`` None: unchanged)."""

    at: datetime
    language: str | None
    dialogue_state: dict[str, Any]
    topic: str | None

    def apply_committed(self, conversation: Conversation) -> None:
        """The values on a loaded conversation, as the database already has them (no second UPDATE)."""
        for name, value in (("last_activity_at", self.at), ("language", self.language),
                            ("dialogue_state", self.dialogue_state),
                            ("topic", self.topic or conversation.topic)):
            set_committed_value(conversation, name, value)


@dataclass(frozen=True)
class StoredTurn:
    """A bot turn as written: the resident's message and the bot's answers, with their ids."""

    message: Message
    answers: list[Message]
    changes: TurnChanges


def turn_rows(conversation_id: int, turn: BotTurn,
              client_id: str | None) -> tuple[list[dict[str, Any]], TurnChanges]:
    """The resident's message and the bot's answers (column values, in order), and the
    conversation's new values."""
    parse = turn.parse
    now = utcnow()
    # Unread because Rasa was down: not "not understood" (the admin inbox would
    # fill with every message of an outage), so no confidence either.
    intent, confidence = ((parse.intent, parse.confidence) if parse.nlu_available
                          else (NLU_UNAVAILABLE_INTENT, None))
    rows = [message_row(conversation_id, sender="resident", text=parse.text, intent=intent,
                        confidence=confidence, language=parse.language, client_id=client_id,
                        created_at=now)]
    rows += [message_row(conversation_id, sender="bot", text=reply.text,
                         quick_replies=[qr.to_rasa() for qr in reply.quick_replies] or None,
                         response_id=reply.response_id, language=turn.language, created_at=now)
             for reply in turn.replies]
    return rows, TurnChanges(now, turn.language, turn.state.to_dict(), turn.state.last_topic)


# The resident message path's statements, built once: SQLAlchemy caches their
# compiled form by a key it would otherwise compute again on every execution.
_TURN_STATE = (select(_CONVERSATIONS.c.handoff_state, _CONVERSATIONS.c.dialogue_state,
                      _CONVERSATIONS.c.last_activity_at)
               .where(_CONVERSATIONS.c.id == bindparam("b_id")))
_INSERT_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)
_TURN_VALUES = dict(
    last_activity_at=bindparam("b_at", type_=_CONVERSATIONS.c.last_activity_at.type),
    language=bindparam("b_language", type_=_CONVERSATIONS.c.language.type),
    dialogue_state=bindparam("b_state", type_=_CONVERSATIONS.c.dialogue_state.type),
    topic=func.coalesce(bindparam("b_topic", type_=_CONVERSATIONS.c.topic.type), _CONVERSATIONS.c.topic))
_TOUCH_CONVERSATION = update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("b_id")).values(**_TURN_VALUES)
# The common turn: the conversation's new values only while the bot has it. The UPDATE locks the
# row until commit (SQLite: the whole file) and tells, in the same statement, whether the bot
# still has it (a row back) or it vanished or moved meanwhile (none).
_TOUCH_IF_WITH_BOT = (update(_CONVERSATIONS)
                      .where(_CONVERSATIONS.c.id == bindparam("b_id"),
                             _CONVERSATIONS.c.handoff_state == bindparam("b_state_now"))
                      .values(**_TURN_VALUES).returning(_CONVERSATIONS.c.id))
_INSERT_GUESSES = insert(_GUESSES)


def _turn_parameters(conversation_id: int, changes: TurnChanges) -> dict[str, Any]:
    return {"b_id": conversation_id, "b_at": changes.at, "b_language": changes.language,
            "b_state": changes.dialogue_state, "b_topic": changes.topic}


def insert_turn(conn: Connection, conversation_id: int, turn: BotTurn, client_id: str | None, *,
                only_with_bot: str | None = None) -> StoredTurn | None:
    """THE write of a bot turn: its messages, the conversation's new values and the resident
    message's guesses, in three SQL statements without the ORM (the ORM's bookkeeping cost more
    CPU than the SQL). ``only_with_bot`` (the bot's handoff state): written only while the
    conversation is in it, else nothing is written and None returned. A resent client_id fails
    here (IntegrityError)."""
    rows, changes = turn_rows(conversation_id, turn, client_id)
    parameters = _turn_parameters(conversation_id, changes)
    if only_with_bot is not None:
        if conn.execute(_TOUCH_IF_WITH_BOT, {**parameters, "b_state_now": only_with_bot}).first() is None:
            return None
    else:
        conn.execute(_TOUCH_CONVERSATION, parameters)
    ids = conn.execute(_INSERT_MESSAGES, rows).scalars().all()
    guesses = turn.parse.ranking[:INTENT_GUESSES_KEPT]
    if guesses:
        conn.execute(_INSERT_GUESSES, {"message_id": ids[0], "guesses": guess_list(guesses)})
    stored, *answers = [Message(id=message_id, **row) for message_id, row in zip(ids, rows)]
    return StoredTurn(stored, answers, changes)


class Conversations:
    """The conversations repository of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- reads ------------------------------------------------------------------------

    async def find(self, session_hash: str) -> Conversation | None:
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation).where(Conversation.session_hash == session_hash))
            return result.scalar_one_or_none()

    async def get(self, conversation_id: int) -> Conversation | None:
        async with self.store.reading() as session:
            return await session.get(Conversation, conversation_id)

    async def turn_state(self, conversation_id: int) -> Row | None:
        """(handoff_state, dialogue_state, last_activity_at): what answering a resident's message
        needs to know first (one statement, nothing to commit)."""
        return await self.store.run_read(
            lambda conn: conn.execute(_TURN_STATE, {"b_id": conversation_id}).one_or_none())

    async def message_by_client_id(self, conversation_id: int, client_id: str) -> Message | None:
        async with self.store.reading() as session:
            result = await session.execute(select(Message).where(
                Message.conversation_id == conversation_id, Message.client_id == client_id))
            return result.scalar_one_or_none()

    async def history(self, conversation_id: int, limit: int) -> list[Message]:
        """The newest ``limit`` messages of the conversation, oldest first."""
        async with self.store.reading() as session:
            result = await session.execute(
                select(Message).where(Message.conversation_id == conversation_id)
                .order_by(Message.id.desc()).limit(limit))
            return list(reversed(result.scalars().all()))

    async def transitions(self, conversation_id: int) -> list[HandoffTransition]:
        async with self.store.reading() as session:
            result = await session.execute(
                select(HandoffTransition).where(HandoffTransition.conversation_id == conversation_id)
                .order_by(HandoffTransition.id))
            return list(result.scalars().all())

    async def queued(self) -> list[tuple[int, str, datetime]]:
        """(id, priority, queued at) of every queued conversation, to restore the queue."""
        async with self.store.reading() as session:
            result = await session.execute(
                select(Conversation.id, Conversation.priority, Conversation.queued_at)
                .where(Conversation.handoff_state == "queued"))
            return [(cid, priority, at or utcnow()) for cid, priority, at in result.all()]

    # --- changes, inside a transaction ------------------------------------------------

    async def create(self, tx: Transaction, session_hash: str, language: str | None) -> Conversation:
        now = utcnow()
        conversation = Conversation(
            session_hash=session_hash, created_at=now, last_activity_at=now, language=language,
            handoff_state="bot", dialogue_state={}, priority="normal",
        )
        tx.session.add(conversation)
        await tx.flush()
        return conversation

    async def lock(self, tx: Transaction, conversation_id: int) -> Conversation | None:
        """The conversation, locked until commit on PostgreSQL (SQLite locks the whole file)."""
        result = await tx.session.execute(
            select(Conversation).where(Conversation.id == conversation_id)
            .with_for_update().execution_options(populate_existing=True))
        return result.scalar_one_or_none()

    async def add_message(self, tx: Transaction, conversation: Conversation, *, sender: str, text: str,
                          quick_replies: list[dict] | None = None, response_id: str | None = None,
                          intent: str | None = None, confidence: float | None = None,
                          language: str | None = None, client_id: str | None = None) -> Message:
        """Store one message (flushed: it has its id); a resent client_id fails here."""
        message = new_message(conversation, sender=sender, text=text, quick_replies=quick_replies,
                              response_id=response_id, intent=intent, confidence=confidence,
                              language=language, client_id=client_id)
        tx.session.add(message)
        await tx.flush()
        return message

    async def add_transition(self, tx: Transaction, conversation: Conversation, from_state: str, to_state: str,
                             actor: str, reason: str | None, at: datetime) -> HandoffTransition:
        row = HandoffTransition(conversation_id=conversation.id, from_state=from_state,
                                to_state=to_state, actor=actor, reason=reason, at=at)
        tx.session.add(row)
        await tx.flush()
        return row

    # --- a bot turn ------------------------------------------------------------------

    async def write_bot_turn(self, conversation_id: int, turn: BotTurn, client_id: str | None,
                             bot_state: str, then: Callable[[Transaction, StoredTurn], None]) -> StoredTurn | None:
        """The common turn, in one transaction of one go (``Store.run_write``): written only while
        the conversation is in ``bot_state`` (None back when it vanished or moved while the bot
        thought: the caller takes the general path). ``then(tx, stored)`` queues the turn's events."""
        def work(conn: Connection, tx: Transaction) -> StoredTurn | None:
            stored = insert_turn(conn, conversation_id, turn, client_id, only_with_bot=bot_state)
            if stored is not None:
                then(tx, stored)
            return stored
        return await self.store.run_write(work)

    async def record_bot_turn(self, tx: Transaction, conversation: Conversation, turn: BotTurn,
                              client_id: str | None) -> StoredTurn:
        """A bot turn inside ``tx``, on a conversation locked there (the turn also moves it)."""
        await tx.flush()  # what the transaction changed so far goes first
        stored = await tx.session.run_sync(
            lambda session: insert_turn(session.connection(), conversation.id, turn, client_id))
        assert stored is not None
        stored.changes.apply_committed(conversation)
        return stored
