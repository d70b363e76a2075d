"""Resident session ids: unguessable secrets that only the server mints.

Only a SHA-256 hash of a session id is stored. The id is a bearer secret:
whoever holds it can resume the conversation and read its history, so a
leaked database dump or backup must not hand out live sessions. A fast
unsalted hash is enough because the id has 256 random bits (nothing to
brute-force), and it keeps the lookup a plain indexed equality.
"""

from __future__ import annotations

import hashlib
import re
import secrets

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
