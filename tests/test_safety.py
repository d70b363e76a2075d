"""The crisis lexicon: every crisis phrasing is caught, near misses are not."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest
import yaml

from bot.safety import CATEGORY_ORDER, CrisisHit, crisis_check, normalise

CRISIS_CASES_FILE = Path(__file__).parent / "data" / "crisis_cases.yml"

# (text, language, category)
CRISIS = [
    # Finnish: standard, colloquial, typos, missing umlauts, inflections.
    ("mä haluun kuolla", "fi", "suicide"),
    ("Haluaisin vaan kuolla pois", "fi", "suicide"),
    ("en jaksa enää elää", "fi", "suicide"),
    ("en jaksa elaa", "fi", "suicide"),
    ("mietin itsemurhaa", "fi", "suicide"),
    ("oon miettiny itsaria", "fi", "suicide"),
    ("mä tapan itteni", "fi", "suicide"),
    ("aion tappaa itseni tänään", "fi", "suicide"),
    ("haluun lopettaa kaiken", "fi", "suicide"),
    ("haluan päättää elämäni", "fi", "suicide"),
    ("ois parempi jos mua ei ois", "fi", "suicide"),
    ("kaikille ois parempi ilman mua", "fi", "suicide"),
    ("mulla ei oo rahaa ja en jaksa enää elää", "fi", "suicide"),
    ("ulosotto vei kaiken, haluun vaa kuolla!!!", "fi", "suicide"),
    ("ajattelin hypätä sillalta", "fi", "suicide"),
    ("meinaan hirttää itteni", "fi", "suicide"),
    ("otin kaikki lääkkeet mitä kotona oli", "fi", "suicide"),
    ("HALUUUN KUOLLAAA", "fi", "suicide"),
    ("viiltelen taas", "fi", "self_harm"),
    ("mulla on tapana viillellä", "fi", "self_harm"),
    ("satutan itseäni kun ahdistaa", "fi", "self_harm"),
    ("mies lyö mua", "fi", "violence"),
    ("poikaystävä hakkaa minua", "fi", "violence"),
    ("exä uhkaa tappaa mut", "fi", "violence"),
    ("pelkään miestäni", "fi", "violence"),
    ("perheväkivaltaa kotona", "fi", "violence"),
    ("en uskalla mennä kotiin", "fi", "violence"),
    ("ei oo paikkaa missä nukkua tänä yönä", "fi", "homeless_tonight"),
    ("ei ole yöpaikkaa ensi yöksi", "fi", "homeless_tonight"),
    ("nukun ulkona tänään", "fi", "homeless_tonight"),
    ("meidät häädettiin tänään kadulle", "fi", "homeless_tonight"),
    ("mis mä nukun tänä yönä", "fi", "homeless_tonight"),
    ("en oo syöny kolmeen päivään", "fi", "no_food"),
    ("ei ruokaa tänään mitään", "fi", "no_food"),
    ("kotona ei oo yhtään ruokaa ja lapsilla nälkä", "fi", "no_food"),
    ("henkeni on vaarassa", "fi", "acute_danger"),
    ("mies uhkaa puukolla", "fi", "acute_danger"),
    # Swedish, Finland-Swedish included.
    ("jag tänker på självmord", "sv", "suicide"),
    ("jag vill ta livet av mig", "sv", "suicide"),
    ("ja vill bara dö", "sv", "suicide"),
    ("orkar inte leva längre", "sv", "suicide"),
    ("jag vill inte vakna mer", "sv", "suicide"),
    ("alla har det bättre utan mig", "sv", "suicide"),
    ("jag skadar mig själv", "sv", "self_harm"),
    ("han slår mig", "sv", "violence"),
    ("min sambo hotade att döda mig", "sv", "violence"),
    ("jag har ingenstans att sova i natt", "sv", "homeless_tonight"),
    ("vi har ingen mat hemma", "sv", "no_food"),
    ("har inte ätit på tre dagar", "sv", "no_food"),
    # English.
    ("I want to kill myself", "en", "suicide"),
    ("i'm having suicidal thoughts", "en", "suicide"),
    ("I just want to end it all", "en", "suicide"),
    ("i want to die", "en", "suicide"),
    ("I dont want to live anymore", "en", "suicide"),
    ("everyone would be better off without me", "en", "suicide"),
    ("I have debts and no money and I want to end it all", "en", "suicide"),
    ("I keep hurting myself", "en", "self_harm"),
    ("self harm again last night", "en", "self_harm"),
    ("he hits me when he drinks", "en", "violence"),
    ("my husband threatened to kill me", "en", "violence"),
    ("I'm scared of my boyfriend", "en", "violence"),
    ("I have nowhere to sleep tonight", "en", "homeless_tonight"),
    ("we got evicted today", "en", "homeless_tonight"),
    ("no food today for the kids", "en", "no_food"),
    ("I have not eaten for days", "en", "no_food"),
    ("I am not safe at home", "en", "acute_danger"),
    # Mixed topics, past tense beside a present danger, third persons.
    ("kumppani ei päästä mua ulos ja lyö jos yritän lähteä", "fi", "acute_danger"),
    ("olin väkivaltaisessa suhteessa vuosia sitten ja nyt uus mies lyö mua", "fi", "violence"),
    ("kaveri sanoo et aikoo tappaa ittensä tänään", "fi", "suicide"),
    ("mulla on itsemurha-ajatuksia ja velkoja", "fi", "suicide"),
    ("kela hylkäs hakemuksen, en mä kuitenkaan oo täällä enää kauaa", "fi", "suicide"),
    ("jag har tabletterna framme", "sv", "suicide"),
    ("nobody would even notice if I was gone", "en", "suicide"),
    ("my husband wont let me leave the flat", "en", "acute_danger"),
]

NOT_CRISIS = [
    ("kuolinpesän asiat ja perunkirjoitus", "fi"),
    ("isäni kuoli ja hautajaiskulut pitäisi maksaa", "fi"),
    ("tappelu naapurin kanssa ratkesi onneksi", "fi"),
    ("mulla ei oo rahaa ruokaan", "fi"),
    ("en jaksa odottaa Kelan päätöstä", "fi"),
    ("lopetin kaiken juomisen viime vuonna", "fi"),
    ("Kela lopettaa kaiken tuen ensi kuussa", "fi"),
    ("paras tapa hakea asumistukea", "fi"),
    ("tarvitsen viltin ja vaatteita", "fi"),
    ("vuokra on maksamatta ja pelkään häätöä", "fi"),
    ("en pysty elämään tällä rahalla", "fi"),
    ("olen asunnoton, miten haen asuntoa", "fi"),
    ("miten haen toimeentulotukea", "fi"),
    ("isä ei ole enää elossa, kuka hoitaa pesän", "fi"),
    ("det slog mig att hyran är hög", "sv"),
    ("jag har inga pengar till mat", "sv"),
    ("hur ansöker jag om bostadsbidrag", "sv"),
    ("jag vill leva ett vanligt liv med jobb", "sv"),
    ("det är svalt ute idag", "sv"),
    ("I'm just killing time while I wait", "en"),
    ("this bill is killing me lol", "en"),
    ("I have no money for food", "en"),
    ("we are in danger of losing our flat", "en"),
    ("it hit me how expensive rent is", "en"),
    ("I don't want to live with my parents anymore", "en"),
    ("I don't want to go on holiday this year", "en"),
    ("how do I apply for housing allowance", "en"),
    ("my father died and I need help with the estate", "en"),
    ("they threatened me with eviction", "en"),
    ("tapasin itseni kaltaisia ihmisiä vertaisryhmässä", "fi"),
    ("poika potki palloa pihalla", "fi"),
    ("isä hakkaa puita mökillä", "fi"),
    ("vuokranantaja uhkaa häädöllä", "fi"),
    ("Kela uhkaa periä tuet takaisin", "fi"),
    ("en halua herätä aikaisin", "fi"),
    ("vauva itkee ja herää öisin, ettei vauva herää pitää olla hiljaa", "fi"),
    ("nälkäpalkalla töissä ja vuokra on kallis", "fi"),
    ("olin lapsena väkivaltaisessa perheessä, nyt haen opiskelupaikkaa", "fi"),
    ("min bror tog livet av sig för flera år sedan", "sv"),
    ("jag hoppar av skolan", "sv"),
    ("is there no food bank nearby?", "en"),
    ("my son hit me up for money again", "en"),
    ("I could kill for a coffee", "en"),
]


@pytest.mark.parametrize(("text", "language", "category"), CRISIS)
def test_crisis_phrasing_is_caught(text: str, language: str, category: str) -> None:
    hit = crisis_check(text)
    assert hit is not None, f"missed crisis: {text!r} (normalised {normalise(text)!r})"
    assert hit.category == category, (text, hit)
    assert hit.language == language, (text, hit)


@pytest.mark.parametrize(("text", "language"), NOT_CRISIS)
def test_near_miss_is_not_flagged(text: str, language: str) -> None:
    assert crisis_check(text) is None, f"false alarm: {text!r} -> {crisis_check(text)}"


def test_inline_cases_cover_all_languages_and_categories() -> None:
    assert len(CRISIS) >= 30 and len(NOT_CRISIS) >= 15
    assert {lang for _, lang, _ in CRISIS} == {"fi", "sv", "en"}
    assert {category for _, _, category in CRISIS} == set(CATEGORY_ORDER)


def test_most_severe_category_wins() -> None:
    # No food and violence are also in the message; suicide is the most severe.
    hit = crisis_check("ei oo ruokaa, mies lyö mua ja haluun kuolla")
    assert hit is not None and hit.category == "suicide"
    hit = crisis_check("nowhere to sleep tonight and no food, he hits me")
    assert hit is not None and hit.category == "violence"


def test_topic_words_count_unless_the_context_is_not_acute() -> None:
    assert crisis_check("itsetuhoisia ajatuksia taas") is not None
    assert crisis_check("nuorena mulla oli itsetuhoisia ajatuksia") is None
    assert crisis_check("domestic violence at home") is not None
    assert crisis_check("essay about domestic violence") is None
    # A statement counts even beside a not-acute context.
    hit = crisis_check("years ago I was in an abusive relationship and now he hits me again")
    assert hit is not None and hit.category == "violence"


def test_hit_is_frozen_and_carries_the_match() -> None:
    hit = crisis_check("Haluun KUOLLA.")
    assert isinstance(hit, CrisisHit)
    assert hit.matched == "halun kuola"
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.category = "no_food"  # type: ignore[misc]


def test_normalise_folds_umlauts_punctuation_and_repeats() -> None:
    assert normalise("Hälúun   KUOLLAAA!!!") == "halun kuola"
    assert normalise("Don't") == "dont"
    assert normalise("självmord?") == "sjalvmord"
    assert normalise("  ...  ") == ""


@pytest.mark.parametrize("text", ["", "   ", "?", "112", "/affirm", "ok"])
def test_empty_and_trivial_messages(text: str) -> None:
    assert crisis_check(text) is None


def test_check_is_fast() -> None:
    message = (
        "Hei, mulla ei oo rahaa ruokaan ja vuokra on maksamatta, voinko hakea "
        "toimeentulotukea Kelalta vai pitääkö mennä sosiaalitoimistoon?"
    )
    runs = 500
    started = time.perf_counter()
    for _ in range(runs):
        crisis_check(message)
    per_message_secs = (time.perf_counter() - started) / runs
    # Generous bound so a loaded CI machine does not make this flaky; a
    # typical message takes well under a millisecond.
    assert per_message_secs < 0.005


def _shared_cases() -> dict:
    with CRISIS_CASES_FILE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.skipif(not CRISIS_CASES_FILE.exists(), reason="tests/data/crisis_cases.yml not written yet")
def test_shared_crisis_cases_are_caught() -> None:
    cases = _shared_cases().get("crisis") or []
    assert cases, "crisis_cases.yml has no crisis items"
    missed = [case["text"] for case in cases if crisis_check(case["text"]) is None]
    assert not missed, f"{len(missed)} of {len(cases)} crisis cases missed: {missed}"


@pytest.mark.skipif(not CRISIS_CASES_FILE.exists(), reason="tests/data/crisis_cases.yml not written yet")
def test_shared_not_crisis_cases_are_not_flagged() -> None:
    cases = _shared_cases().get("not_crisis") or []
    assert cases, "crisis_cases.yml has no not_crisis items"
    flagged = {case["text"]: crisis_check(case["text"]) for case in cases}
    flagged = {text: hit for text, hit in flagged.items() if hit is not None}
    assert not flagged, f"{len(flagged)} of {len(cases)} near misses flagged: {flagged}"


# ---------------------------------------------------------------------------
# The lexicon file: checked when loaded, a broken entry is a clear error

import random
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.content import Content, ContentError
from bot.safety import DEFAULT_LEXICON_PATH, CrisisLexicon, LexiconError, default_lexicon

EVAL_FILE = Path(__file__).parent / "data" / "crisis_eval.yml"
FRESH_FILES = [Path(__file__).parent / "data" / name
               for name in ("crisis_fresh.yml", "crisis_fresh2.yml", "crisis_fresh3.yml")]


def _minimal(**overrides) -> dict:
    document = {"categories": {"suicide": {"statements": {"fi": ["haluan kuolla"]}}}}
    document.update(overrides)
    return document


@pytest.mark.parametrize(("document", "message"), [
    (_minimal(categories={"suicide": {"statements": {"fi": ["haluan (?!syödä)kuolla"]}}}),
     "suicide.statements.fi entry 1: not a valid RE2 pattern"),
    (_minimal(categories={"suicide": {"statements": {"fi": [r"(\w+)\1"]}}}), "not a valid RE2 pattern"),
    (_minimal(categories={"suicide": {"statements": {"fi": ["<fi_me> kuolla"]}}}), "unknown word list <fi_me>"),
    (_minimal(categories={"suicide": {"statements": {"sv": ["(?:dö|)"]}}}), "suicide.statements.sv entry 1: matches the ordinary message 'hei'"),
    (_minimal(categories={"suicide": {"statements": {"en": ["(?:hi|hello) there|hi"]}}}),
     "suicide.statements.en entry 1: matches the ordinary message 'hi'"),
    (_minimal(categories={"suicide": {"statements": {"fi": [{"pattern": "x y", "unles_after": "z"}]}}}),
     "unknown key(s) ['unles_after']"),
    (_minimal(categories={"suicide": {"statements": {"fi": [{"near": ["a b"], "within": 3}]}}}),
     "'near' must be a list of two phrases"),
    (_minimal(categories={"suicide": {"statements": {"de": ["sterben"]}}}), "expected languages fi, sv, en"),
    (_minimal(categories={"sadness": {"statements": {"fi": ["itken"]}}}), "unknown categories ['sadness']"),
    (_minimal(categories={"suicide": {"statements": {"fi": [""]}}}), "the pattern must be a non-empty text"),
    (_minimal(risk_words={"suicide": {"fi": ["kuol\\w*("]}}), "risk_words.suicide.fi entry 1"),
    (_minimal(gap_words=40), "gap_words must be a whole number"),
    ([], "expected a mapping at the top"),
])
def test_a_broken_lexicon_entry_is_a_clear_error(document, message):
    with pytest.raises(LexiconError) as error:
        CrisisLexicon.from_document(document)
    assert message in str(error.value)


def test_a_broken_lexicon_file_stops_content_loading_and_the_bot_keeps_the_old_one(tmp_path):
    directory = tmp_path / "training_data"
    shutil.copytree(Path(DEFAULT_LEXICON_PATH).parent, directory)
    good = Content.load(directory)
    assert good.lexicon is not None and good.lexicon.check("haluun kuolla") is not None
    path = directory / "crisis_lexicon.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("- kuolla pois", "- kuolla (?<!x)pois", 1),
                    encoding="utf-8")
    with pytest.raises(ContentError, match=r"crisis_lexicon.yml: suicide.statements.fi entry \d+: not a valid RE2"):
        Content.load(directory)
    path.write_text("categories: [", encoding="utf-8")
    with pytest.raises(ContentError, match="not valid YAML"):
        Content.load(directory)
    assert good.lexicon.check("haluun kuolla") is not None  # what was loaded stays usable


def test_the_project_lexicon_loads_with_every_category_and_language():
    lexicon = CrisisLexicon.load(DEFAULT_LEXICON_PATH)
    assert lexicon.entry_count > 300
    for category, text in [("suicide", "en jaksa enää elää"), ("self_harm", "jag skadar mig själv"),
                           ("acute_danger", "I fear for my life"), ("violence", "mies lyö mua"),
                           ("homeless_tonight", "nowhere to sleep tonight"), ("no_food", "vi har ingen mat")]:
        hit = lexicon.check(text)
        assert hit is not None and hit.category == category, (text, hit)


def test_risk_words_name_a_category_but_ordinary_words_do_not():
    lexicon = default_lexicon()
    assert lexicon.risk("mulla on pillereitä tässä") == "suicide"
    assert lexicon.risk("hungry and the money is gone") == "no_food"
    assert lexicon.risk("how do I apply for housing allowance") is None
    assert lexicon.risk("vilka är Polkus öppettider") is None  # 'viill-' folds to 'vil-': not a word stem here


# ---------------------------------------------------------------------------
# Linear time: adversarial messages of the maximum length

MAX_CHARS = 2000
# The slowest of a few runs must stay under this: ordinary messages take
# about 0.02 ms, the worst crafted ones about 2 ms on these machines.
LIMIT_SECS = 0.010


def _worst_time(text: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        crisis_check(text)
        best = min(best, time.perf_counter() - started)
    return best


def _lexicon_words() -> list[str]:
    words = set()
    for text in ("haluun kuolla tappaa itteni lopettaa kaiken tuen en jaksa elää ei oo ruokaa nälkäpalkka "
                 "mies lyö vetoa rumpuja no food bank hit me up kicked me out he threatened me with eviction "
                 "jag vill dö det slog mig tar livet av mig byråkratin i natt sova ute tonight homeless years ago "
                 "suicide committed teki itsemurhan viillot köysi sillalta hyppään pills rope bridge jump "
                 "lapsi vauva barnet the kids not safe ilman mua parempi jos mua ei ois säga adjö goodbye"):
        words.add(text)
    return sorted(" ".join(words).split())


WORDS = _lexicon_words()
CRAFTED = {
    "one letter": "a" * MAX_CHARS,
    "letters and spaces": ("ab " * MAX_CHARS)[:MAX_CHARS],
    "accented run": "ä" * MAX_CHARS,
    "digits": "9" * MAX_CHARS,
    "punctuation": "!?" * (MAX_CHARS // 2),
    "repeated statement": ("haluun kuolla " * 200)[:MAX_CHARS],
    "repeated exception": ("lopettaa kaiken tuen " * 100)[:MAX_CHARS],
    "repeated exception before": ("teki itsemurhan " * 130)[:MAX_CHARS],
    "repeated near exception": ("mies lyö vetoa " * 150)[:MAX_CHARS],
    "repeated near pairs": ("sillalle " * 50 + "hyppään " * 50) * 2,
    "gap words": ("en " + "x " * 3 + "jaksa ") * 120,
    "long words": ("kuol" + "a" * 400 + " ") * 4,
    "no spaces": "haluunkuolla" * 160,
    "many entries": " ".join(random.Random(7).choice(WORDS) for _ in range(400))[:MAX_CHARS],
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_messages_of_the_maximum_length_take_a_few_milliseconds(name):
    text = CRAFTED[name][:MAX_CHARS]
    crisis_check(text)  # warm: RE2 builds its DFA states lazily
    assert _worst_time(text) < LIMIT_SECS, f"{name}: {_worst_time(text) * 1000:.1f} ms"
    default_lexicon().risk(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=12)), min_size=1, max_size=400),
       st.sampled_from([" ", "", "  ", "-", "\u00a0", "ä"]))
def test_any_message_of_lexicon_words_and_noise_takes_a_few_milliseconds(parts, separator):
    text = separator.join(parts)[:MAX_CHARS]
    crisis_check(text)
    assert _worst_time(text) < LIMIT_SECS, f"{_worst_time(text) * 1000:.1f} ms for {text[:80]!r}..."


# ---------------------------------------------------------------------------
# The evaluation sets, at the lexicon level (the whole path: python -m bot evaluate)

def _eval(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _texts(document: dict, part: str):
    for language, categories in document[part].items():
        for category, texts in categories.items():
            for text in texts:
                yield language, category, text


def test_the_evaluation_sets_are_large_labelled_and_apart_from_training():
    document = _eval(EVAL_FILE)
    for part in ("crisis", "not_crisis"):
        for language in ("fi", "sv", "en"):
            assert sum(len(t) for t in document[part][language].values()) >= 150, (part, language)
    assert set(document["crisis"]["fi"]) == {"suicide_direct", "suicide_indirect", "plan_means", "self_harm",
                                             "violence", "child_danger", "no_food", "no_shelter"}

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())

    trained = {norm(t) for t in Content.load(Path(DEFAULT_LEXICON_PATH).parent).example_texts()}
    for path in (EVAL_FILE, *FRESH_FILES):
        leaked = [t for part in ("crisis", "not_crisis") for _, _, t in _texts(_eval(path), part) if norm(t) in trained]
        assert not leaked, f"{path.name} lines found in the training data: {leaked}"


def test_the_lexicon_catches_every_crisis_of_the_evaluation_set_and_no_hard_negative():
    document = _eval(EVAL_FILE)
    missed = [(lang, cat, text) for lang, cat, text in _texts(document, "crisis") if crisis_check(text) is None]
    assert not missed, f"{len(missed)} crisis messages missed: {missed}"
    flagged = [(lang, cat, text, crisis_check(text)) for lang, cat, text in _texts(document, "not_crisis")
               if crisis_check(text) is not None]
    assert not flagged, f"{len(flagged)} hard negatives flagged: {flagged}"


@pytest.mark.parametrize("text", [
    "ｈａｌｕｕｎ ｋｕｏｌｌａ",  # full-width
    "haluun\u00a0kuolla",  # no-break space
    "haluun kuo\u200blla",  # zero-width space inside a word
    "haluun kuol\u00adla",  # soft hyphen
    "HALUUN KUOLLA\ufeff",
])
def test_unicode_forms_of_a_crisis_message_are_caught(text):
    hit = crisis_check(text)
    assert hit is not None and hit.category == "suicide", (text, normalise(text))
