"""Redaction of identity codes, phone numbers, e-mail addresses and IBANs."""

from __future__ import annotations

import time

import pytest

from bot.redact import is_valid_hetu, redact

CHECK_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
# Every century sign with a birth year of its century.
CENTURY_SIGNS = {
    "+": "1899", "-": "1985", "Y": "1972", "X": "1950", "W": "1999", "V": "1930", "U": "1901",
    "A": "2004", "B": "2010", "C": "2021", "D": "2000", "E": "2015", "F": "2023",
}


def make_hetu(day: int, month: int, year: str, sign: str, individual: int) -> str:
    """A valid code, its check character computed here with the mod-31 rule."""
    birth = f"{day:02d}{month:02d}{year[2:]}"
    check = CHECK_CHARS[int(f"{birth}{individual:03d}") % 31]
    return f"{birth}{sign}{individual:03d}{check}"


def test_known_code() -> None:
    # The example code the Digital and Population Data Services Agency publishes.
    assert make_hetu(13, 10, "1952", "-", 308) == "131052-308T"
    assert is_valid_hetu("131052-308T")


@pytest.mark.parametrize("sign", sorted(CENTURY_SIGNS))
def test_every_century_sign_is_valid_and_redacted(sign: str) -> None:
    code = make_hetu(28, 2, CENTURY_SIGNS[sign], sign, 123)
    assert is_valid_hetu(code)
    assert is_valid_hetu(code.lower())
    assert redact(f"mun hetu on {code}, auttakaa") == "mun hetu on [HETU], auttakaa"
    assert redact(f"hetu {code.lower()}") == "hetu [HETU]"
    spaced = f"{code[:6]} {code[6]} {code[7:10]}{code[10]}"
    assert redact(f"tässä {spaced} kiitos") == "tässä [HETU] kiitos"


@pytest.mark.parametrize(
    "code",
    [
        "131052-308U",  # wrong check character
        "310252-308T",  # 31 February
        "131352-308T",  # month 13
        "131052Z308T",  # no such century sign
        "131052-000",   # too short
        "131052-001P",  # individual number 001 is never given
        "",
    ],
)
def test_invalid_codes(code: str) -> None:
    assert not is_valid_hetu(code)


def test_leap_day_depends_on_the_century_sign() -> None:
    assert is_valid_hetu(make_hetu(29, 2, "2000", "A", 222))
    # 1900 was not a leap year.
    assert not is_valid_hetu(make_hetu(29, 2, "1900", "-", 222))


@pytest.mark.parametrize(
    "text",
    [
        "010190-123A",
        "010190 - 123A",
        "010190-123a",
        "010190–123A",        # en dash from a phone keyboard
        "131052-308U",        # wrong check character: still a code, privacy first
        "991390-123A",        # impossible date: same
        "010190-123",         # check character missing
        "010190A123B",
    ],
)
def test_code_shapes_are_redacted_without_validation(text: str) -> None:
    assert redact(f"hetu: {text}.") == "hetu: [HETU]."


def test_code_without_century_sign_needs_a_plausible_date() -> None:
    code = make_hetu(1, 1, "1990", "-", 123)
    assert redact(f"hetu {code.replace('-', ' ')}") == "hetu [HETU]"
    assert redact(f"hetu {code.replace('-', '')}") == "hetu [HETU]"


@pytest.mark.parametrize(
    "phone",
    [
        "040 123 4567",
        "0401234567",
        "040-123 4567",
        "045 12345678",
        "+358 40 123 4567",
        "+358401234567",
        "+358 (0)40 123 4567",
        "00358 40 123 4567",
        "358401234567",
        "09-123 4567",
        "(09) 1234 567",
        "09 1234 5678",
        "03 123 4567",
        "+46 8 123 456 78",
        "+44 20 7946 0958",
    ],
)
def test_phone_numbers(phone: str) -> None:
    assert redact(f"soita {phone} kiitos") == "soita [PHONE] kiitos"
    assert redact(f"numero on {phone}.") == "numero on [PHONE]."


@pytest.mark.parametrize(
    "email",
    ["matti.meikalainen@example.fi", "anna-liisa+kela@posti.example.com", "x_y@sub.domain.org"],
)
def test_email_addresses(email: str) -> None:
    assert redact(f"mailaa {email}, kiitos") == "mailaa [EMAIL], kiitos"


@pytest.mark.parametrize(
    "iban",
    [
        "FI21 1234 5600 0007 85",
        "FI2112345600000785",
        "fi21 1234 5600 0007 85",
        "DE89 3704 0044 0532 0130 00",
        "SE45 5000 0000 0583 9825 7466",
        "GB82 WEST 1234 5698 7654 32",
        "NO93 8601 1117 947",
    ],
)
def test_ibans(iban: str) -> None:
    assert redact(f"tilinumero {iban} EUR") == "tilinumero [IBAN] EUR"


@pytest.mark.parametrize(
    "text",
    [
        "vuokra on 500 euroa",
        "sain 1200 € tukea",
        "velkaa on 10 000 euroa",
        "maksoin 1 250,50 €",
        "vuonna 2025 sain päätöksen",
        "päätös tuli 1.2.2026",
        "päätös tuli 01.02.2026",
        "eräpäivä 15/03/2026",
        "auki klo 9-15",
        "auki klo 09-15 ja 16-18",
        "auki klo 8.00-16.00",
        "hätänumero 112",
        "soita 112 heti",
        "2 lasta ja 3 huonetta",
        "viitenumero 1234 5678 90",
        "0,5 litraa",
        "postinumero 15110 Lahti",
        "ma-pe 8-16",
        "-",
        "",
    ],
)
def test_ordinary_numbers_stay(text: str) -> None:
    assert redact(text) == text


def test_everything_in_one_message() -> None:
    code = make_hetu(5, 6, "1987", "-", 456)
    text = (
        f"Moi, olen Matti ({code}), puh 040 123 4567 tai matti@example.fi. "
        "Tilini FI21 1234 5600 0007 85. Vuokra 650 € erääntyi 1.3.2026, klo 9-15 auki?"
    )
    assert redact(text) == (
        "Moi, olen Matti ([HETU]), puh [PHONE] tai [EMAIL]. "
        "Tilini [IBAN]. Vuokra 650 € erääntyi 1.3.2026, klo 9-15 auki?"
    )


def test_text_without_personal_data_is_returned_unchanged() -> None:
    text = "Hei, mulla ei oo rahaa ruokaan, mitä teen? Ääkköset säilyy: å ä ö."
    assert redact(text) == text


def test_redact_is_fast() -> None:
    messages = [
        "Hei, mulla ei oo rahaa ruokaan ja vuokra 650 euroa on maksamatta, voinko hakea tukea?",
        "Soita mulle 040 123 4567, hetu 010190-123A",
    ]
    runs = 2000
    started = time.perf_counter()
    for _ in range(runs):
        for message in messages:
            redact(message)
    per_message_secs = (time.perf_counter() - started) / (runs * len(messages))
    # A typical message takes a few microseconds; the bound is loose so
    # that a busy CI machine does not make the test flaky.
    assert per_message_secs < 200e-6


# --- Unicode: what phones, word processors and e-mail signatures put in numbers ----------

HETU = make_hetu(13, 8, "1975", "-", 739)  # 130875-739X
SPACES = {
    "no-break": "\u00a0", "narrow no-break": "\u202f", "thin": "\u2009", "figure": "\u2007",
    "en space": "\u2002", "ideographic": "\u3000", "tab": "\t", "line break": "\n",
}
DASHES = {
    "hyphen": "\u2010", "non-breaking hyphen": "\u2011", "figure dash": "\u2012", "en dash": "\u2013",
    "em dash": "\u2014", "horizontal bar": "\u2015", "minus": "\u2212", "small hyphen-minus": "\ufe63",
    "full-width hyphen-minus": "\uff0d",
}


def full_width(text: str) -> str:
    """ASCII digits, letters and "-" / "+" / "@" as their full-width forms."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_phone_with_any_space_is_redacted(space: str) -> None:
    phone = f"040{space}123{space}4567"
    assert redact(f"soita {phone} kiitos") == "soita [PHONE] kiitos"
    assert redact(f"+358{space}40{space}123{space}4567.") == "[PHONE]."


@pytest.mark.parametrize("dash", DASHES.values(), ids=DASHES.keys())
def test_identity_code_with_any_dash_is_redacted(dash: str) -> None:
    assert redact(f"hetu {HETU.replace('-', dash)}, kiitos") == "hetu [HETU], kiitos"
    assert redact(f"hetu {HETU[:6]} {dash} {HETU[7:]}") == "hetu [HETU]"
    assert is_valid_hetu(HETU.replace("-", dash))
    assert redact(f"soita 09{dash}123 4567") == "soita [PHONE]"


@pytest.mark.parametrize("value, token", [
    ("040 123 4567", "[PHONE]"), ("+358 40 123 4567", "[PHONE]"), (HETU, "[HETU]"),
    ("FI21 1234 5600 0007 85", "[IBAN]"), ("matti.meikalainen@example.fi", "[EMAIL]"),
])
def test_full_width_forms_are_redacted(value: str, token: str) -> None:
    assert redact(f"tässä {full_width(value)} kiitos") == f"tässä {token} kiitos"


@pytest.mark.parametrize("text", [
    "040\u200b123\u200b4567",           # zero-width spaces
    "040\u00ad1234567",                  # soft hyphen
    "\u2066040 123 4567\u2069",          # bidi isolates around it
    "٠٤٠١٢٣٤٥٦٧",                        # Arabic-Indic digits
    "०४० १२३ ४५६७",                      # Devanagari digits
    "０４０\u00a0１２３－４５６７",         # full width with a no-break space and a full-width hyphen
    "𝟎𝟒𝟎 𝟏𝟐𝟑 𝟒𝟓𝟔𝟕",                    # mathematical bold digits
])
def test_other_unicode_phone_forms_are_redacted(text: str) -> None:
    assert "[PHONE]" in redact(f"puh {text} kiitos")
    redacted = redact(f"puh {text} kiitos")
    assert not any(c.isdigit() for c in redacted), redacted


def test_only_the_personal_data_changes_in_the_residents_text() -> None:
    # The resident's own spelling, spaces, emoji and punctuation are kept as written.
    text = f"Hyvää\u00a0päivää 😊 — mun hetu on {HETU.replace('-', chr(0x2011))} ja puh 040\u202f123\u202f4567…"
    assert redact(text) == "Hyvää\u00a0päivää 😊 — mun hetu on [HETU] ja puh [PHONE]…"
    # A character that folds to several ("½" is "1⁄2") next to data stays as written.
    assert redact("½ vuotta, soita 0401234567 ½") == "½ vuotta, soita [PHONE] ½"


def test_lone_surrogates_and_odd_characters_do_not_break_redaction() -> None:
    assert redact("hei \ud800 040 123 4567 \udfff") == "hei \ud800 [PHONE] \udfff"
    assert redact("\x00\ufeff\u200d") == "\x00\ufeff\u200d"
