"""The linear-time redaction against the backtracking one it replaced.

On short input the old patterns (tests/text/redact_reference.py) cost
nothing, so they serve as an oracle: on ASCII text the new `bot.redact`
must give exactly the same result, and on the Unicode forms of the same text
(no-break spaces, Unicode dashes, full-width digits) it must redact at least
the same personal data."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.redact import redact

from . import redact_reference as reference

# Pieces that make up phone numbers, identity codes, IBANs and addresses, and
# the near misses around them (dates, times, decimals, sums).
PIECES = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=12),
    st.sampled_from([" ", "-", "+", "(0)", "(09)", ".", ",", "/", "00", "358", "+358 ", "040 ", "FI21 ",
                     "A", "a", "x", "Y", "@", "@example.fi", "matti", ".fi", "_", "klo ", "1.2.2026",
                     "010190-123A", "010190 123A", "0401234567", "DE89 3704 0044 0532 0130 00"]),
    st.text(alphabet="0123456789 -+()./,aAFIxY@", min_size=1, max_size=6),
)
SHORT_TEXTS = st.lists(PIECES, min_size=1, max_size=8).map("".join)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHORT_TEXTS)
def test_same_result_as_the_backtracking_patterns_on_ascii(text: str) -> None:
    assert redact(text) == reference.redact(text)


NBSP_FORMS = {" ": "\u00a0", "-": "\u2011"}


@settings(max_examples=400, deadline=None)
@given(SHORT_TEXTS)
def test_unicode_forms_are_redacted_like_their_ascii_forms(text: str) -> None:
    """Spaces as no-break spaces and "-" as non-breaking hyphens: the same tokens, in the same places."""
    unicode_text = "".join(NBSP_FORMS.get(c, c) for c in text)
    expected = reference.redact(text)
    got = redact(unicode_text)
    assert "".join(" " if c == "\u00a0" else "-" if c == "\u2011" else c for c in got) == expected


@settings(max_examples=400, deadline=None)
@given(SHORT_TEXTS)
def test_full_width_digits_are_redacted_like_ascii_digits(text: str) -> None:
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text)
    got = redact(wide)
    expected = reference.redact(text)
    assert "".join(chr(ord(c) - 0xFEE0) if "０" <= c <= "９" else c for c in got) == expected
