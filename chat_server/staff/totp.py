"""The second factor of local accounts: TOTP (RFC 6238, pyotp) and recovery codes.

- A code is accepted for the current 30-second step and one step either side
  (clock drift), and each step only once per account (``totp_last_step``), so
  a code seen over someone's shoulder cannot be used again.
- Recovery codes: 10 codes of 80 random bits (16 base32 characters, shown in
  groups of four), each usable once, stored only as SHA-256 (80 bits cannot be
  searched, so a slow hash would add nothing but time).
- The enrolment page shows the provisioning URI as a QR code (segno, pure
  Python, an SVG image) and the secret as text for apps without a camera.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from datetime import datetime

import pyotp
import segno

ISSUER = "Polku chat"
RECOVERY_CODES = 10
_RECOVERY_BYTES = 10  # 80 bits, 16 base32 characters
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits


def matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step ``code`` belongs to (now or one step either side), or None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(at)
    found = None
    for offset in (-1, 0, 1):  # every candidate compared, in constant time each
        if hmac.compare_digest(totp.generate_otp(step + offset), code):
            found = step + offset
    return found


def now_code(secret: str, at: datetime | None = None) -> str:
    """The code an authenticator app shows (tests, and nothing else)."""
    totp = pyotp.TOTP(secret)
    return totp.at(at) if at is not None else totp.now()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """The provisioning URI as a QR code: an SVG image in a data: URI (the CSP allows data: images)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, border=4, xmldecl=False,
                                    dark="#000", light="#fff")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(_RECOVERY_BYTES)).decode("ascii")
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)).lower())
    return codes


def normalise_recovery_code(value: str) -> str | None:
    """The code as hashed (upper case, no separators), or None when it cannot be one."""
    cleaned = "".join(c for c in value.upper() if c not in " -")
    if len(cleaned) != 16 or any(c not in _B32 for c in cleaned):
        return None
    return cleaned


def hash_recovery_code(value: str) -> str:
    normalised = normalise_recovery_code(value)
    if normalised is None:
        raise ValueError("not a recovery code")
    return hashlib.sha256(normalised.encode("ascii")).hexdigest()
