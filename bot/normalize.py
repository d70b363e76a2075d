"""Unicode normalisation of residents' text before personal data is looked for.

Residents type on phones and paste from documents, e-mail signatures and web
pages, so a phone number may come with no-break spaces ("040\u00a0123\u00a04567",
what many keyboards and word processors put between digit groups), an
identity code with a non-breaking hyphen (U+2011) or a minus sign, digits in
full width ("０４０") or from another script. The patterns of `bot.redact`
are written for ASCII digits, spaces and "-", so they read a *folded view* of
the text instead of the text itself:

- each character is normalised on its own with NFKC (full-width letters and
  digits, ligatures, circled and superscript digits, the compatibility
  spaces);
- every space character (Unicode White_Space: no-break, narrow no-break,
  thin, ideographic..., line breaks and tabs) becomes " ";
- every dash (category Pd: U+2010-U+2015, U+FE58, U+FE63, U+FF0D...) and the
  minus signs (U+2212, U+2796, U+207B, U+208B) become "-";
- every decimal digit of any script (category Nd) becomes its ASCII digit;
- invisible format characters (zero-width space, joiners, soft hyphen, bidi
  marks, byte order mark: category Cf) and combining marks are dropped, so
  that "040\u200b1234567" is one number;
- every other non-ASCII character becomes "_" when it is a letter or digit
  (a word character to the patterns' boundary checks, as it was to Python's
  Unicode ``\\w``) and "~" otherwise (a neutral character no pattern uses).

So the view is pure ASCII, which lets `re2` run over bytes with no offset
conversion, and every character of the view knows which character of the
original it came from (`Folded.origin`). A match in the view is replaced in
the *original* text, from the first original character of the match to the
last: the resident's own text is kept as written (ä, €, emoji and all), and
only the personal data goes. A character the normalisation expanded ("½" is
"1⁄2") or dropped inside a match (a zero-width space) goes with the match.

Characters are folded one at a time, so NFKC's composition across
characters does not happen; it does not matter here, since the view keeps
only ASCII letters and digits and maps every other letter to "_".
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Characters that are not Pd but are written as a hyphen between digits.
_MINUS_SIGNS = frozenset("\u2212\u2796\u207b\u208b\u02d7\u2043")
NEUTRAL = "~"          # a non-ASCII symbol or punctuation mark
OTHER_WORD_CHAR = "_"  # a non-ASCII letter or digit of no use to the patterns

# The cache of folded characters is bounded: text can hold any of 1.1 million
# code points, and an attacker may send them all.
_CACHE_MAX = 20_000


def fold_char(char: str) -> str:
    """The ASCII view of one character: "" (dropped), or one or more ASCII characters."""
    if char.isascii():
        return " " if char.isspace() else char
    if char.isspace():
        return " "
    category = unicodedata.category(char)
    if category == "Pd" or char in _MINUS_SIGNS:
        return "-"
    if category == "Nd":
        return str(unicodedata.decimal(char))
    if category in ("Cf", "Mn", "Me"):
        return ""
    if category == "Cs":  # a lone surrogate: nothing a pattern could use
        return NEUTRAL
    folded = []
    for part in unicodedata.normalize("NFKC", char):
        if part.isascii():
            folded.append(" " if part.isspace() else part)
        elif part.isspace():
            folded.append(" ")
        else:
            sub = unicodedata.category(part)
            if sub == "Pd" or part in _MINUS_SIGNS:
                folded.append("-")
            elif sub == "Nd":
                folded.append(str(unicodedata.decimal(part)))
            elif sub in ("Cf", "Mn", "Me"):
                continue
            elif part.isalnum():
                folded.append(OTHER_WORD_CHAR)
            else:
                folded.append(NEUTRAL)
    return "".join(folded)


class _Table(dict):
    """str.translate's table: folds each character once, then looks it up at C speed."""

    def __missing__(self, char_code: int) -> str:
        folded = fold_char(chr(char_code))
        if len(folded) != 1:  # before it is cached: fold() trusts _RESIZING for cached characters
            _RESIZING.add(chr(char_code))
        if len(self) < _CACHE_MAX:
            self[char_code] = folded
        return folded


_TABLE = _Table()
# Code points seen whose view is not exactly one character (dropped or
# expanded). Unbounded, but Unicode has only a few thousand such characters.
_RESIZING: set[str] = set()
# ASCII whitespace other than " " (the only change ASCII text gets).
_ASCII_SPACES = {ord(c): " " for c in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"}


@dataclass(frozen=True)
class Folded:
    """The ASCII view of `original` and, when their lengths differ, where each view character came from."""

    original: str
    text: str
    origin: tuple[int, ...] | None  # None: character i of the view is character i of the original

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The characters of the original that the view's [start, end) came from."""
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def fold(text: str) -> Folded:
    """The ASCII view of `text` that the personal-data patterns read."""
    if text.isascii():
        return Folded(text, text.translate(_ASCII_SPACES), None)
    view = text.translate(_TABLE)
    if len(view) == len(text) and _RESIZING.isdisjoint(text):
        return Folded(text, view, None)
    origin: list[int] = []
    table = _TABLE
    for index, char in enumerate(text):
        folded = table[ord(char)]
        if folded:
            origin.extend([index] * len(folded))
    return Folded(text, view, tuple(origin))
