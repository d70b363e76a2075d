"""The redaction as it was before it moved to RE2 (Python's backtracking ``re``,
lookbehinds and lookaheads), kept as an oracle: on short ASCII input, where
backtracking costs nothing, the linear-time `bot.redact` must redact exactly
the same. Not used by the application."""

from __future__ import annotations

import re

HETU_TOKEN = "[HETU]"
PHONE_TOKEN = "[PHONE]"
EMAIL_TOKEN = "[EMAIL]"
IBAN_TOKEN = "[IBAN]"
HETU_CHECK_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"

# Python's re scans fast for a pattern that starts with a plain character
# set, but tries every position of a pattern that starts with a lookbehind.
# So the patterns below start with the character set and check the
# character before it in a lookbehind after it.

# Every identity code, phone number and IBAN has six digits in a row or
# digit groups split by spaces, brackets, slashes, "+" or "-". Most messages
# with digits ("500 euroa", "1.2.2026") fail this and skip the rest.
_MAY_HOLD_NUMBER = re.compile(r"[0-9][0-9 ()/+\u2013-]{5}")

_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-zA-Z]{2,}(?![\w-])"
)

# The IBAN's check digits, after a two-letter country code (in the
# lookbehind: the match starts at the digits), then 11-30 characters in any
# grouping. Letters in the account part only in upper case, so that a
# lower-case word after the number is not swallowed; the last character must
# be a digit for the same reason ("FI21 1234 5600 0007 85 EUR").
_IBAN_AFTER_COUNTRY = re.compile(
    r"[0-9]{2}(?<=(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2})"
    r"(?:[ ]?[0-9A-Z]){10,29}[ ]?[0-9](?![A-Za-z0-9])"
)
_IBAN_COUNTRY_CHARS = 2

# DDMMYY, century sign, individual number, check character. Residents type
# spaces around the sign and lower case letters. Any letter or digit is
# accepted as check character (a typo in it still identifies the resident),
# and a code whose check character is missing altogether is redacted too.
# The date is not checked either: six digits, a century sign and three
# digits hardly ever mean anything else.
_HETU = re.compile(
    r"[0-9](?<![0-9A-Za-z][0-9])[0-9]{5}"
    r"[ ]{0,2}[-+\u2013YXWVUABCDEFyxwvuabcdef][ ]{0,2}"
    r"[0-9]{3}(?:[ ]?[0-9A-Za-z])?"
    r"(?![0-9A-Za-z])"
)

# Without a century sign ("010190 123A") the shape is closer to other
# numbers, so the date must be plausible and the check character right or
# at least a letter; digits only that fail fall through to the phone patterns.
_HETU_WITHOUT_SIGN = re.compile(
    r"([0-3](?<![0-9A-Za-z][0-3])[0-9]{5})[ ]?([0-9]{3})[ ]?([0-9A-Ya-y])(?![0-9A-Za-z])"
)

# International numbers: "+" or "00", a country code, then digit groups.
# "+358 (0)40 ..." is common in e-mail signatures.
_PHONE_INTERNATIONAL = re.compile(
    r"[+0](?<![\w+][+0])(?:(?<=\+)[ ]?|(?<=0)0)[1-9][0-9]{0,2}(?:[ ]?\(0\))?"
    r"(?:[ ./-]?[0-9]{1,5}){2,6}(?![0-9]|[.,][0-9])"
)

# "358401234567": the country code without "+".
_PHONE_COUNTRY_CODE_WITHOUT_PLUS = re.compile(
    r"3(?<![\w+.,]3)58[ ]?[0-9]{1,3}(?:[ -]?[0-9]{2,}){1,4}(?![0-9]|[.,][0-9])"
)

# Finnish national numbers start with 0 and an area or operator code
# ("040", "09", "(09)"). The first group after it has at least three digits
# and the rest at least two: this keeps "klo 09-15" and "01 02 2026" out.
# Dots are not separators, so that dates ("01.02.2026") stay; a full stop
# after the number ends the sentence, a dot before a digit is a decimal.
_PHONE_NATIONAL = re.compile(
    r"[(0](?<![\w+.,/][(0])(?:(?<=\()0[0-9]{1,3}\)|(?<=0)[0-9]{1,3})"
    r"[ /-]{0,3}[0-9]{3,}(?:[ -][0-9]{2,})*(?![0-9]|[.,][0-9])"
)

_PHONE_DIGITS_MIN = 7
_PHONE_DIGITS_MAX = 15


def _hetu_without_sign(match: re.Match[str]) -> str:
    birth, individual, check = match.groups()
    day, month = int(birth[0:2]), int(birth[2:4])
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return match.group(0)
    if check.isalpha() or HETU_CHECK_CHARS[int(birth + individual) % 31] == check.upper():
        return HETU_TOKEN
    return match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    if _PHONE_DIGITS_MIN <= digits <= _PHONE_DIGITS_MAX:
        return PHONE_TOKEN
    return match.group(0)


def _redact_ibans(text: str) -> str:
    pieces = []
    end_of_previous = 0
    for match in _IBAN_AFTER_COUNTRY.finditer(text):
        pieces.append(text[end_of_previous:match.start() - _IBAN_COUNTRY_CHARS])
        pieces.append(IBAN_TOKEN)
        end_of_previous = match.end()
    if not pieces:
        return text
    pieces.append(text[end_of_previous:])
    return "".join(pieces)


def redact(text: str) -> str:
    """Replace identity codes, phone numbers, e-mail addresses and IBANs with tokens."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL_TOKEN, text)
    if not _MAY_HOLD_NUMBER.search(text):
        return text
    # Order matters: an IBAN can hold digit runs that look like a phone
    # number, and an identity code starting with 0 looks like a national
    # phone number.
    text = _redact_ibans(text)
    text = _HETU.sub(HETU_TOKEN, text)
    text = _HETU_WITHOUT_SIGN.sub(_hetu_without_sign, text)
    text = _PHONE_INTERNATIONAL.sub(_phone, text)
    text = _PHONE_COUNTRY_CODE_WITHOUT_PLUS.sub(_phone, text)
    text = _PHONE_NATIONAL.sub(_phone, text)
    return text
