"""Alembic environment of the chat server.

Run by ``chat_server.store.db.migrate`` (which hands over a connection of the
server's own engine) or by the ``alembic`` command line, in which case the URL
comes from the settings (``POLKU_DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from bot.settings import Settings
from chat_server.store.models import Base
import chat_server.store.admin_models  # noqa: F401  (the admin tables join Base.metadata)
import chat_server.store.staff_models  # noqa: F401  (the counsellor tables join Base.metadata)

config = context.config
target_metadata = Base.metadata


def run_with_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    from chat_server.store.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_with_connection)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `python -m chat_server migrate`")

shared = config.attributes.get("connection")
if shared is not None:
    run_with_connection(shared)
else:
    if config.config_file_name:  # Alembic's command line with alembic.ini
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(run_with_own_engine(config.attributes.get("database_url") or Settings().database_url))
