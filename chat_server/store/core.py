"""The database's lanes and transactions (the queries live in the repositories beside this:
``conversations.py``, ...).

Every change happens inside a ``Transaction``: ``Store.transaction()`` (an ORM session) or
``Store.run_write(work)`` (a plain function of a synchronous Connection, run whole in one go).
Events for the change are queued on the transaction with ``on_commit`` and sent only after the
commit succeeded: a failed write emits nothing. Work done outside the database inside a
transaction (the Redis queue) registers its undo with ``on_rollback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from asyncpg.exceptions import (CannotConnectNowError, InterfaceError as AsyncpgInterfaceError,
                                 PostgresConnectionError)
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.engine import Engine

from .db import READ_ONLY_OPTION, sqlite_thread_engine
from ..errors import BackendUnavailable

log = logging.getLogger(__name__)

DB_PING_TIMEOUT_SECS = 3.0

Callback = Callable[[], Awaitable[Any]]
T = TypeVar("T")

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


class Transaction:
    """One database transaction and what to do once it has committed (or not)."""

    def __init__(self, session: AsyncSession | None = None) -> None:
        # None: a transaction of Store.run_write (its work has the Connection itself).
        self.session = session
        self._after_commit: list[Callback] = []
        self._after_rollback: list[Callback] = []

    def on_commit(self, callback: Callback) -> None:
        """Run ``callback`` (usually an event) after a successful commit, in order."""
        self._after_commit.append(callback)

    def on_rollback(self, callback: Callback) -> None:
        """Run ``callback`` if the transaction does not commit (undo outside the database)."""
        self._after_rollback.append(callback)

    async def flush(self) -> None:
        """Send the session's pending changes (new rows get their ids); a constraint fails here."""
        if self.session is not None:
            await self.session.flush()

    async def committed(self) -> None:
        """The transaction committed: its events go out, in order."""
        await run_after_commit(self._after_commit)

    async def rolled_back(self) -> None:
        """The transaction did not commit: undo what was done outside the database, newest first."""
        for undo in reversed(self._after_rollback):
            try:
                await undo()
            except Exception as undo_exc:  # keep undoing the rest
                log.error("undo after rollback failed: %s", type(undo_exc).__name__)


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
        # Reads outside the thread lane: on PostgreSQL without BEGIN and COMMIT (a round trip each).
        self._autocommit_engine = (engine.execution_options(isolation_level="AUTOCOMMIT")
                                   if engine.dialect.name == "postgresql" else engine)

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

    @staticmethod
    def _read(engine: Engine, work: Callable[[Connection], T]) -> T:
        # Read, then roll back: a read has nothing to commit.
        with engine.connect() as conn:
            return work(conn)

    async def run_write(self, work: Callable[[Connection, Transaction], T]) -> T:
        """One write transaction as a plain function of a (synchronous) Connection and of the
        Transaction on which it queues the change's events (``on_commit``), sent after the commit
        as with ``transaction()``.

        On SQLite ``work`` runs whole in the database thread: one trip for the
        transaction instead of one per driver call. On PostgreSQL it runs in
        ``AsyncConnection.run_sync`` (asyncpg awaits each statement). ``work``
        must not await."""
        tx = Transaction()
        try:
            async with self._writer_turn():
                result = await self._run(lambda conn: work(conn, tx), read_only=False)
        except BaseException:
            await tx.rolled_back()
            raise
        await tx.committed()
        return result

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """A read as a plain function of a Connection, with nothing to commit: on SQLite a deferred
        transaction that takes no lock, rolled back; on PostgreSQL no transaction at all (one
        statement's own snapshot: no BEGIN and COMMIT around it)."""
        return await self._run(work, read_only=True)

    async def _run(self, work: Callable[[Connection], T], *, read_only: bool) -> T:
        try:
            if self._thread_lane:
                lane = self._lane()
                if read_only:
                    return await asyncio.get_running_loop().run_in_executor(
                        lane, self._read, self._thread_read_engine, work)
                return await asyncio.get_running_loop().run_in_executor(lane, self._whole, self._thread_engine, work)
            if read_only:
                async with self._autocommit_engine.connect() as conn:
                    return await conn.run_sync(work)
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
                await tx.rolled_back()
            if _is_backend_failure(exc):
                raise BackendUnavailable("database", exc) from exc
            raise
        await tx.committed()

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

