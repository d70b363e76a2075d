"""The chat server's user-interface texts: one YAML file per language here.

``section(name)`` gives ``{language: {key: text}}`` (pages render a language's
whole section); ``by_key(name)`` gives ``{key: {language: text}}`` (an error
code's texts). The languages are ``bot.types.LANGUAGES``, defined once.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from bot.types import LANGUAGES

HERE = Path(__file__).resolve().parent


@cache
def _language(language: str) -> dict[str, dict[str, str]]:
    with open(HERE / f"{language}.yml", encoding="utf-8") as f:
        loaded = yaml.safe_load(f)
    if not isinstance(loaded, dict):
        raise ValueError(f"chat_server/i18n/{language}.yml is not a mapping of sections")
    return loaded


def section(name: str) -> dict[str, dict[str, str]]:
    """One section's texts of every language: ``{language: {key: text}}``."""
    return {language: dict(_language(language)[name]) for language in LANGUAGES}


def by_key(name: str) -> dict[str, dict[str, str]]:
    """One section's texts by key: ``{key: {language: text}}``."""
    texts = section(name)
    return {key: {language: texts[language][key] for language in LANGUAGES} for key in texts[LANGUAGES[0]]}


def accept_language(header: str, max_chars: int | None = None) -> str | None:
    """The first of LANGUAGES an Accept-Language header names (``fi-FI`` counts as ``fi``),
    read in its first ``max_chars`` characters when given; None when it names none."""
    for part in header[:max_chars].split(","):
        tag = part.split(";", 1)[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return None


def missing() -> list[str]:
    """Keys some language lacks, as ``language:section.key`` (a test keeps this empty)."""
    reference = {(s, k) for lang in LANGUAGES for s, keys in _language(lang).items() for k in keys}
    return sorted(f"{lang}:{s}.{k}" for lang in LANGUAGES for s, k in reference
                  if k not in (_language(lang).get(s) or {}))
