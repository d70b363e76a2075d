"""Database engine and migrations.

Settings hold an ordinary SQLAlchemy URL (``sqlite:///…``,
``postgresql://…``); the server talks to the database through the asyncio
drivers (aiosqlite, asyncpg), so the URL's driver is swapped here and nowhere
else.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, InvalidatePoolError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from ..errors import ConfigurationError, StartupError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

DB_CONNECT_TIMEOUT_SECS = 5.0
DB_COMMAND_TIMEOUT_SECS = 10.0
DB_POOL_TIMEOUT_SECS = 10.0
SQLITE_BUSY_TIMEOUT_SECS = 15.0
# Execution option of read-only transactions (Store.reading): on SQLite they begin
# deferred instead of taking the write lock; on PostgreSQL they run in autocommit, with
# no BEGIN and COMMIT round trips (at READ COMMITTED, PostgreSQL's default and ours, every
# statement reads a snapshot of its own inside a transaction too: nothing else changes).
READ_ONLY_OPTION = "polku_read_only"
# A pooled PostgreSQL connection idle longer than this is pinged (one round trip) before
# use, so that a restarted PostgreSQL costs the next resident no error. A connection in
# steady use is not pinged: SQLAlchemy's own pool_pre_ping costs three round trips
# (BEGIN, ";", ROLLBACK) on every checkout, which was a third of a bot turn's.
POOL_PING_IDLE_SECS = 1.0
_CHECKED_IN = "polku_checked_in"
# Any constant works; it only has to be the same in every process migrating one database.
MIGRATION_ADVISORY_LOCK_ID = 7_104_213_380_001

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> URL:
    """The URL with its driver swapped for the asyncio one (aiosqlite / asyncpg)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"POLKU_DATABASE_URL={url!r} is not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgres":  # Heroku-style alias
        backend = "postgresql"
    if backend not in _ASYNC_DRIVERS:
        raise ConfigurationError(
            f"POLKU_DATABASE_URL uses {backend!r}; use sqlite:///path/to/file.db or "
            "postgresql://user@host/dbname")
    parsed = parsed.set(drivername=_ASYNC_DRIVERS[backend])
    if backend == "postgresql" and "sslmode" in parsed.query:
        # libpq spells it sslmode, asyncpg spells it ssl
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed


def create_engine(url: str) -> AsyncEngine:
    """An asyncio engine for the settings' database URL, tuned per backend."""
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    engine = create_async_engine(
        parsed,
        pool_timeout=DB_POOL_TIMEOUT_SECS,
        # The connection used last is used next: the others stay idle (and are pinged when
        # next needed), and the statements prepared on the busy ones are reused.
        pool_use_lifo=True,
        connect_args={
            "timeout": DB_CONNECT_TIMEOUT_SECS,
            "command_timeout": DB_COMMAND_TIMEOUT_SECS,
            "server_settings": {"application_name": "polku-chat"},
        },
    )
    _tune_postgresql(engine.sync_engine)
    return engine


def _tune_postgresql(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        # A restarted PostgreSQL must not cost the next resident an error: a connection
        # idle for a while is pinged first (";", one round trip, no transaction), and
        # when it is dead the whole pool is renewed (the others died with it).
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or time.monotonic() - checked_in < POOL_PING_IDLE_SECS:
            return
        try:
            await_only(dbapi_connection.driver_connection.fetchrow(";"))
        except Exception as exc:
            raise InvalidatePoolError(f"pooled connection is gone: {type(exc).__name__}") from exc

    @event.listens_for(sync_engine, "engine_connect")
    def _on_engine_connect(conn):
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.execution_options(isolation_level="AUTOCOMMIT")


def _sqlite_engine(parsed: URL) -> AsyncEngine:
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECS})
    _tune_sqlite(engine.sync_engine)
    return engine


def sqlite_thread_engine(engine: AsyncEngine) -> Engine:
    """A plain (pysqlite) engine on the same SQLite file, for whole transactions
    run in one database thread (Store.run_write, Store.run_read).

    Through aiosqlite every driver call is a trip to its thread and back
    (cursor, execute, fetch, close, commit...): about thirty per resident
    message, which cost more CPU than the SQL itself. Its connections are
    made and used in that one thread only."""
    url = engine.url.set(drivername="sqlite")
    sync = sa_create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECS},
                            pool_size=1, max_overflow=0)
    _tune_sqlite(sync)
    return sync


def _tune_sqlite(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # We issue BEGIN ourselves (below); the driver's own deferred BEGIN would
        # let two writers deadlock on the upgrade from read to write lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # An acknowledged message must survive a power cut, not only a crash:
        # the log is synced at every commit (in WAL mode NORMAL would not).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, not left in free pages (retention, deletion on request).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECS * 1000)}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn):
        # A transaction that only reads needs no lock in WAL mode (it reads a
        # snapshot); taking the write lock would queue it behind every commit.
        statement = "BEGIN" if conn.get_execution_options().get(READ_ONLY_OPTION) else "BEGIN IMMEDIATE"
        # Straight to the driver's connection: through aiosqlite one trip to its
        # thread instead of three (cursor, execute, close) via exec_driver_sql.
        conn.connection.dbapi_connection.execute(statement)


def is_postgresql(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


# --- Migrations ---------------------------------------------------------------


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for our migrations; no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.attributes["database_url"] = url
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; safe when several processes start at once."""
    try:
        async with engine.begin() as conn:
            if is_postgresql(engine):
                # Released at commit; a second process waits, then finds nothing to do.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"),
                                   {"id": MIGRATION_ADVISORY_LOCK_ID})
            await conn.run_sync(_upgrade, revision)
    except (SQLAlchemyError, OSError) as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise StartupError(f"cannot bring the database schema up to date at {where}: "
                           f"{type(exc).__name__}: {exc}") from exc
    log.info("database schema is at %s", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema's Alembic revision, None on an empty database."""
    from alembic.runtime.migration import MigrationContext

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_current)
