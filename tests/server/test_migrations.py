"""Alembic migrations on fresh PostgreSQL and SQLite databases, and the
`python -m chat_server migrate` command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from bot.settings import PROJECT_ROOT
from chat_server.store import db
from chat_server.store.models import Base
import chat_server.store.admin_models  # noqa: F401  (the admin tables join Base.metadata)
import chat_server.store.staff_models  # noqa: F401  (the counsellor tables join Base.metadata)


TABLES = {"conversations", "messages", "handoff_transitions", "alembic_version"}
ADMIN_TABLES = {"admin_content_changes", "admin_training_runs", "admin_bot_models",
                "admin_model_activations", "message_intent_guesses", "admin_inbox_decisions",
                "stats_daily", "admin_retention_runs", "admin_kept_examples"}
STAFF_TABLES = {"staff_users", "staff_sessions", "staff_recovery_codes", "staff_sso_states", "audit_log", "callback_requests",
                "conversation_notes", "conversation_tags"}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'polku.db'}"
    return request.getfixturevalue("pg_url")


def head() -> str:
    return ScriptDirectory.from_config(db.alembic_config()).get_current_head()


async def test_migrations_build_the_models_schema(database_url):
    engine = db.create_engine(database_url)
    try:
        assert await db.current_revision(engine) is None
        await db.migrate(engine)
        await db.migrate(engine)  # a second run finds nothing to do
        assert await db.current_revision(engine) == head()

        def inspect_schema(connection):
            tables = set(inspect(connection).get_table_names())
            diff = compare_metadata(MigrationContext.configure(
                connection, opts={"compare_type": True}), Base.metadata)
            return tables, diff

        async with engine.connect() as conn:
            tables, diff = await conn.run_sync(inspect_schema)
        assert tables == TABLES | ADMIN_TABLES | STAFF_TABLES
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        await engine.dispose()


async def test_downgrade_to_nothing_and_up_again(database_url):
    engine = db.create_engine(database_url)
    try:
        await db.migrate(engine)
        from alembic import command

        def downgrade(connection):
            cfg = db.alembic_config()
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "base")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        await db.migrate(engine)
        assert await db.current_revision(engine) == head()
    finally:
        await engine.dispose()


def test_migrate_command(database_url, tmp_path):
    env = {**os.environ, "POLKU_DATABASE_URL": database_url, "POLKU_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "chat_server", "migrate"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_bad_database_url_is_a_clear_startup_error(tmp_path):
    env = {**os.environ, "POLKU_DATABASE_URL": "mysql://x@y/z", "POLKU_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "chat_server", "migrate"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "POLKU_DATABASE_URL" in done.stderr and "postgresql://" in done.stderr
