"""The shared parts of staff sign-in: constants, named errors, the signed-in ``Staff``,
validation of account input, audit rows. (``chat_server.auth`` re-exports them.)"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ChatServerError
from ..store.models import utcnow
from ..store.staff_models import ROLES, AuditRecord
from ..store.core import Transaction

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "console"

SESSION_TOKEN_BYTES = 32
CSRF_TOKEN_BYTES = 32
COOKIE_NAME = "polku_staff"
SECURE_COOKIE_NAME = "__Host-polku_staff"  # the browser enforces Secure, Path=/ and no Domain
LOGIN_CSRF_COOKIE = "polku_login_csrf"
LOGIN_CSRF_COOKIE_SECURE = "__Host-polku_login_csrf"
LOGIN_CSRF_MAX_AGE_SECS = 2 * 3600
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Engine.IO's long-polling POSTs carry its own unguessable sid; the counsellor
# namespace authenticates its connect from the session cookie.
CSRF_EXEMPT_PREFIXES = ("/socket.io/",)

PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 1024
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
DISPLAY_NAME_MAX_CHARS = 100

UI_LANGUAGES = ("fi", "sv", "en")


# --- named errors --------------------------------------------------------------------


class AuthError(ChatServerError):
    """A staff action refused; ``code`` names why (the pages show a text for it)."""

    code = "auth_error"


class SignInFailed(AuthError):
    """Unknown user, wrong password or disabled account: the same answer for all three."""

    code = "wrong_credentials"


class SecondFactorFailed(AuthError):
    code = "wrong_code"


class SignInThrottled(AuthError):
    """Too early after failed attempts (or too many from one address): wait ``wait_secs``."""

    code = "too_many_attempts"

    def __init__(self, detail: str = "", *, wait_secs: float = 1.0) -> None:
        super().__init__(detail)
        self.wait_secs = wait_secs


class InvalidStaffInput(AuthError):
    """A username, display name, role or password that cannot be used (CLI and admin pages)."""

    code = "invalid_input"


# --- the signed-in user ------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    """A signed-in counsellor or admin (``request["staff"]``)."""

    id: int
    username: str
    display_name: str
    role: str
    session_id: int
    csrf: str
    expires_at: datetime  # the absolute end (the idle one moves: last_seen_at + the idle timeout)
    last_seen_at: datetime | None = None
    reauth_at: datetime | None = None
    method: str = "password"

    @property
    def actor(self) -> str:
        """How the handoff state machine names this person's moves."""
        return f"counsellor:{self.id}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def has_role(self, role: str | None) -> bool:
        """Any staff for None; an admin may also do what a counsellor does."""
        if role is None or role == self.role:
            return True
        return role == "counsellor" and self.role == "admin"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


# --- validation of account input ---------------------------------------------------


def check_username(value: Any) -> str:
    name = value.strip().lower() if isinstance(value, str) else ""
    if not USERNAME_RE.fullmatch(name):
        raise InvalidStaffInput("username: 2-64 characters of a-z, 0-9 and . _ @ -, starting with a letter or digit")
    return name


def check_display_name(value: Any) -> str:
    name = " ".join(value.split()) if isinstance(value, str) else ""
    if not name or len(name) > DISPLAY_NAME_MAX_CHARS or any(unicodedata.category(c)[0] == "C" for c in name):
        raise InvalidStaffInput(f"display name: 1-{DISPLAY_NAME_MAX_CHARS} printable characters")
    return name


def check_role(value: Any) -> str:
    if value not in ROLES:
        raise InvalidStaffInput(f"role: one of {', '.join(ROLES)}")
    return value


def check_password(value: Any) -> str:
    if not isinstance(value, str) or not (PASSWORD_MIN_CHARS <= len(value) <= PASSWORD_MAX_CHARS):
        raise InvalidStaffInput(f"password: at least {PASSWORD_MIN_CHARS} characters")
    return value


def _audit_row(staff_id: int | None, action: str, conversation_id: int | None, detail: str,
               at: datetime) -> AuditRecord:
    return AuditRecord(at=at, staff_id=staff_id, action=action[:64], conversation_id=conversation_id,
                       detail=detail[:2000])


def add_audit(tx: Transaction, staff: Staff | None, action: str, conversation_id: int | None,
              detail: str = "") -> None:
    """Record an audit row in the caller's transaction (committed with the action it tells of)."""
    tx.session.add(_audit_row(staff.id if staff else None, action, conversation_id, detail, utcnow()))
