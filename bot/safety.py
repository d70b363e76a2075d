"""The deterministic crisis check that runs beside the NLU model.

Why beside the model: the model is trained on a few hundred examples and
answers with a confidence; a resident in crisis writes in their own words,
with typos, in the middle of another topic ("ei oo rahaa ja en jaksa enää
elää"), and the model may put that message under a money intent or below
its threshold. A missed crisis is the one mistake the bot must not make, so
every message also goes through this lexicon, and a hit makes the message
`crisis` whatever the model said (the "safety order" of the intent contract).

The lexicon itself is data that admins review: `training_data/crisis_lexicon.yml`
(its header explains the format, the folding and why it is over-inclusive).
This module loads and checks it (a broken entry is a `LexiconError` naming
the category, language and entry) and matches it.

Linear time: resident text is untrusted and up to 2,000 characters, so every
pattern is compiled with RE2 (`google-re2`), which has no backtracking (and so
no lookarounds or backreferences). The exceptions that lookarounds used to
express ("not followed by ...") are separate patterns tried on a bounded
window beside each match (`unless_before`, `unless_after`, `unless_in`), and
the folding squeezes repeated letters with a plain loop instead of a
backreference. Each step is linear in the message's length.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

import re2
import yaml

from .types import LANGUAGES, Language

CrisisCategory = Literal[
    "suicide", "self_harm", "acute_danger", "violence", "homeless_tonight", "no_food"
]

# Most severe first: the first category that matches is the one returned.
# Acute danger (a weapon, being locked in, "my life is in danger") comes
# before violence in general because it is happening now.
CATEGORY_ORDER: tuple[CrisisCategory, ...] = (
    "suicide", "self_harm", "acute_danger", "violence", "homeless_tonight", "no_food",
)
KINDS = ("statements", "topics")

DEFAULT_LEXICON_PATH = Path(__file__).resolve().parent.parent / "training_data" / "crisis_lexicon.yml"

# How far beside a match the exceptions look, in characters of folded text.
_WINDOW = 60

# Messages no entry may match: an entry that does would flag ordinary
# conversations (a typo such as an empty alternative "(?:a|)" does that).
_HARMLESS = ("", "hei", "moi", "kiitos", "joo", "ei", "hej", "tack", "ja", "nej", "hi", "hello", "thanks",
             "yes", "no", "ok", "a", "i", "en", "on", "mina", "jag", "me", "you")


class LexiconError(ValueError):
    """The crisis lexicon file is not usable; the message names the entry."""


@dataclass(frozen=True)
class CrisisHit:
    """A crisis lexicon match. `matched` is the normalised matched text, for logs and debugging only."""

    category: CrisisCategory
    language: Language
    matched: str


# ---------------------------------------------------------------------------
# Folding (the same for messages and patterns)

# Decomposing (NFKD) splits "ä" into "a" and a combining diaeresis; dropping
# the combining marks folds every accented letter. Apostrophes go too, so
# that "don't", "don’t" and "dont" are the same word.
# Invisible characters (zero-width spaces and joiners, soft hyphens, byte
# order marks) go too, so that "kuo\u200blla" is not two words.
_DROPPED = {code: None for code in range(0x0300, 0x0370)}
_DROPPED.update({ord(c): None for c in "'\u2019\u2018\u00b4`\u00ad\u200b\u200c\u200d\u2060\ufeff"})


class _WordCharacters(dict):
    """str.translate table: a-z and 0-9 stay, every other character becomes a space.
    Only ASCII is kept in the table, so odd input cannot grow it."""

    def __missing__(self, code: int) -> str:
        return " "


_WORD_CHARACTERS = _WordCharacters({code: (chr(code) if chr(code).isascii() and chr(code).isalnum() else " ")
                                    for code in range(128)})
for _code in range(ord("A"), ord("Z") + 1):
    _WORD_CHARACTERS[_code] = " "  # lower-cased before; other upper case letters are not words here


def _squeeze_letters(text: str) -> str:
    """A run of one letter to one letter ("kuollaaa" -> "kuola"); digits stay.
    One pass with itertools.groupby (a backreference would need a backtracking engine)."""
    return "".join(char if "a" <= char <= "z" else "".join(run) for char, run in groupby(text))


def normalise(text: str) -> str:
    """Fold the text as the lexicon sees it: 'Hälúun KUOLLA!!' -> 'halun kuola'."""
    # NFKD: also compatibility forms (full-width "ｋｕｏｌｌａ", ligatures) to plain letters.
    folded = unicodedata.normalize("NFKD", text.lower()).translate(_DROPPED).translate(_WORD_CHARACTERS)
    return _squeeze_letters(" ".join(folded.split()))


def _fold_pattern(pattern: str, gap_words: int) -> str:
    """Fold a pattern like a message, leaving escapes alone: in "\\bb" the
    letters are not a run, and "\\w" stays "\\w"."""
    folded = unicodedata.normalize("NFD", pattern.lower()).translate(_DROPPED)
    out: list[str] = []
    previous = ""  # the previous plain (unescaped) letter, or ""
    escaped = False
    for char in folded:
        if escaped:
            out.append(char)
            escaped = False
            previous = ""
            continue
        if char == "\\":
            out.append(char)
            escaped = True
            previous = ""
            continue
        if char == previous and "a" <= char <= "z":
            continue
        out.append(char)
        previous = char if "a" <= char <= "z" else ""
    return "".join(out).replace(" … ", f" (?:\\w+ ){{0,{gap_words}}}")


# ---------------------------------------------------------------------------
# The lexicon

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a broken pattern is reported as a LexiconError, not on stderr
_OPTIONS.max_mem = 64 << 20  # the one-pass check over every entry stays a DFA
_MACRO = re.compile(r"<([a-z_][a-z0-9_]*)>")
_ENTRY_KEYS = {"pattern", "near", "within", "unless_before", "unless_after", "unless_in", "note"}


def _re2(pattern: str, where: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise LexiconError(f"{where}: not a valid RE2 pattern ({detail}). RE2 has no lookarounds "
                           f"(?= (?! (?<= (?<! and no backreferences; use unless_before/unless_after/unless_in") from None


@dataclass(frozen=True)
class _Entry:
    language: str
    source: str  # the folded pattern, for error messages and the one-pass check
    regex: Any
    unless_before: Any = None
    unless_after: Any = None
    unless_in: Any = None

    def find(self, text: str) -> re2._Match | None:
        """The first match that none of the exceptions rules out."""
        if self.unless_before is None and self.unless_after is None and self.unless_in is None:
            return self.regex.search(text)
        for match in self.regex.finditer(text):
            start, end = match.start(), match.end()
            if self.unless_before is not None and self.unless_before.search(text[max(0, start - _WINDOW):start]):
                continue
            if self.unless_after is not None and self.unless_after.search(text[end:end + _WINDOW]):
                continue
            if self.unless_in is not None and self.unless_in.search(text[start:end + _WINDOW]):
                continue
            return match
        return None


@dataclass(frozen=True)
class _Group:
    category: CrisisCategory
    topic: bool  # topic words count only outside a not-acute context
    any_entry: Any  # one pass: does any entry of the group match at all?
    entries: tuple[_Entry, ...]


class CrisisLexicon:
    """The compiled lexicon of `training_data/crisis_lexicon.yml`."""

    def __init__(self, groups: tuple[_Group, ...], anything: Any, not_acute: Any, path: Path | None = None,
                 entry_count: int = 0, risk: tuple[tuple[CrisisCategory, Any], ...] = ()) -> None:
        self._groups = groups
        self._risk = risk
        self._anything = anything
        self._not_acute = not_acute
        self.path = path
        self.entry_count = entry_count

    # -- loading ------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path = DEFAULT_LEXICON_PATH) -> "CrisisLexicon":
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as handle:
                # libyaml's loader when there is one: the pure-Python one took about
                # 0.45 s of the 0.7 s a load cost.
                document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except FileNotFoundError:
            raise LexiconError(f"{path}: file missing") from None
        except yaml.YAMLError as exc:
            raise LexiconError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_document(document, path)

    @classmethod
    def from_document(cls, document: Any, path: Path | None = None) -> "CrisisLexicon":
        name = str(path or "crisis lexicon")
        if not isinstance(document, dict):
            raise LexiconError(f"{name}: expected a mapping at the top")
        unknown = set(document) - {"gap_words", "macros", "categories", "not_acute_context", "risk_words"}
        if unknown:
            raise LexiconError(f"{name}: unknown top-level key(s) {sorted(unknown)}")
        gap_words = document.get("gap_words", 3)
        if not isinstance(gap_words, int) or not 0 <= gap_words <= 6:
            raise LexiconError(f"{name}: gap_words must be a whole number from 0 to 6")
        macros = document.get("macros") or {}
        if not isinstance(macros, dict) or not all(isinstance(v, str) and v for v in macros.values()):
            raise LexiconError(f"{name}: macros must map names to non-empty patterns")
        categories = document.get("categories")
        if not isinstance(categories, dict) or not categories:
            raise LexiconError(f"{name}: 'categories' is missing or empty")
        unknown = set(categories) - set(CATEGORY_ORDER)
        if unknown:
            raise LexiconError(f"{name}: unknown categories {sorted(unknown)}; known: {', '.join(CATEGORY_ORDER)}")

        def expand(pattern: str, where: str, depth: int = 0) -> str:
            def one(match: re.Match) -> str:
                if match.group(1) not in macros:
                    raise LexiconError(f"{where}: unknown word list <{match.group(1)}> (macros: "
                                       f"{', '.join(sorted(macros)) or 'none'})")
                return expand(macros[match.group(1)], where, depth + 1) if depth < 3 else macros[match.group(1)]
            return _MACRO.sub(one, pattern)

        def fold(pattern: Any, where: str) -> str:
            if not isinstance(pattern, str) or not pattern.strip():
                raise LexiconError(f"{where}: the pattern must be a non-empty text")
            return _fold_pattern(expand(pattern.strip(), where), gap_words)

        groups: list[_Group] = []
        every_source: list[str] = []
        for category in CATEGORY_ORDER:
            by_kind = categories.get(category)
            if by_kind is None:
                continue
            if not isinstance(by_kind, dict) or set(by_kind) - set(KINDS):
                raise LexiconError(f"{name}: {category}: expected 'statements' and/or 'topics'")
            for kind in KINDS:
                by_language = by_kind.get(kind) or {}
                if not isinstance(by_language, dict) or set(by_language) - set(LANGUAGES):
                    raise LexiconError(f"{name}: {category}.{kind}: expected languages fi, sv, en")
                entries: list[_Entry] = []
                for language in LANGUAGES:
                    items = by_language.get(language) or []
                    if not isinstance(items, list):
                        raise LexiconError(f"{name}: {category}.{kind}.{language}: expected a list of entries")
                    for index, item in enumerate(items, 1):
                        where = f"{name}: {category}.{kind}.{language} entry {index}"
                        entry = cls._entry(item, language, where, fold)
                        entries.append(entry)
                        every_source.append(entry.source)
                if entries:
                    any_entry = _re2("|".join(f"(?:{e.source})" for e in entries), f"{name}: {category}.{kind}")
                    groups.append(_Group(category, kind == "topics", any_entry, tuple(entries)))
        if not groups:
            raise LexiconError(f"{name}: no entries")
        not_acute_doc = document.get("not_acute_context") or {}
        if not isinstance(not_acute_doc, dict) or set(not_acute_doc) - set(LANGUAGES):
            raise LexiconError(f"{name}: not_acute_context must map fi, sv, en to lists of phrases")
        phrases = []
        for language, items in not_acute_doc.items():
            for index, item in enumerate(items or [], 1):
                where = f"{name}: not_acute_context.{language} entry {index}"
                phrase = fold(item, where)
                _re2(phrase, where)
                phrases.append(phrase)
        not_acute = _re2(r"\b(?:" + "|".join(phrases) + r")\b", f"{name}: not_acute_context") if phrases else None
        anything = _re2(r"\b(?:" + "|".join(f"(?:{s})" for s in every_source) + r")\b", name)
        risk_doc = document.get("risk_words") or {}
        if not isinstance(risk_doc, dict) or set(risk_doc) - set(CATEGORY_ORDER):
            raise LexiconError(f"{name}: risk_words must map categories ({', '.join(CATEGORY_ORDER)}) "
                               f"to languages and lists of words")
        risk: list[tuple[CrisisCategory, Any]] = []
        for category in CATEGORY_ORDER:
            by_language = risk_doc.get(category) or {}
            if not isinstance(by_language, dict) or set(by_language) - set(LANGUAGES):
                raise LexiconError(f"{name}: risk_words.{category}: expected languages fi, sv, en")
            words = []
            for language, items in by_language.items():
                if not isinstance(items, list):
                    raise LexiconError(f"{name}: risk_words.{category}.{language}: expected a list of words")
                for index, item in enumerate(items, 1):
                    where = f"{name}: risk_words.{category}.{language} entry {index}"
                    words.append(cls._entry(item, language, where, fold).source)
            if words:
                risk.append((category, _re2(r"\b(?:" + "|".join(f"(?:{w})" for w in words) + r")\b",
                                            f"{name}: risk_words.{category}")))
        return cls(tuple(groups), anything, not_acute, path, len(every_source), tuple(risk))

    @staticmethod
    def _entry(item: Any, language: str, where: str, fold) -> _Entry:
        if isinstance(item, str):
            item = {"pattern": item}
        if not isinstance(item, dict):
            raise LexiconError(f"{where}: expected a pattern or a mapping with 'pattern'")
        unknown = set(item) - _ENTRY_KEYS
        if unknown:
            raise LexiconError(f"{where}: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(_ENTRY_KEYS))}")
        if ("pattern" in item) == ("near" in item):
            raise LexiconError(f"{where}: give either 'pattern' or 'near' (two phrases)")
        if "near" in item:
            near, within = item["near"], item.get("within", 6)
            if not isinstance(near, list) or len(near) != 2:
                raise LexiconError(f"{where}: 'near' must be a list of two phrases")
            if not isinstance(within, int) or not 0 <= within <= 10:
                raise LexiconError(f"{where}: 'within' must be a whole number of words from 0 to 10")
            first, second = fold(near[0], where), fold(near[1], where)
            gap = f"(?: \\w+){{0,{within}}} "
            source = f"(?:{first}){gap}(?:{second})|(?:{second}){gap}(?:{first})"
        else:
            if "within" in item:
                raise LexiconError(f"{where}: 'within' goes with 'near'")
            source = fold(item["pattern"], where)
        regex = _re2(rf"\b(?:{source})\b", where)
        for harmless in _HARMLESS:
            if regex.search(harmless) is not None:
                raise LexiconError(f"{where}: matches the ordinary message {harmless!r}, so it would flag "
                                   f"ordinary conversations; check for an empty alternative such as '(?:a|)'")
        exceptions = {}
        for key, wrap in (("unless_before", r"\b(?:{})\s*$"), ("unless_after", r"^\s*(?:{})"),
                          ("unless_in", r"(?:{})")):
            if key in item:
                exceptions[key] = _re2(wrap.format(fold(item[key], f"{where} {key}")), f"{where} {key}")
        return _Entry(language, source, regex, **exceptions)

    # -- matching -----------------------------------------------------------
    def risk(self, text: str) -> CrisisCategory | None:
        """The most severe category whose risk words the message has, or None.

        Risk words are single words or short phrases that are not a crisis by
        themselves ("kuolla", "pills", "lyö", "nälkä"): in a message the model did
        not understand they lead to the safety check instead of "I did not
        understand", and in a message the model took for a crisis they choose
        the answer."""
        normalised = normalise(text)
        if not normalised:
            return None
        for category, regex in self._risk:
            if regex.search(normalised) is not None:
                return category
        return None

    def check(self, text: str) -> CrisisHit | None:
        """The most severe crisis category the message matches, or None."""
        normalised = normalise(text)
        # Nearly every message matches nothing: one pass over every entry
        # answers that; only a message that matches something is searched
        # again, category by category, for the most severe one.
        if not normalised or self._anything.search(normalised) is None:
            return None
        not_acute: bool | None = None  # looked up once, and only when a topic word matches
        best: tuple[CrisisCategory, re2._Match, str] | None = None
        for group in self._groups:
            if best is not None and best[0] != group.category:
                break
            if group.any_entry.search(normalised) is None:
                continue
            if group.topic:
                if not_acute is None:
                    not_acute = self._not_acute is not None and self._not_acute.search(normalised) is not None
                if not_acute:
                    continue
            for entry in group.entries:
                match = entry.find(normalised)
                if match is not None and (best is None or match.start() < best[1].start()):
                    best = (group.category, match, entry.language)
        if best is None:
            return None
        category, match, language = best
        return CrisisHit(category=category, language=language, matched=match.group(0))  # type: ignore[arg-type]


_default: CrisisLexicon | None = None


def default_lexicon() -> CrisisLexicon:
    """The project's lexicon (`training_data/crisis_lexicon.yml`), loaded once."""
    global _default
    if _default is None:
        _default = CrisisLexicon.load(DEFAULT_LEXICON_PATH)
    return _default


def use_lexicon(lexicon: CrisisLexicon) -> None:
    """Make `lexicon` the one `crisis_check` uses (the server's configured training data)."""
    global _default
    _default = lexicon


def crisis_check(text: str, lexicon: CrisisLexicon | None = None) -> CrisisHit | None:
    """The most severe crisis category the message matches, or None."""
    return (lexicon or default_lexicon()).check(text)
