"""Writing the training data's YAML the way people wrote it.

PyYAML's dump loses comments and reflows everything, and the files are read
by people too (the comments in responses.yml and service_facts.yml say what
each entry is for). So an edit rewrites only the block of the entry that
changed, in the files' own block style, and leaves every other line as it
was. Each result is parsed back and must equal the intended data; if it does
not (a layout we did not foresee), the whole file is dumped plainly instead:
comments lost, content right.

Writes are atomic: a temporary file in the same directory, fsync, rename.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from bot.types import LANGUAGES

log = logging.getLogger(__name__)

FLOW_LINE_MAX_CHARS = 110
# libyaml's loader when PyYAML has it: the whole directory loads in a tenth of the time.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


class YamlLayoutError(ValueError):
    """The file's layout is not the one the block rewriter understands."""


# --- reading ---------------------------------------------------------------------


def plain(value: Any) -> Any:
    """YAML data as JSON-able data: dates become ISO strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def load(text: str) -> Any:
    return plain(yaml.load(text, Loader=_Loader) or {})


def header_comments(text: str) -> str:
    """The comment lines (and blank lines among them) at the top of a file."""
    lines = []
    for line in text.splitlines():
        if line.startswith("#") or (not line.strip() and lines):
            lines.append(line)
        else:
            break
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


# --- scalars ---------------------------------------------------------------------


def quoted(text: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(text, ensure_ascii=False)


def scalar(text: str) -> str:
    """A plain scalar when YAML reads it back unchanged, else a quoted one."""
    if text and text == text.strip() and "\n" not in text and not _DATE.fullmatch(text):
        try:
            if yaml.safe_load(f"k: {text}") == {"k": text}:
                return text
        except yaml.YAMLError:
            pass
    return quoted(text)


def value(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return repr(item)
    if item is None:
        return "null"
    if isinstance(item, str) and _DATE.fullmatch(item):
        return item  # read back as a date, as in the files people wrote
    return quoted(str(item))


def _ordered_languages(mapping: dict) -> list[str]:
    return [k for k in LANGUAGES if k in mapping] + [k for k in mapping if k not in LANGUAGES]


def flow_map(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {quoted(str(v))}" for k, v in mapping.items()) + "}"


def _generic(key: str, item: Any, indent: int) -> list[str]:
    """Any other value, in PyYAML's block style (keys we do not know are kept, not styled)."""
    dumped = yaml.safe_dump({key: item}, allow_unicode=True, sort_keys=False, width=1000,
                            default_flow_style=False)
    return [" " * indent + line for line in dumped.rstrip("\n").splitlines()]


# --- emitters of our entries ------------------------------------------------------------


def intent_file(data: dict, header: str = "") -> str:
    """A whole intents/<id>.yml."""
    lines = [f"intent: {scalar(data['intent'])}", f"description: {scalar(data.get('description') or '')}",
             "examples:"]
    examples = data.get("examples") or {}
    for lang in _ordered_languages(examples):
        lines.append(f"  {lang}:")
        lines.extend(f"    - {scalar(text)}" for text in examples[lang])
    for key, item in data.items():
        if key not in ("intent", "description", "examples"):
            lines.extend(_generic(key, item, 0))
    return header + "\n".join(lines) + "\n"


def response_block(response_id: str, entry: dict) -> list[str]:
    lines = [f"{response_id}:", "  text:"]
    texts = entry.get("text") or {}
    lines.extend(f"    {lang}: {quoted(texts[lang])}" for lang in _ordered_languages(texts))
    replies = entry.get("quick_replies") or []
    if replies:
        lines.append("  quick_replies:")
        for reply in replies:
            lines.append(f"    - payload: {scalar(reply.get('payload') or '')}")
            titles = reply.get("title") or {}
            lines.append(f"      title: {flow_map({k: titles[k] for k in _ordered_languages(titles)})}")
    for key, item in entry.items():
        if key not in ("text", "quick_replies"):
            lines.extend(_generic(key, item, 2))
    return lines


def fact_block(name: str, entry: dict, comments: list[str], one_line: bool | None = None) -> list[str]:
    """A fact under ``facts:``; a language mapping stays on one line if it was (or, new, is short)."""
    lines = [f"  {name}:", *comments]
    raw = entry.get("value")
    if isinstance(raw, dict):
        ordered = {lang: raw[lang] for lang in _ordered_languages(raw)}
        flow = f"    value: {flow_map(ordered)}"
        if one_line or (one_line is None and len(flow) <= FLOW_LINE_MAX_CHARS):
            lines.append(flow)
        else:
            lines.append("    value:")
            lines.extend(f"      {lang}: {quoted(str(text))}" for lang, text in ordered.items())
    else:
        lines.append(f"    value: {quoted(str(raw if raw is not None else ''))}")
    for key in entry:
        if key == "value":
            continue
        item = entry[key]
        if isinstance(item, (dict, list)):
            lines.extend(_generic(key, item, 4))
        else:
            lines.append(f"    {key}: {value(item)}")
    return lines


def hours_line(channel: str, days: dict) -> str:
    # Aligned as in the seed file: "chat:    {", "walk_in: {".
    return f"  {channel + ':':<8} " + "{" + ", ".join(f"{d}: {quoted(v)}" for d, v in days.items()) + "}"


# --- block surgery ---------------------------------------------------------------------


def _block_span(lines: list[str], start: int, indent: int) -> int:
    """End (exclusive) of the block whose key line is lines[start]: the next
    non-blank line at ``indent`` or less. Trailing blank lines are left out."""
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
            break
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return end


def _find_key(lines: list[str], key: str, indent: int, lo: int = 0, hi: int | None = None) -> int | None:
    prefix = " " * indent + key + ":"
    for i in range(lo, len(lines) if hi is None else hi):
        line = lines[i]
        if line.startswith(prefix) and (len(line) == len(prefix) or line[len(prefix)] in " \t"):
            return i
    return None


def replace_top_block(text: str, key: str, new_lines: list[str]) -> str:
    """The text with the top-level entry ``key`` replaced (appended when missing)."""
    lines = text.splitlines()
    start = _find_key(lines, key, 0)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines + [""] + new_lines) + "\n"
    end = _block_span(lines, start, 0)
    return "\n".join(lines[:start] + new_lines + lines[end:]) + "\n"


def replace_fact_block(text: str, name: str, entry: dict) -> str:
    """service_facts.yml with one fact under ``facts:`` replaced (appended when new),
    keeping the comments that were inside its block."""
    lines = text.splitlines()
    top = _find_key(lines, "facts", 0)
    if top is None:
        raise YamlLayoutError("no top-level facts:")
    top_end = _block_span(lines, top, 0)
    start = _find_key(lines, name, 2, top + 1, top_end)
    if start is None:
        block = fact_block(name, entry, [])
        return "\n".join(lines[:top_end] + block + lines[top_end:]) + "\n"
    end = _block_span(lines, start, 2)
    old = lines[start + 1:end]
    comments = [line for line in old if line.lstrip().startswith("#")]
    one_line = any(line.startswith("    value: {") for line in old)
    return "\n".join(lines[:start] + fact_block(name, entry, comments, one_line) + lines[end:]) + "\n"


def replace_hours_line(text: str, channel: str, days: dict) -> str:
    lines = text.splitlines()
    top = _find_key(lines, "opening_hours", 0)
    if top is None:
        raise YamlLayoutError("no top-level opening_hours:")
    top_end = _block_span(lines, top, 0)
    start = _find_key(lines, channel, 2, top + 1, top_end)
    if start is None:
        return "\n".join(lines[:top_end] + [hours_line(channel, days)] + lines[top_end:]) + "\n"
    end = _block_span(lines, start, 2)
    return "\n".join(lines[:start] + [hours_line(channel, days)] + lines[end:]) + "\n"


def checked_text(new_text: str, intended: Any, fallback_header: str) -> str:
    """``new_text`` if it reads back as ``intended``; else a plain dump of it."""
    try:
        if load(new_text) == plain(intended):
            return new_text
    except yaml.YAMLError:
        pass
    log.warning("block rewrite did not read back as intended; writing a plain dump (comments lost)")
    return fallback_header + yaml.safe_dump(intended, allow_unicode=True, sort_keys=False, width=1000)


# --- atomic write --------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
