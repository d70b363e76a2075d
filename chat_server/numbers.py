"""Numbers from untrusted strings (URL paths, query strings, JSON keys).

``str.isdigit`` is true for "²", "①" and digits of every script, and ``int``
accepts full-width and Arabic-Indic digits, spaces, "+" and "_" ("1_000"):
neither says "a plain number". Ids here are ASCII digits only, at most 18 of
them (below 2**63, what every database's BIGINT holds).
"""

from __future__ import annotations

from typing import Any

MAX_ID_DIGITS = 18
MAX_ID = 2**63 - 1


def parse_id(value: Any) -> int | None:
    """The non-negative integer written in `value` with ASCII digits only, else None."""
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_ID_DIGITS
            or not value.isascii() or not value.isdigit()):
        return None
    return int(value)


def is_id(value: Any) -> bool:
    """Whether `value` is an int usable as a database id (JSON numbers; bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID
