"""Which language a resident writes in: Finnish, Swedish or English.

The bot answers in the language of the message, so this runs on every
message. Residents write short, colloquial, often without ä and ö ("mita mun
pitas tehda"), and Finland-Swedish has its own words ("int", "ja" for
"jag"), so a general-purpose detector trained on edited text does badly
here. This one scores function words and character cues per language:

- a word in a language's list scores for it; a word in two lists ("en" is
  Finnish "I don't" and a Swedish article, "ja" is Finnish "and" and Swedish
  "yes") is split between them;
- other words score by their shape: "å" is Swedish, Finnish case endings
  ("-ssa", "-lle"), double vowels and ä/ö lean Finnish, "th", "w" and
  "-ing" lean English, "sj-"/"tj-" and "-ning" lean Swedish.

A message with too little evidence ("ok", "?", "112", a button payload)
keeps the language of the conversation so far (`previous`), else the one
chosen in the widget (`hint`), else Finnish: switching language on an "ok"
would be worse than any guess.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import groupby

from bot.redact import EMAIL_TOKEN, HETU_TOKEN, IBAN_TOKEN, PHONE_TOKEN
from bot.types import LANGUAGES

DEFAULT_LANGUAGE = "fi"

# Below this score a message says too little to go by.
MIN_EVIDENCE = 1.0
# When the two best languages are closer than this, the conversation's
# language wins if it is one of them.
MIN_MARGIN = 0.75

# Word weights: distinctive function words and greetings count more.
_STRONG = 1.5
_NORMAL = 1.0

_FI_STRONG = """
mä mää mie minä mun mulla mul mulle multa mua sä sää sie sinä sun sulla sul sulle sua
ei oo oon oot ollaan olen olet olla ollu ollut olin olisin ois olis onko onks oonko ootko
tää tämä tämän nää nämä toi tuo noi mitä mikä miten mites miks miksi missä mistä mihin
kiitos kiitti kiitoksia moi moikka moro morjens hei heippa heido terve moikka hyvää päivää
kyllä joo juu että mutta mut koska kun jos vaan vain myös kanssa kans niin sit sitten
voinko voiko voisinko saanko saako pitää pitäis pitäisi pitäs täytyy tarviin tarvitsen
tarvii haluun haluan haluaisin haluisin en tiedä tiiä
""".split()

_FI_NORMAL = """
me te he se ne hän minun sinun meillä teillä heillä meidän teidän niiden sen siitä sille
on ole oli olisi ollaanko olisko oisko onhan ovat olette olemme oisin oisi voi voin voit
voisin vois voisko voitko voitteko voisitko saa saan saisin saisko saanks saiks saatko
pitäiskö pitääkö pitäskö täytyykö tarvis tarttis tarviinko tarvitseeko haluaa haluisin
haluatko mikä kuka kenelle keneltä kenen kuinka paljon paljo vähän milloin mihin mitenkä
ja tai eli siis vai ku koska ettei etten ettet jotta vaikka vielä viel enää enään ihan tosi
aika jo jotain jotakin mitään mitää kaikki kaiken yhtään ollenkaan nyt tänään huomenna
eilen aina joskus usein heti pian kohta ennen jälkeen vasta sitte tota niinku ni nii sori
anteeks anteeksi okei okkei no apua apu avun rahaa raha rahat rahan rahoja asunto asuntoa
asunnon vuokra vuokraa vuokran kela kelan kelalta kelaan kelasta hakea haen hakemus
hakemuksen hakemusta tuki tukea tuen toimeentulotuki toimeentulotukea asumistuki
asumistukea työ töitä työtä työtön työttömänä tehdä teen tee tehty tiedän tiiän osaa osaan
ymmärrä ymmärrän auttaa auta autatko kertoa kerro kerrotko kysyä kysyn kysymys ihminen
ihmisen ihmistä kanssa luona kautta takia vuoksi ilman mukaan asti saakka päivää viikko
viikon kuukausi kuussa vuosi vuotta lapsi lapset lasten perhe äiti isä mies vaimo hyvä
huono kiva kiire hätä mulle sulle heille hänelle meille teille jotenkin jossain missään
mitäs mikäs kukaan kenellä joku jonkun jonkin semmonen sellainen tällainen tämmönen hei
juttu asia asiaa asiat asiassa homma kaikkee kaikkea muuta muut toinen joka jota jonka
""".split()

_SV_STRONG = """
jag och inte int är hej hejsan tjena tack tackar hur vad varför vem vilken vilka
det att för med mig mej dig dej inga ingen inget också kanske måste skulle behöver
""".split()

_SV_NORMAL = """
du han hon vi ni de dom den denna detta dessa sig oss er dem min mitt mina din ditt dina
sin sitt sina vår vårt våra er ert era
är var har hade kan kunde ska skall vill ville får fick gör gjorde blir blev bli vara
finns fanns ha få göra säga sa veta vet tror tycker går gick kommer kom ta tar söka
söker ansöka ansöker hjälp hjälpa hjälper pengar bostad lägenhet hyra hyran jobb arbete
arbetslös barn familj mamma pappa man kvinna fru
på av om till från hos efter innan under över utan mot genom vid åt
eller men så när där här nu då sen sedan redan bara mycket lite mer mest mindre
någon något några alla allt hela varje annan annat andra samma
ja nej jo nå okej tja en ett i visst javisst absolut precis gärna god morgon kväll
idag imorgon igår vecka veckan månad år dag dagen natt kväll morgon
bra dålig dåligt fint snälla förlåt ursäkta
kela kelas socialen socialbyrån stöd bidrag utkomststöd bostadsbidrag ansökan blankett
hem hemma borta ute inne igen fortfarande aldrig alltid ofta
varit vart vilket sådan sådant sånt
""".split()

_EN_STRONG = """
the and is are i'm im i my me you your how what can hi hello hey thanks thank please
don't dont doesn't doesnt isn't isnt can't cant won't wont i've ive i'd id i'll ill
""".split()

_EN_NORMAL = """
a an of to in for with on at by from about into over after before without under
it this that these those there here they them their we our us he she his her him its
was were be been being am do does did have has had will would should could may might must
not no yes yeah yep nope sure fine good bad
who where when why which whom whose
need want get got help money rent flat apartment house home job work unemployed benefit
benefits apply application form office social services allowance support pay paid
some any all every more most much many few little other another same such
if or but so because than then also just only still already again very too really
know think say said tell told ask asked go going come came give gave take took make made
find found see look looking call phone talk speak person human bot
today tomorrow yesterday week month year day night morning evening
whats what's thats that's number numbers address open opening hours
bye goodbye cheers sorry excuse thx ty anyone anybody someone somebody everyone
""".split()

_WORDS: dict[str, dict[str, float]] = {}


def _fold(word: str) -> str:
    # Finnish residents often type without dots; Finland-Swedes rarely do,
    # so only ä and ö are folded, and "å" stays a Swedish cue.
    return word.replace("ä", "a").replace("ö", "o")


def _build_word_table() -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}

    def add(language: str, words: list[str], weight: float) -> None:
        for word in words:
            for form in {word, word.replace("'", "")} | ({_fold(word)} if language == "fi" else set()):
                scores = table.setdefault(form, {})
                scores[language] = max(scores.get(language, 0.0), weight)

    add("fi", _FI_STRONG, _STRONG)
    add("fi", _FI_NORMAL, _NORMAL)
    add("sv", _SV_STRONG, _STRONG)
    add("sv", _SV_NORMAL, _NORMAL)
    add("en", _EN_STRONG, _STRONG)
    add("en", _EN_NORMAL, _NORMAL)
    # A word of two or three languages says little: split its weight.
    for scores in table.values():
        if len(scores) > 1:
            for language in scores:
                scores[language] /= len(scores)
    return table


_WORDS = _build_word_table()

# Language runs on redacted text; "[PHONE]" must not count as English.
_REDACTION_TOKENS = (HETU_TOKEN, PHONE_TOKEN, EMAIL_TOKEN, IBAN_TOKEN)

# Resident text is untrusted and up to 2,000 characters long, so nothing here
# may take more than linear time on any input. The word pattern is the one
# regular expression: its possessive quantifiers ("++", "*+") never give back
# what they consumed, and its two character classes are disjoint from "-",
# so each position is read once and Python's backtracking engine has nothing
# to backtrack into. Everything else is plain string operations.
#
# Hyphenated compounds ("a-klinikka", "ruoka-apu") are one word, so that
# their first letter is not read as the English article.
_TOKEN = re.compile(r"[a-zåäöéü']++(?:-[a-zåäöéü']++)*+")


def _squeeze(word: str, longest: int, only_runs_over: int = 1) -> str:
    """`word` with each run of one letter longer than `only_runs_over` cut to `longest` letters."""
    return "".join(
        letter * (longest if count > only_runs_over else count)
        for letter, count in ((letter, sum(1 for _ in run)) for letter, run in groupby(word))
    )


def _has_repeat(word: str) -> bool:
    return any(a == b for a, b in zip(word, word[1:]))


_FI_ENDINGS = (
    "ssa", "ssä", "sta", "stä", "lla", "llä", "lta", "ltä", "lle", "ksi", "kin", "kaan", "kään",
    "ko", "kö", "nen", "isi", "isin", "aan", "ään", "een", "iin", "uun", "tää", "taa",
    "ssani", "lleni", "mme", "tte", "vat", "vät", "ani", "äni", "mista", "misen", "uksen",
)
_FI_DOUBLE_VOWELS = ("aa", "ää", "ii", "uu", "yy", "öö", "ie", "uo", "yö", "äy", "öy")
_SV_STARTS = ("sj", "skj", "stj", "tj", "kj", "hj", "lj", "gj")
_SV_ENDINGS = ("ning", "het", "lig", "ligt", "liga", "arna", "erna", "orna", "ande", "ende", "skt")
_EN_ENDINGS = ("ing", "tion", "ness", "ly", "ed", "ous", "ful")
_EN_LETTERS = ("th", "w", "sh", "ch", "c", "q", "x", "z")


def _shape_scores(word: str, scores: dict[str, float]) -> None:
    """Score a word that is in no list by what it looks like."""
    if "å" in word:
        scores["sv"] += 1.0
        return
    if "ä" in word or "ö" in word:
        scores["fi"] += 0.5
        scores["sv"] += 0.3
    if len(word) >= 4:
        folded = _fold(word)
        if word.endswith(_FI_ENDINGS) or folded.endswith(_FI_ENDINGS):
            scores["fi"] += 0.5
        if any(pair in word for pair in _FI_DOUBLE_VOWELS):
            scores["fi"] += 0.4
        if word.startswith(_SV_STARTS) or word.endswith(_SV_ENDINGS):
            scores["sv"] += 0.4
        if word.endswith(_EN_ENDINGS):
            scores["en"] += 0.4
    if any(letters in word for letters in _EN_LETTERS):
        scores["en"] += 0.4


def _lookup(word: str) -> dict[str, float] | None:
    known = _WORDS.get(word) or _WORDS.get(word.replace("'", "")) or _WORDS.get(_fold(word))
    if known is None and _has_repeat(word):
        # "heyy", "kiitoooos": letters stretched for emphasis.
        for stretched in (_squeeze(word, 2, only_runs_over=2), _squeeze(word, 1, only_runs_over=2),
                          _squeeze(word, 1)):
            known = _WORDS.get(stretched) or _WORDS.get(_fold(stretched))
            if known is not None:
                break
    return known


Lexicon = dict[str, str]


def _without_tokens(text: str) -> str:
    for token in _REDACTION_TOKENS:
        if token in text:
            text = text.replace(token, " ")
    return text


def lexicon_from_examples(examples: dict[str, list[str]], min_length: int = 4) -> Lexicon:
    """Content words that occur in the bot's training examples of one language only.

    The hand-made lists cover function words; this adds the domain's own
    vocabulary ("vräkning", "eviction", "toimeentulotukea"), so that a
    one-word message in any language is answered in that language."""
    seen: dict[str, set[str]] = {}
    for language, texts in examples.items():
        for text in texts:
            for token in _TOKEN.findall(text.lower()):
                word = token.strip("'")
                if len(word) >= min_length:
                    seen.setdefault(word, set()).add(language)
    return {word: next(iter(langs)) for word, langs in seen.items()
            if len(langs) == 1 and word not in _WORDS}


def language_scores(text: str, lexicon: Lexicon | None = None) -> dict[str, float]:
    """The evidence for each language in `text` (for debugging and tests)."""
    scores = {language: 0.0 for language in LANGUAGES}
    shared_words = []
    for token in _TOKEN.findall(_without_tokens(unicodedata.normalize("NFKC", text)).lower()):
        word = token.strip("'")
        if not word:
            continue
        known = _lookup(word)
        if known is None and lexicon and word in lexicon:
            known = {lexicon[word]: _NORMAL}
        if known is None:
            _shape_scores(word, scores)
        elif len(known) > 1:
            shared_words.append(known)
        else:
            for language, weight in known.items():
                scores[language] += weight
    # A word of two languages ("en", "ja", "i", "on") goes to the one the
    # rest of the message leans to; with no lean it is split.
    for known in shared_words:
        leaning = max(known, key=scores.__getitem__)
        if scores[leaning] > 0 and all(
            scores[leaning] > scores[other] for other in known if other != leaning
        ):
            scores[leaning] += sum(known.values())
        else:
            for language, weight in known.items():
                scores[language] += weight
    return {language: round(score, 3) for language, score in scores.items()}


def detect_language(text: str, hint: str | None = None, previous: str | None = None,
                    lexicon: Lexicon | None = None) -> str:
    """The language of `text`: "fi", "sv" or "en".

    `previous` is the conversation's language so far and `hint` the widget's
    language; the first one given decides when the text itself does not.
    """
    fallback = next(
        (language for language in (previous, hint) if language in LANGUAGES), DEFAULT_LANGUAGE
    )
    stripped = text.strip()
    if not stripped or stripped.startswith("/"):
        return fallback
    scores = language_scores(stripped, lexicon)
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    best, second = ranked[0], ranked[1]
    if scores[best] < MIN_EVIDENCE:
        return fallback
    conversation_language = previous if previous in LANGUAGES else hint if hint in LANGUAGES else None
    if scores[best] - scores[second] < MIN_MARGIN and conversation_language in (best, second):
        return conversation_language
    return best
