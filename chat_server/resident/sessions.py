"""Resident session ids: unguessable secrets that only the server mints.

Only a SHA-256 hash of a session id is stored. The id is a bearer secret:
whoever holds it can resume the conversation and read its history, so a
leaked database dump or backup must not hand out live sessions. A fast
unsalted hash is enough because the id has 88 random bits and a 128-bit tag
under a key that is not in the database (nothing to brute-force), and it
keeps the lookup a plain indexed equality. Ids are minted by ``SessionIds``
(below); ``mint_session_id`` makes a plain random one of the same shape.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import struct
import time
from pathlib import Path

from bot.types import LANGUAGES

SESSION_ID_BYTES = 32
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet.
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def mint_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def looks_like_session_id(value: object) -> bool:
    """Whether ``value`` could be an id we minted (cheap check before any lookup)."""
    return isinstance(value, str) and _SESSION_ID_RE.fullmatch(value) is not None


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


# --- ids that prove themselves ours (sessions not written yet) --------------------------
#
# A new session costs nothing in the database: its conversation row is written with the
# resident's first message. Until then the id must still resume (a reload, a reconnect),
# so it carries its own proof: 4 bytes of minting time, 1 byte of the language its welcome
# was in, 11 random bytes (88 bits: nothing to guess) and 16 bytes of HMAC-SHA256 over them
# under the installation's session key.
# Still 32 bytes, 43 URL-safe characters, like any id before. An id whose proof fails
# (made up, or minted under a key since lost) is unknown, and its socket gets a fresh one:
# nothing is lost, as nothing was written for it.

_ISSUED = struct.Struct(">I")
_RANDOM_BYTES = 11
_LANGUAGES = ("", *LANGUAGES)  # the language byte (append new languages at the end)
_TAG_BYTES = 16
SESSION_KEY_BYTES = 32


class SessionIds:
    """Mints session ids and recognises the ones this installation minted."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("session key too short")
        self._key = key

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, b"polku-session\0" + body, "sha256").digest()[:_TAG_BYTES]

    def mint(self, now: float | None = None, language: str | None = None) -> str:
        lang = _LANGUAGES.index(language) if language in _LANGUAGES else 0
        body = (_ISSUED.pack(int(now if now is not None else time.time())) + bytes([lang])
                + secrets.token_bytes(_RANDOM_BYTES))
        return base64.urlsafe_b64encode(body + self._tag(body)).decode("ascii").rstrip("=")

    def minted(self, session_id: object) -> tuple[float, str | None] | None:
        """(when we minted ``session_id``, in epoch seconds; its welcome's language), or None
        when it is not one of ours."""
        if not looks_like_session_id(session_id):
            return None
        raw = base64.urlsafe_b64decode(session_id + "=")
        body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(body)):
            return None
        lang = body[_ISSUED.size]
        return float(_ISSUED.unpack(body[:_ISSUED.size])[0]), (_LANGUAGES[lang] or None) if lang < len(_LANGUAGES) else None


def file_session_key(data_dir: Path) -> bytes:
    """The key in ``data_dir/session_key``, made on first use (one process, no Redis)."""
    path = Path(data_dir) / "session_key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    key = secrets.token_bytes(SESSION_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


async def redis_session_key(redis, prefix: str) -> bytes:
    """The key every process shares, in Redis (the first process to ask makes it)."""
    key_name = f"{prefix}session_key"
    await redis.set(key_name, secrets.token_bytes(SESSION_KEY_BYTES).hex(), nx=True)
    value = await redis.get(key_name)
    return bytes.fromhex(value.decode() if isinstance(value, bytes) else value)


class RedisUnwrittenSockets:
    """The sockets of each session not written yet, over every process (Redis), so that
    when one of them writes the conversation, the others (on any process) join its room."""

    def __init__(self, redis, prefix: str, ttl_secs: float) -> None:
        self._redis = redis
        self._prefix = f"{prefix}unwritten:"
        self._ttl_ms = max(1, int(ttl_secs * 1000))

    async def add(self, session_hash: str, sid: str) -> None:
        key = self._prefix + session_hash
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, sid)
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()

    async def take(self, session_hash: str) -> list[str]:
        key = self._prefix + session_hash
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.smembers(key)
            pipe.delete(key)
            members, _ = await pipe.execute()
        return [m.decode() if isinstance(m, bytes) else m for m in members]
