"""Reading and writing conversations, messages and handoff transitions.

Every change happens inside ``Store.transaction()``. Events for the change
are queued on the transaction with ``on_commit`` and sent only after the
commit succeeded: a failed write emits nothing. Work done outside the
database inside a transaction (the Redis queue) registers its undo with
``on_rollback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from asyncpg.exceptions import (CannotConnectNowError, InterfaceError as AsyncpgInterfaceError,
                                 PostgresConnectionError)
from sqlalchemy import Connection, Row, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .admin_models import MessageGuess
from .db import READ_ONLY_OPTION, sqlite_thread_engine
from ..errors import BackendUnavailable
from .models import Conversation, HandoffTransition, Message, utcnow

log = logging.getLogger(__name__)

DB_PING_TIMEOUT_SECS = 3.0

Callback = Callable[[], Awaitable[Any]]
T = TypeVar("T")

_MESSAGES = Message.__table__
_CONVERSATIONS = Conversation.__table__
_GUESSES = MessageGuess.__table__

# Set while this task is inside a write transaction (SQLite): a nested one is a bug.
_IN_TRANSACTION: contextvars.ContextVar[bool] = contextvars.ContextVar("polku_in_transaction", default=False)


def _is_backend_failure(exc: BaseException) -> bool:
    # IntegrityError is our input meeting a constraint (a resent message), not an outage.
    if isinstance(exc, IntegrityError):
        return False
    # asyncpg raises its own connection errors unwrapped when a new connection is refused (PostgreSQL
    # starting up or shutting down: CannotConnectNowError) or an open one is gone.
    return isinstance(exc, (SQLAlchemyError, OSError, asyncio.TimeoutError, CannotConnectNowError,
                            PostgresConnectionError, AsyncpgInterfaceError))


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


@dataclass(frozen=True)
class TurnChanges:
    """A conversation's new values after a bot turn (``topic`` None: unchanged)."""

    at: datetime
    language: str | None
    dialogue_state: dict[str, Any]
    topic: str | None

    def apply(self, conversation: Conversation) -> None:
        conversation.last_activity_at = self.at
        conversation.language = self.language
        conversation.dialogue_state = self.dialogue_state
        conversation.topic = self.topic or conversation.topic


# The resident message path's statements, built once: SQLAlchemy caches their
# compiled form by a key it would otherwise compute again on every execution.
_TURN_STATE = (select(_CONVERSATIONS.c.handoff_state, _CONVERSATIONS.c.dialogue_state,
                      _CONVERSATIONS.c.last_activity_at)
               .where(_CONVERSATIONS.c.id == bindparam("b_id")))
_LOCK_STATE = (select(_CONVERSATIONS.c.handoff_state).where(_CONVERSATIONS.c.id == bindparam("b_id"))
               .with_for_update())
_INSERT_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)
_TOUCH_CONVERSATION = (
    update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("b_id"))
    .values(last_activity_at=bindparam("b_at", type_=_CONVERSATIONS.c.last_activity_at.type),
            language=bindparam("b_language", type_=_CONVERSATIONS.c.language.type),
            dialogue_state=bindparam("b_state", type_=_CONVERSATIONS.c.dialogue_state.type),
            topic=func.coalesce(bindparam("b_topic", type_=_CONVERSATIONS.c.topic.type),
                                _CONVERSATIONS.c.topic)))
_INSERT_GUESSES = insert(_GUESSES)


def turn_state(conn: Connection, conversation_id: int) -> Row | None:
    """(handoff_state, dialogue_state, last_activity_at) of the conversation."""
    return conn.execute(_TURN_STATE, {"b_id": conversation_id}).one_or_none()


def lock_state(conn: Connection, conversation_id: int) -> str | None:
    """The conversation's handoff state, locked until commit on PostgreSQL
    (SQLite locks the whole file); None when there is no such conversation."""
    return conn.execute(_LOCK_STATE, {"b_id": conversation_id}).scalar_one_or_none()


def insert_messages(conn: Connection, conversation_id: int, rows: list[dict[str, Any]],
                    changes: TurnChanges, guesses: tuple[tuple[str, float], ...] = ()) -> list[Message]:
    """Messages of one conversation, its new values and the first message's
    guesses, in three SQL statements without the ORM (the resident message
    path: the ORM's bookkeeping cost more CPU than the SQL). Returns the
    messages with their ids, not attached to any session."""
    ids = conn.execute(_INSERT_MESSAGES, rows).scalars().all()
    conn.execute(_TOUCH_CONVERSATION, {"b_id": conversation_id, "b_at": changes.at,
                                       "b_language": changes.language, "b_state": changes.dialogue_state,
                                       "b_topic": changes.topic})
    if guesses:
        conn.execute(_INSERT_GUESSES, {"message_id": ids[0], "guesses": guess_list(guesses)})
    return [Message(id=message_id, **row) for message_id, row in zip(ids, rows)]


def guess_list(guesses: tuple[tuple[str, float], ...]) -> list[list]:
    return [[name, round(conf, 4)] for name, conf in guesses]


def add_guesses(session: Session | AsyncSession, message: Message,
                guesses: tuple[tuple[str, float], ...]) -> None:
    """The model's best guesses for a stored (flushed) resident message, for the admin inbox."""
    if guesses:
        session.add(MessageGuess(message_id=message.id, guesses=guess_list(guesses)))


class Transaction:
    """One database transaction and what to do once it has committed (or not)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after_commit: list[Callback] = []
        self._after_rollback: list[Callback] = []

    def on_commit(self, callback: Callback) -> None:
        """Run ``callback`` (usually an event) after a successful commit, in order."""
        self._after_commit.append(callback)

    def on_rollback(self, callback: Callback) -> None:
        """Run ``callback`` if the transaction does not commit (undo outside the database)."""
        self._after_rollback.append(callback)

    # --- changes ------------------------------------------------------------------

    async def create_conversation(self, session_hash: str, language: str | None) -> Conversation:
        now = utcnow()
        conversation = Conversation(
            session_hash=session_hash, created_at=now, last_activity_at=now, language=language,
            handoff_state="bot", dialogue_state={}, priority="normal",
        )
        self.session.add(conversation)
        await self.session.flush()
        return conversation

    async def lock_conversation(self, conversation_id: int) -> Conversation | None:
        """The conversation, locked until commit on PostgreSQL (SQLite locks the whole file)."""
        result = await self.session.execute(
            select(Conversation).where(Conversation.id == conversation_id)
            .with_for_update().execution_options(populate_existing=True))
        return result.scalar_one_or_none()

    async def add_message(self, conversation: Conversation, *, sender: str, text: str,
                          quick_replies: list[dict] | None = None, response_id: str | None = None,
                          intent: str | None = None, confidence: float | None = None,
                          language: str | None = None, client_id: str | None = None) -> Message:
        """Store one message (flushed: it has its id); a resent client_id fails here."""
        message = new_message(conversation, sender=sender, text=text, quick_replies=quick_replies,
                              response_id=response_id, intent=intent, confidence=confidence,
                              language=language, client_id=client_id)
        self.session.add(message)
        await self.flush()
        return message

    def add_guesses(self, message: Message, guesses: tuple[tuple[str, float], ...]) -> None:
        add_guesses(self.session, message, guesses)

    async def flush(self) -> None:
        await self.session.flush()

    async def add_transition(self, conversation: Conversation, from_state: str, to_state: str,
                             actor: str, reason: str | None, at: datetime) -> HandoffTransition:
        row = HandoffTransition(conversation_id=conversation.id, from_state=from_state,
                                to_state=to_state, actor=actor, reason=reason, at=at)
        self.session.add(row)
        await self.session.flush()
        return row


async def run_after_commit(callbacks: list[Callback]) -> None:
    """Run a committed change's events in order; one failing does not stop the rest."""
    for callback in callbacks:
        try:
            await callback()
        except Exception as exc:
            # The change is committed; a lost event is healed by the next
            # history_request or resume, so the others must still go out.
            log.error("event after commit failed: %s", type(exc).__name__)


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False)
        # SQLite has one writer at a time. Writers of this process queue here, in
        # order, instead of in SQLite's busy handler, which sleeps and retries with
        # growing pauses (up to 100 ms each): under load that turned a few
        # milliseconds of waiting into seconds. Other processes still meet the busy
        # handler (POLKU's processes share a database only on PostgreSQL).
        sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if sqlite else None
        # SQLite on a file: run_write/run_read run whole transactions in one
        # database thread of their own (made on first use, see _lane()).
        self._thread_lane = sqlite and engine.url.database not in (None, "", ":memory:")
        self._thread: ThreadPoolExecutor | None = None
        self._thread_engine: Engine | None = None
        self._thread_read_engine: Engine | None = None

    def _lane(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread_engine = sqlite_thread_engine(self.engine)
            self._thread_read_engine = self._thread_engine.execution_options(**{READ_ONLY_OPTION: True})
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="polku-sqlite")
        return self._thread

    async def close(self) -> None:
        """Close the database thread and its connection (the async engine is the caller's)."""
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        # Its connection belongs to that thread: closed there.
        await asyncio.get_running_loop().run_in_executor(thread, self._thread_engine.dispose)
        thread.shutdown(wait=True)

    @staticmethod
    def _whole(engine: Engine, work: Callable[[Connection], T]) -> T:
        with engine.begin() as conn:
            return work(conn)

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """One write transaction as a plain function of a (synchronous) Connection.

        On SQLite ``work`` runs whole in the database thread: one trip for the
        transaction instead of one per driver call. On PostgreSQL it runs in
        ``AsyncConnection.run_sync`` (asyncpg awaits each statement). ``work``
        must not await; events go out after this returns (the commit is done)."""
        async with self._writer_turn():
            return await self._run(work, read_only=False)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """``run_write`` for reads: on SQLite a deferred transaction that takes no lock."""
        return await self._run(work, read_only=True)

    async def _run(self, work: Callable[[Connection], T], *, read_only: bool) -> T:
        try:
            if self._thread_lane:
                lane = self._lane()
                engine = self._thread_read_engine if read_only else self._thread_engine
                return await asyncio.get_running_loop().run_in_executor(lane, self._whole, engine, work)
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        except BaseException as exc:
            if _is_backend_failure(exc):
                raise BackendUnavailable("database", exc) from exc
            raise

    @contextlib.asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        if _IN_TRANSACTION.get():
            raise RuntimeError("a transaction inside a transaction (it would wait for itself)")
        async with self._write_lock:
            token = _IN_TRANSACTION.set(True)
            try:
                yield
            finally:
                _IN_TRANSACTION.reset(token)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction; database failures come out as BackendUnavailable("database")."""
        tx: Transaction | None = None
        try:
            async with self._writer_turn(), self._sessions() as session, session.begin():
                tx = Transaction(session)
                yield tx
        except BaseException as exc:
            if tx is not None:
                for undo in reversed(tx._after_rollback):
                    try:
                        await undo()
                    except Exception as undo_exc:  # keep undoing the rest
                        log.error("undo after rollback failed: %s", type(undo_exc).__name__)
            if _is_backend_failure(exc):
                raise BackendUnavailable("database", exc) from exc
            raise
        await run_after_commit(tx._after_commit)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A transaction for reads only (on SQLite it takes no lock)."""
        try:
            async with self._read_sessions() as session:
                async with session.begin():
                    yield session
        except BaseException as exc:
            if _is_backend_failure(exc):
                raise BackendUnavailable("database", exc) from exc
            raise

    # --- reads ----------------------------------------------------------------------

    async def find_conversation(self, session_hash: str) -> Conversation | None:
        async with self.reading() as session:
            result = await session.execute(
                select(Conversation).where(Conversation.session_hash == session_hash))
            return result.scalar_one_or_none()

    async def get_conversation(self, conversation_id: int) -> Conversation | None:
        async with self.reading() as session:
            return await session.get(Conversation, conversation_id)

    async def turn_state(self, conversation_id: int) -> Row | None:
        """What answering a resident's message needs to know first (see ``turn_state``)."""
        return await self.run_read(lambda conn: turn_state(conn, conversation_id))

    async def message_by_client_id(self, conversation_id: int, client_id: str) -> Message | None:
        async with self.reading() as session:
            result = await session.execute(select(Message).where(
                Message.conversation_id == conversation_id, Message.client_id == client_id))
            return result.scalar_one_or_none()

    async def history(self, conversation_id: int, limit: int) -> list[Message]:
        """The newest ``limit`` messages of the conversation, oldest first."""
        async with self.reading() as session:
            result = await session.execute(
                select(Message).where(Message.conversation_id == conversation_id)
                .order_by(Message.id.desc()).limit(limit))
            return list(reversed(result.scalars().all()))

    async def transitions(self, conversation_id: int) -> list[HandoffTransition]:
        async with self.reading() as session:
            result = await session.execute(
                select(HandoffTransition).where(HandoffTransition.conversation_id == conversation_id)
                .order_by(HandoffTransition.id))
            return list(result.scalars().all())

    async def queued(self) -> list[tuple[int, str, datetime]]:
        """(id, priority, queued at) of every queued conversation, to restore the queue."""
        async with self.reading() as session:
            result = await session.execute(
                select(Conversation.id, Conversation.priority, Conversation.queued_at)
                .where(Conversation.handoff_state == "queued"))
            return [(cid, priority, at or utcnow()) for cid, priority, at in result.all()]

    async def ping(self) -> None:
        """Raise BackendUnavailable unless the database answers quickly."""
        try:
            async with asyncio.timeout(DB_PING_TIMEOUT_SECS):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable("database", exc) from exc


def is_expired(conversation: Conversation | Row, ttl_hours: float, now: datetime | None = None) -> bool:
    return (now or utcnow()) - conversation.last_activity_at > timedelta(hours=ttl_hours)
