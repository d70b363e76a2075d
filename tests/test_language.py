"""Language detection on the kind of messages residents write."""

from __future__ import annotations

import pytest

from bot.language import detect_language, language_scores

# (text, language). Colloquial Finnish with typos and without umlauts,
# Finland-Swedish, and plain English.
CASES = [
    # Finnish
    ("mulla ei oo rahaa", "fi"),
    ("mita mun pitas tehda", "fi"),
    ("miten haen toimeentulotukea", "fi"),
    ("moi, voinko kysyä yhden asian", "fi"),
    ("en tiiä mistä hakea apua", "fi"),
    ("kela hylkäs mun hakemuksen", "fi"),
    ("vuokra on rästissä kolme kuukautta", "fi"),
    ("onks teillä chat auki huomenna", "fi"),
    ("tarviin jonkun jolle puhua", "fi"),
    ("mä oon työtön ja velkaa on paljon", "fi"),
    ("kiitos avusta", "fi"),
    ("hei", "fi"),
    ("kylla kiitos", "fi"),
    ("mis teidän toimisto on", "fi"),
    ("voiko asumistukea saada jos asun kaverin kanssa", "fi"),
    ("mulle tuli ulosottoon lasku", "fi"),
    ("saisko puhua ihmisen kaa", "fi"),
    ("en jaksa enää tätä byrokratiaa", "fi"),
    ("milloin oon oikeutettu työmarkkinatukeen", "fi"),
    ("poika on 19 ja tarvii opiskelupaikan", "fi"),
    ("mista saa ruoka-apua taalla", "fi"),
    ("onko ohjaamo auki lauantaina", "fi"),
    ("pitaako kelaan soittaa vai voiko hakea netissa", "fi"),
    ("mul on kela paatos mita en ymmarra", "fi"),
    ("terve, kysyisin toimeentulotuesta", "fi"),
    # Swedish, Finland-Swedish included
    ("hej", "sv"),
    ("tack så mycket", "sv"),
    ("jag har inga pengar till hyran", "sv"),
    ("hur ansöker jag om utkomststöd", "sv"),
    ("ja har int pengar till mat", "sv"),
    ("vad ska jag göra nu", "sv"),
    ("kan jag få prata med en människa", "sv"),
    ("var finns ert kontor", "sv"),
    ("jag är arbetslös och behöver hjälp", "sv"),
    ("min son behöver en studieplats", "sv"),
    ("hejsan, har ni öppet idag", "sv"),
    ("det är svårt att fylla i blanketten", "sv"),
    ("int vet ja hur man gör", "sv"),
    ("jag fick ett beslut från fpa som jag inte förstår", "sv"),
    ("skulderna växer hela tiden", "sv"),
    ("jag bor ensam och känner mig ensam", "sv"),
    ("tack för hjälpen", "sv"),
    ("är du en robot", "sv"),
    ("finns det socialhandledning på svenska", "sv"),
    ("hej då", "sv"),
    # English
    ("hi", "en"),
    ("thanks", "en"),
    ("I have no money for food", "en"),
    ("how do I apply for housing allowance", "en"),
    ("can I talk to a real person", "en"),
    ("what are your opening hours", "en"),
    ("i lost my job and dont know what to do", "en"),
    ("my rent is late, what can I do", "en"),
    ("is this a bot?", "en"),
    ("where is the office", "en"),
    ("thank you so much", "en"),
    ("my son needs help finding a study place", "en"),
    ("im unemployed and the debts keep growing", "en"),
    ("hello, anyone there", "en"),
    ("who decides about social assistance", "en"),
    ("bye", "en"),
    ("Kela rejected my application", "en"),
]


def test_enough_cases_per_language() -> None:
    assert len(CASES) >= 60
    for language in ("fi", "sv", "en"):
        assert sum(1 for _, expected in CASES if expected == language) >= 15


def test_accuracy_without_any_hint() -> None:
    wrong = [
        (text, expected, detect_language(text), language_scores(text))
        for text, expected in CASES
        if detect_language(text) != expected
    ]
    accuracy = 1 - len(wrong) / len(CASES)
    assert accuracy >= 0.97, wrong


# A resident who switches language is answered in the new one; a single
# weak word ("bye") is too little to switch on.
CLEAR_CASES = [case for case in CASES if len(case[0].split()) >= 2]


@pytest.mark.parametrize(("text", "expected"), CLEAR_CASES)
def test_clear_messages_win_over_the_conversation_language(text: str, expected: str) -> None:
    other = next(language for language in ("fi", "sv", "en") if language != expected)
    assert detect_language(text, hint=other, previous=other) == expected


@pytest.mark.parametrize("text", ["ok", "OK!", "?", "112", "/affirm", "/request_counsellor", "", "   ", ":)", "👍"])
@pytest.mark.parametrize("language", ["fi", "sv", "en"])
def test_short_messages_keep_the_conversation_language(text: str, language: str) -> None:
    other = next(candidate for candidate in ("fi", "sv", "en") if candidate != language)
    assert detect_language(text, hint=other, previous=language) == language
    assert detect_language(text, hint=language) == language
    assert detect_language(text) == "fi"


@pytest.mark.parametrize("language", ["fi", "sv"])
def test_ja_follows_the_conversation(language: str) -> None:
    # Finnish "and", Swedish "yes": a lone "ja" says nothing about the language.
    assert detect_language("ja", previous=language) == language


def test_greetings_and_thanks() -> None:
    assert detect_language("hei", previous="sv") == "fi"
    assert detect_language("hej", previous="fi") == "sv"
    assert detect_language("hi", previous="fi") == "en"
    assert detect_language("kiitos", previous="en") == "fi"
    assert detect_language("tack", previous="fi") == "sv"
    assert detect_language("thanks", previous="sv") == "en"


def test_en_is_read_from_context() -> None:
    assert detect_language("en tiedä") == "fi"
    assert detect_language("en oo varma") == "fi"
    assert detect_language("jag vill ha en lägenhet") == "sv"


def test_unknown_hint_is_ignored() -> None:
    assert detect_language("ok", hint="de") == "fi"
    assert detect_language("ok", hint="de", previous="en") == "en"


def test_scores_are_per_language() -> None:
    scores = language_scores("mulla ei oo rahaa")
    assert set(scores) == {"fi", "sv", "en"}
    assert scores["fi"] > scores["sv"] and scores["fi"] > scores["en"]
    assert language_scores("") == {"fi": 0.0, "sv": 0.0, "en": 0.0}


def test_redaction_tokens_are_not_words() -> None:
    # The bot detects the language of the redacted text.
    assert language_scores("[PHONE] [EMAIL] [HETU] [IBAN]") == {"fi": 0.0, "sv": 0.0, "en": 0.0}
    assert detect_language("[PHONE]", previous="sv") == "sv"
    assert detect_language("soita mulle [PHONE]") == "fi"
