"""Text from untrusted payloads (both Socket.IO namespaces).

JSON may carry a lone UTF-16 surrogate ("\\ud800"): Python keeps it in a
``str``, but no database driver can encode it, so the write would fail as an
outage. The payload checks find it here first.
"""

from __future__ import annotations


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a code point that UTF-8 cannot encode (a lone surrogate)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
