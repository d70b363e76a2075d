"""Small pieces on their own: URLs, session ids, addresses, limits, texts, logs."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from bot.types import LANGUAGES
from chat_server import ratelimit
from chat_server.store import db
from chat_server.errors import ERROR_CODES, ConfigurationError, RateLimited
from chat_server.resident.protocol import ERROR_TEXTS, error_text
from chat_server.resident.sessions import hash_session_id, looks_like_session_id, mint_session_id



@pytest.mark.parametrize("given, expected", [
    ("sqlite:////tmp/x/polku.db", "sqlite+aiosqlite:////tmp/x/polku.db"),
    ("postgresql://postgres@127.0.0.1:5432/polku", "postgresql+asyncpg://postgres@127.0.0.1:5432/polku"),
    ("postgres://u:p@h/d", "postgresql+asyncpg://u:***@h/d"),
    ("postgresql+psycopg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ("postgresql://u@h/d?sslmode=require", "postgresql+asyncpg://u@h/d?ssl=require"),
])
def test_async_url(given, expected):
    assert str(db.async_url(given)) == expected


@pytest.mark.parametrize("bad", ["mysql://u@h/d", "not a url"])
def test_unusable_database_url(bad):
    with pytest.raises(ConfigurationError, match="POLKU_DATABASE_URL"):
        db.async_url(bad)


def test_session_ids_are_unguessable_and_checked_cheaply():
    ids = {mint_session_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(looks_like_session_id(i) for i in ids)
    for bad in (None, 5, "", "short", "x" * 43 + "=", "ä" * 43, "a" * 44):
        assert not looks_like_session_id(bad)
    some = next(iter(ids))
    assert hash_session_id(some) != some and len(hash_session_id(some)) == 64


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies():
    trusted = ratelimit.parse_trusted_proxies(["10.0.0.0/24", "127.0.0.1"])
    xff = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7, 10.0.0.3"}
    assert ratelimit.client_address("192.0.2.1", xff, trusted) == "192.0.2.1"
    assert ratelimit.client_address("10.0.0.2", xff, trusted) == "198.51.100.7"
    assert ratelimit.client_address("10.0.0.2", {}, trusted) == "10.0.0.2"
    assert ratelimit.client_address("10.0.0.2", xff, ()) == "10.0.0.2"
    with pytest.raises(ConfigurationError):
        ratelimit.parse_trusted_proxies(["proxy.local"])
    assert trusted[0] == ipaddress.ip_network("10.0.0.0/24")


async def test_memory_window_slides(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    limits = ratelimit.RateLimits(ratelimit.MemoryCounter(), per_session_per_min=2, per_address_per_min=100)
    await limits.check_session("s")
    now[0] += 30
    await limits.check_session("s")
    with pytest.raises(RateLimited):
        await limits.check_session("s")
    now[0] += 31  # the first hit left the window; refused hits were not counted
    await limits.check_session("s")
    with pytest.raises(RateLimited):
        await limits.check_session("s")


async def _both_limits(limits: ratelimit.RateLimits, address: str, session: str) -> str | None:
    try:
        await limits.check_message(address, session)
    except RateLimited as exc:
        return exc.detail
    return None


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_one_call_checks_address_then_session_as_two_calls_would(kind, redis_url, redis_prefix):
    """check_message (one EVALSHA in Redis) == check_address then check_session: the address is
    counted first, a refused address counts nothing for the session, refused hits are not counted."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url) if kind == "redis" else None
    counter = ratelimit.RedisCounter(client, redis_prefix) if client else ratelimit.MemoryCounter()
    limits = ratelimit.RateLimits(counter, per_session_per_min=2, per_address_per_min=3)
    try:
        assert await _both_limits(limits, "10.0.0.1", "s1") is None
        assert await _both_limits(limits, "10.0.0.1", "s1") is None
        assert await _both_limits(limits, "10.0.0.1", "s1") == "session"  # the address counted its third
        assert await _both_limits(limits, "10.0.0.1", "s2") == "address"  # s2 not counted
        limits_after = ratelimit.RateLimits(counter, per_session_per_min=1, per_address_per_min=100)
        assert await _both_limits(limits_after, "10.0.0.2", "s2") is None  # s2 had no hit yet
        with pytest.raises(RateLimited):
            await limits.check_session("s1")
    finally:
        if client is not None:
            await client.aclose()


def test_every_error_has_a_text_in_every_language():
    assert set(ERROR_TEXTS) == set(ERROR_CODES)
    for code in ERROR_CODES:
        texts = {lang: error_text(code, lang) for lang in LANGUAGES}
        assert all(texts.values()) and len(set(texts.values())) == 3
    assert error_text("rate_limited", "de") == ERROR_TEXTS["rate_limited"]["fi"]


def test_the_bots_content_has_every_error_text():
    from bot.content import Content
    from bot.settings import Settings

    content = Content.load(Settings(environ={}).training_data_dir)
    for code in ERROR_CODES:
        for lang in LANGUAGES:
            assert content.reply(f"error_{code}", lang).text


async def test_logs_hold_no_message_text_or_session_id(resident, caplog):
    caplog.set_level(logging.DEBUG, logger="chat_server")
    secret = "salainen viesti 040 7654321"
    await resident.ack(await resident.say(secret))
    await resident.next("bot_uttered")
    await resident.say("x" * 10_000)
    await resident.error("message_too_long")
    await resident.emit("history_request", {})
    await resident.next("history")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "resident message" in text
    for leak in ("salainen", "7654321", resident.session_id, "xxxxxxxx"):
        assert leak not in text


def test_asyncpg_connection_errors_count_as_a_database_outage():
    # Seen in the fault test: PostgreSQL coming back refuses connections with asyncpg's own
    # CannotConnectNowError, unwrapped by SQLAlchemy; it was logged as an unexpected ERROR.
    from asyncpg.exceptions import CannotConnectNowError, ConnectionDoesNotExistError
    from sqlalchemy.exc import IntegrityError

    from chat_server.store.core import _is_backend_failure

    assert _is_backend_failure(CannotConnectNowError("the database system is starting up"))
    assert _is_backend_failure(ConnectionDoesNotExistError("connection was closed"))
    assert not _is_backend_failure(IntegrityError("INSERT", {}, Exception("duplicate")))
    assert not _is_backend_failure(ValueError("a bug, not an outage"))
