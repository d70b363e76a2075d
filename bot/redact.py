"""Redaction of personal data from residents' messages.

Residents paste their personal identity code, phone number, e-mail address or
bank account into the chat although nobody asks for them. Every message is
redacted before it is logged, sent to the NLU model or shown to anyone, so
the patterns lean towards redacting too much: a lost digit in a logged
message costs nothing, a leaked identity code does.

Two guarantees besides:

- **Linear time.** Resident text is untrusted and may be 2,000 characters of
  digits crafted to make a backtracking engine explore every way to split
  them into groups (Python's ``re`` took minutes on one such message, and
  held the GIL all the while). Every pattern here runs on RE2 (``re2``, the
  google-re2 package), whose automata take time linear in the text whatever
  the input. RE2 has no lookbehind or lookahead, so each pattern *consumes*
  the character before and after it instead (``(?:^|[^0-9A-Za-z])``,
  ``(?:$|[^0-9A-Za-z])``) and reports the personal data in group 1; the scan
  resumes at the end of group 1, so a character that ended one candidate can
  start the next. That accepts and rejects exactly what the lookarounds did.
- **Unicode.** The patterns read the ASCII view of `bot.normalize.fold`
  (NFKC per character, every space as " ", every dash as "-", digits of any
  script as ASCII, invisible characters dropped), so "040\u00a0123\u00a04567",
  "010190\u2011123A" and full-width digits are found like their ASCII forms.
  The match is replaced in the resident's *original* text, from its first
  to its last character: everything else stays as the resident wrote it.

Cheap pre-checks let the common message without an "@" or a long run of
digits skip the other patterns.
"""

from __future__ import annotations

from typing import Callable, Iterable

import re2
from stdnum.fi import hetu as stdnum_hetu

from .normalize import Folded, fold

HETU_TOKEN = "[HETU]"
PHONE_TOKEN = "[PHONE]"
EMAIL_TOKEN = "[EMAIL]"
IBAN_TOKEN = "[IBAN]"

# The check character is the nine digits (DDMMYY + individual number) mod 31.
HETU_CHECK_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"

# Masks a found span in the view, so that later patterns see neither its
# digits nor a word character next to them (a token "[PHONE]" did the same).
_MASK = 0

# Every identity code, phone number and IBAN has six digits in a row or
# digit groups split by spaces, brackets, slashes, "+" or "-". Most messages
# with digits ("500 euroa", "1.2.2026") fail this and skip the rest.
_MAY_HOLD_NUMBER = re2.compile(r"[0-9][0-9 ()/+-]{5}")

# What may not stand right after a number: a digit, or "." / "," before a
# digit (a decimal); a full stop that ends the sentence may.
_NUMBER_END = r"(?:$|[^0-9.,]|[.,](?:$|[^0-9]))"
_WORD_END = r"(?:$|[^0-9A-Za-z])"

_EMAIL = re2.compile(
    r"(?:^|[^\w.+-])([\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-zA-Z]{2,})(?:$|[^\w-])"
)

# A two-letter country code, the check digits, then 11-30 characters in any
# grouping. Letters in the account part only in upper case, so that a
# lower-case word after the number is not swallowed; the last character must
# be a digit for the same reason ("FI21 1234 5600 0007 85 EUR"). The IBAN's
# own checksum is not checked: a typo in an account number still identifies
# the resident (stdnum.iban would only make this redact less).
_IBAN = re2.compile(
    r"(?:^|[^A-Za-z0-9])([A-Za-z]{2}[0-9]{2}(?: ?[0-9A-Z]){10,29} ?[0-9])" + _WORD_END
)

# DDMMYY, century sign, individual number, check character. Residents type
# spaces around the sign and lower case letters. Any letter or digit is
# accepted as check character (a typo in it still identifies the resident),
# and a code whose check character is missing altogether is redacted too.
# The date is not checked either: six digits, a century sign and three
# digits hardly ever mean anything else. (Every dash is "-" in the view.)
_HETU = re2.compile(
    r"(?:^|[^0-9A-Za-z])([0-9]{6} {0,2}[-+YXWVUABCDEFyxwvuabcdef] {0,2}[0-9]{3}(?: ?[0-9A-Za-z])?)"
    + _WORD_END
)

# Without a century sign ("010190 123A") the shape is closer to other
# numbers, so the date must be plausible and the check character right or
# at least a letter; digits only that fail fall through to the phone patterns.
_HETU_WITHOUT_SIGN = re2.compile(
    r"(?:^|[^0-9A-Za-z])(([0-3][0-9]{5}) ?([0-9]{3}) ?([0-9A-Ya-y]))" + _WORD_END
)

# International numbers: "+" or "00", a country code, then digit groups.
# "+358 (0)40 ..." is common in e-mail signatures.
_PHONE_INTERNATIONAL = re2.compile(
    r"(?:^|[^\w+])((?:\+ ?|00)[1-9][0-9]{0,2}(?: ?\(0\))?(?:[ ./-]?[0-9]{1,5}){2,6})" + _NUMBER_END
)

# "358401234567": the country code without "+".
_PHONE_COUNTRY_CODE_WITHOUT_PLUS = re2.compile(
    r"(?:^|[^\w+.,])(358 ?[0-9]{1,3}(?:[ -]?[0-9]{2,}){1,4})" + _NUMBER_END
)

# Finnish national numbers start with 0 and an area or operator code
# ("040", "09", "(09)"). The first group after it has at least three digits
# and the rest at least two: this keeps "klo 09-15" and "01 02 2026" out.
# Dots are not separators, so that dates ("01.02.2026") stay; a full stop
# after the number ends the sentence, a dot before a digit is a decimal.
_PHONE_NATIONAL = re2.compile(
    r"(?:^|[^\w+.,/])((?:\(0[0-9]{1,3}\)|0[0-9]{1,3})[ /-]{0,3}[0-9]{3,}(?:[ -][0-9]{2,})*)"
    + _NUMBER_END
)

_PHONE_DIGITS_MIN = 7
_PHONE_DIGITS_MAX = 15

# Every pattern, for the tests that prove them linear.
PATTERNS: dict[str, re2._Regexp] = {
    "may_hold_number": _MAY_HOLD_NUMBER, "email": _EMAIL, "iban": _IBAN, "hetu": _HETU,
    "hetu_without_sign": _HETU_WITHOUT_SIGN, "phone_international": _PHONE_INTERNATIONAL,
    "phone_country_code_without_plus": _PHONE_COUNTRY_CODE_WITHOUT_PLUS,
    "phone_national": _PHONE_NATIONAL,
}


def hetu_check_char(nine_digits: str) -> str:
    """The check character of a personal identity code's DDMMYY + individual number.

    (stdnum.fi.hetu computes the same, but only inside `validate`; the code
    without a century sign below needs the character itself.)"""
    return HETU_CHECK_CHARS[int(nine_digits) % 31]


def is_valid_hetu(code: str) -> bool:
    """Whether `code` is a personal identity code with a real date and the right check character.

    Spaces, lower case and any Unicode dash or digits are accepted, as
    residents type them; temporary codes (individual number 900-999) count.
    """
    compact = "".join(fold(code).text.split()).upper()
    return len(compact) == 11 and stdnum_hetu.is_valid(compact, allow_temporary=True)


Span = tuple[int, int, str]  # start, end in the view, token


def _accept_phone(view: str, match: re2._Match) -> str | None:
    start, end = match.span(1)
    digits = sum(ch.isdigit() for ch in view[start:end])
    return PHONE_TOKEN if _PHONE_DIGITS_MIN <= digits <= _PHONE_DIGITS_MAX else None


def _accept_hetu_without_sign(view: str, match: re2._Match) -> str | None:
    birth = view[slice(*match.span(2))]
    individual = view[slice(*match.span(3))]
    check = view[slice(*match.span(4))]
    day, month = int(birth[0:2]), int(birth[2:4])
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return None
    if check.isalpha() or hetu_check_char(birth + individual) == check.upper():
        return HETU_TOKEN
    return None


def _always(token: str) -> Callable[[str, re2._Match], str]:
    return lambda view, match: token


# Order matters: an IBAN can hold digit runs that look like a phone number,
# and an identity code starting with 0 looks like a national phone number.
_NUMBER_STAGES: tuple[tuple[re2._Regexp, Callable[[str, re2._Match], str | None]], ...] = (
    (_IBAN, _always(IBAN_TOKEN)),
    (_HETU, _always(HETU_TOKEN)),
    (_HETU_WITHOUT_SIGN, _accept_hetu_without_sign),
    (_PHONE_INTERNATIONAL, _accept_phone),
    (_PHONE_COUNTRY_CODE_WITHOUT_PLUS, _accept_phone),
    (_PHONE_NATIONAL, _accept_phone),
)


def _scan(pattern: re2._Regexp, view: str, data: bytes,
          accept: Callable[[str, re2._Match], str | None]) -> list[Span]:
    """Every candidate of `pattern`, left to right, as re.sub would visit them."""
    found: list[Span] = []
    pos = 0
    while True:
        match = pattern.search(data, pos)
        if match is None:
            return found
        start, end = match.span(1)
        token = accept(view, match)
        if token is not None:
            found.append((start, end, token))
        pos = end  # group 1 is never empty, so the scan moves on


def _mask(data: bytes, spans: Iterable[Span]) -> bytes:
    masked = bytearray(data)
    for start, end, _ in spans:
        masked[start:end] = bytes([_MASK]) * (end - start)
    return bytes(masked)


def find_personal_data(folded: Folded) -> list[Span]:
    """The personal data in a folded text: spans of its view, sorted, not overlapping."""
    view = folded.text
    data = view.encode("ascii")
    spans: list[Span] = []
    if "@" in view:
        emails = _scan(_EMAIL, view, data, _always(EMAIL_TOKEN))
        if emails:
            spans.extend(emails)
            data = _mask(data, emails)
            view = data.decode("ascii")
    if _MAY_HOLD_NUMBER.search(data) is None:
        return sorted(spans)
    for pattern, accept in _NUMBER_STAGES:
        found = _scan(pattern, view, data, accept)
        if found:
            spans.extend(found)
            data = _mask(data, found)
            view = data.decode("ascii")
    return sorted(spans)


def _replace(folded: Folded, spans: list[Span]) -> str:
    """The original text with the spans (in view coordinates) replaced by their tokens."""
    original = folded.original
    pieces = []
    copied_to = 0
    for start, end, token in spans:
        first, last = folded.original_span(start, end)
        if first < copied_to:  # one expanded character in two spans: one token
            copied_to = max(copied_to, last)
            continue
        pieces.append(original[copied_to:first])
        pieces.append(token)
        copied_to = last
    pieces.append(original[copied_to:])
    return "".join(pieces)


def redact(text: str) -> str:
    """Replace identity codes, phone numbers, e-mail addresses and IBANs with tokens.

    Everything else of `text` is returned exactly as it was."""
    folded = fold(text)
    spans = find_personal_data(folded)
    if not spans:
        return text
    return _replace(folded, spans)


def holds_personal_data(text: str) -> bool:
    """Whether `redact` would change `text`."""
    return bool(find_personal_data(fold(text)))
