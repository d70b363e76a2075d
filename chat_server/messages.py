"""Resident-facing texts of the ``error`` event, in fi, sv and en.

The admins' wording lives in ``training_data/responses.yml`` (``error_<code>``)
and is used when the bot's content has it; this table is the fallback that
always exists, so an error can be explained even when the content is broken
or does not know a code yet.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bot.types import LANGUAGES

from . import i18n
from .errors import ERROR_CODES

log = logging.getLogger(__name__)

ERROR_TEXTS: dict[str, dict[str, str]] = i18n.by_key("errors")

assert set(ERROR_TEXTS) == set(ERROR_CODES), "every error code needs its texts"


class NoticeSource(Protocol):
    def notice(self, response_id: str, language: str, **params: Any) -> Any: ...


def error_text(code: str, language: str, content: NoticeSource | None = None) -> str:
    """The error message for ``code`` in ``language`` (fi/sv/en; anything else is fi)."""
    if language not in LANGUAGES:
        language = "fi"
    if content is not None:
        try:
            return content.notice(f"error_{code}", language).text
        except Exception:  # a missing or broken entry must not hide the error itself
            log.debug("no error_%s in the bot's content; using the built-in text", code)
    return ERROR_TEXTS.get(code, ERROR_TEXTS["server_busy"])[language]
