"""The console's content: quick inserts (snippets) per language and the labels
of the closing tags, from ``training_data/counsellor_snippets.yml``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.types import LANGUAGES

from .protocol import CLOSE_TAGS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsoleContent:
    snippets: dict[str, list[dict[str, str]]]  # language -> [{title, text}]
    tag_labels: dict[str, dict[str, str]]  # tag -> language -> label

    @classmethod
    def load(cls, path: Path) -> "ConsoleContent":
        """training_data/counsellor_snippets.yml; missing or broken parts are left out, with a warning."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            log.warning("counsellor snippets not loaded from %s: %s", path, type(exc).__name__)
            data = {}
        snippets: dict[str, list[dict[str, str]]] = {lang: [] for lang in LANGUAGES}
        for lang, items in (data.get("snippets") or {}).items():
            if lang in LANGUAGES and isinstance(items, list):
                snippets[lang] = [{"title": str(i["title"]), "text": str(i["text"])} for i in items
                                  if isinstance(i, dict) and i.get("title") and i.get("text")]
        labels: dict[str, dict[str, str]] = {}
        raw_labels = data.get("tags") or {}
        for tag in CLOSE_TAGS:
            entry = raw_labels.get(tag) if isinstance(raw_labels, dict) else None
            entry = entry if isinstance(entry, dict) else {}
            labels[tag] = {lang: str(entry.get(lang) or entry.get("en") or tag) for lang in LANGUAGES}
        return cls(snippets, labels)
