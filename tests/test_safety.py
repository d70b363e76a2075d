"""The crisis lexicon: every crisis phrasing is caught, near misses are not."""

from __future__ import annotations

import dataclasses
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
