"""The tables of the counsellors' side: staff accounts and their sign-in
sessions, the audit log, residents' callback requests, counsellors' internal
notes and the topic tags a chat is closed with.

Made by migrations ``0002_counsellors`` and ``0004_staff_security``; ``tests/server/test_migrations.py``
checks that it and these models agree.

What is kept, and why it is no more: a staff session is found by a hash of its
token (the cookie is a bearer secret); a password only as its argon2 hash; a
recovery code only as its SHA-256. The TOTP secret must be readable to check a
code, so it is stored as it is (the database is the secret's only home). A
callback request's name and phone number are the only resident details that
are not redacted: they are stored only with the resident's consent and wiped
when a counsellor marks the request done. The audit log keeps ids, never
message text.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, BigId, UtcDateTime

ROLES = ("counsellor", "admin")


class StaffUser(Base):
    """A counsellor or an admin (an admin may also use the console). Disabled, never deleted:
    the audit log and the handoff transitions keep pointing at them."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))  # the only name residents see
    role: Mapped[str] = mapped_column(String(16))  # counsellor or admin
    password_hash: Mapped[str | None] = mapped_column(String(255))  # argon2id; None: single sign-on only
    disabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The second factor of a local account: the TOTP secret (base32) once enrolled, and the
    # last time step used, so that one code cannot be used twice.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # "issuer subject" of a single sign-on account (OpenID Connect), unique.
    external_subject: Mapped[str | None] = mapped_column(String(255), unique=True)


class StaffSession(Base):
    """A signed-in browser. The cookie holds the token; only its SHA-256 is stored.

    ``stage`` is "password" between the password and the second factor (the
    session opens nothing but the second-factor pages, and lives minutes), then
    "full" (a new row with a new token). ``expires_at`` is the absolute end;
    ``last_seen_at`` plus the idle timeout the other one."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))  # synchronizer token of this session's pages
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    stage: Mapped[str] = mapped_column(String(16))  # password or full
    method: Mapped[str] = mapped_column(String(16))  # password (with TOTP) or oidc
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reauth_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # last proof of the second factor
    pending_totp_secret: Mapped[str | None] = mapped_column(String(64))  # while enrolling


class RecoveryCode(Base):
    """A one-time recovery code of a local account's second factor (SHA-256 of 80 random bits)."""

    __tablename__ = "staff_recovery_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class SsoState(Base):
    """A single sign-on under way: its state (hashed), nonce and PKCE verifier. Deleted when
    the provider's callback uses it (single use) or after 10 minutes."""

    __tablename__ = "staff_sso_states"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    next_path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AuditRecord(Base):
    """Who did what to which conversation, and when. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    staff_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff_users.id"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    # No foreign key: the record outlives the conversation (retention deletes conversations).
    conversation_id: Mapped[int | None] = mapped_column(BigId, index=True)
    detail: Mapped[str] = mapped_column(Text)


class CallbackRequest(Base):
    """A resident asked to be called back (consent given). Contact details are wiped when done."""

    __tablename__ = "callback_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # open or done
    name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    preferred_time: Mapped[str | None] = mapped_column(String(100))
    topic: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(2))
    consent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    done_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff_users.id"))


class ConversationNote(Base):
    """A counsellor's internal note on a conversation; residents never see these."""

    __tablename__ = "conversation_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff_users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ConversationTag(Base):
    """A topic tag given when a counsellor closed the conversation (for statistics)."""

    __tablename__ = "conversation_tags"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), index=True)  # a topic intent id or "other"
    label: Mapped[str | None] = mapped_column(String(80))  # the counsellor's words for "other"
    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
