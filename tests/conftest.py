"""Shared fixtures: the real Rasa server (trained once per test session), an own
PostgreSQL database and an own Redis key prefix for every test that needs them."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib

from bot.rasa_server import RasaProcess, free_port
from bot.settings import PROJECT_ROOT, Settings
from bot.training import latest_model, train

PG_ADMIN_DSN = os.environ.get("PYTEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PYTEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def rasa_model(tmp_path_factory) -> Path:
    """A model trained from training_data/ once per test session.

    PYTEST_REUSE_MODEL=<dir> reuses the newest model of that directory (a
    developer's shortcut; CI always trains)."""
    reuse = os.environ.get("PYTEST_REUSE_MODEL")
    if reuse:
        model = latest_model(Path(reuse).resolve())
        if model is not None:
            return model
    out = tmp_path_factory.mktemp("models")
    return train(Settings(environ={}), out_dir=out)


def _serve_rasa(model: Path, data_dir: Path):
    settings = Settings(environ={}, POLKU_DATA_DIR=str(data_dir))
    process = RasaProcess(settings, model, free_port(), log_path=data_dir / "rasa.log").start()
    try:
        process.wait_ready()
        yield process.url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def rasa_url(rasa_model, tmp_path_factory):
    """Base URL of a real `rasa run --enable-api` serving the session's model."""
    yield from _serve_rasa(rasa_model, tmp_path_factory.mktemp("rasa"))


@pytest.fixture(scope="session")
def second_rasa_url(rasa_model, tmp_path_factory):
    """Another real Rasa server on the same model (POLKU_RASA_URL may list several)."""
    yield from _serve_rasa(rasa_model, tmp_path_factory.mktemp("rasa-second"))


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database of this test's own, dropped afterwards."""
    name = "polku_test_" + secrets.token_hex(6)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url():
    return REDIS_URL


@pytest.fixture
def redis_prefix():
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"polkutest:{secrets.token_hex(5)}:"
    yield prefix
    client = redis_lib.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def training_copy(tmp_path) -> Path:
    """A copy of training_data/ that a test may edit."""
    target = tmp_path / "training_data"
    shutil.copytree(PROJECT_ROOT / "training_data", target)
    return target


def pytest_collection_modifyitems(config, items):
    """Run the browser tests last.

    Playwright's sync API keeps an event loop marked as running in the main
    thread for as long as the session-scoped browser lives; pytest-asyncio
    then cannot run the async tests that would come after it ("Runner.run()
    cannot be called from a running event loop")."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
