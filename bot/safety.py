"""The deterministic crisis check that runs beside the NLU model.

Why beside the model: the model is trained on a few hundred examples and
answers with a confidence; a resident in crisis writes in their own words,
with typos, in the middle of another topic ("ei oo rahaa ja en jaksa enää
elää"), and the model may put that message under a money intent or below
its threshold. A missed crisis is the one mistake the bot must not make, so
every message also goes through this lexicon, and a hit makes the message
`crisis` whatever the model said (the "safety order" of the intent contract).

Why over-inclusive: a false alarm costs a resident one answer with the
emergency numbers and a counsellor at the top of the queue; a miss can cost
a life. So the lexicon prefers recall for anything about wanting to die,
self-harm, violence, nowhere to sleep tonight or no food today, and only
leaves out phrasings that are common and plainly not acute ("kuolinpesä",
"isäni kuoli", "killing time", "this bill is killing me").

How it matches: the text is normalised (lower case, ä/ö/å and other
accents folded to plain letters because residents often type without them,
apostrophes dropped, other punctuation turned into spaces, runs of a letter
squeezed to one letter so that "haluuun kuollaaa" and "haluun kuola" both
read "halun kuola"). The lexicon is written in ordinary spelling and goes
through the same folding when it is compiled, so both sides meet in the
folded form. Patterns use stems and alternations for inflected and
colloquial forms; "…" in a pattern stands for up to three other words.

Two kinds of entries: statements ("haluun kuolla", "he hits me") count
wherever they appear; topic words ("itsemurha", "väkivalta", "abusive
relationship") count unless the message shows it is not about an acute
danger: the past ("vuosia sitten"), someone else's death ("itsemurhan
tehneiden omaisille"), a school task or a compensation claim. Without that
split, a resident asking about peer support after a suicide in the family
would be treated as suicidal, and one who says "itsemurha-ajatuksia" would
not be caught at all.

Categories are checked from the most severe down, and the first category
that matches is returned.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

CrisisCategory = Literal[
    "suicide", "self_harm", "acute_danger", "violence", "homeless_tonight", "no_food"
]


@dataclass(frozen=True)
class CrisisHit:
    """A crisis lexicon match. `matched` is the normalised matched text, for logs and debugging only."""

    category: CrisisCategory
    language: Literal["fi", "sv", "en"]
    matched: str


# ---------------------------------------------------------------------------
# Normalisation

# Decomposing (NFD) splits "ä" into "a" and a combining diaeresis; dropping
# the combining marks folds every accented letter at C speed. Apostrophes go
# too, so that "don't", "don’t" and "dont" are the same word.
_DROPPED = re.compile("[\u0300-\u036f'\u2019\u2018\u00b4`]+")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
# A letter followed by the same letter is dropped: "kuollaaa" -> "kuola".
_REPEATED_LETTER = re.compile(r"([a-z])(?=\1)")
# In a pattern a letter after a backslash is an escape ("\bb" is not "bb").
_REPEATED_LETTER_IN_PATTERN = re.compile(r"(?<!\\)([a-z])\1+")

# "…" in a lexicon pattern: up to this many other words in between.
_GAP_WORDS = 3


def normalise(text: str) -> str:
    """Fold the text as the lexicon sees it: 'Hälúun KUOLLA!!' -> 'halun kuola'."""
    folded = _DROPPED.sub("", unicodedata.normalize("NFD", text.lower()))
    folded = _NOT_WORD.sub(" ", folded).strip()
    return _REPEATED_LETTER.sub("", folded)


def _fold_pattern(pattern: str) -> str:
    folded = _DROPPED.sub("", unicodedata.normalize("NFD", pattern.lower()))
    folded = _REPEATED_LETTER_IN_PATTERN.sub(r"\1", folded)
    return folded.replace(" … ", f" (?:\\w+ ){{0,{_GAP_WORDS}}}")


def _near(first: str, second: str, words: int = 6) -> str:
    """Both phrases in either order with up to `words` words between them."""
    gap = f"(?: \\w+){{0,{words}}} "
    return f"(?:{first}){gap}(?:{second})|(?:{second}){gap}(?:{first})"


# ---------------------------------------------------------------------------
# The lexicon, in ordinary spelling (folded when compiled). Patterns are
# lower-cased when folded, so they use only \w and \b among the escapes.

_FI_ME = r"(?:mua|minua|mut|minut|mulle|minulle|meitä|meidät|meijät|meit)"
_FI_MYSELF = r"(?:itse|itte)(?:ni|äni|eni|nsä|ensä|si|s|än|eäni|ään)"
_FI_TONIGHT = (
    r"(?:tänä yönä|tän yön|tänä yö|tänäyönä|ensi yönä|ens yönä|ensi yöksi|ens yöks|yöksi|yöks|"
    r"tänään|tänää|tänä iltana|tänä päivänä|illaksi|huomenna|nyt heti|heti)"
)
_FI_PERSON = (
    r"(?:mies|mieheni|mun mies|vaimo|vaimoni|puoliso|puolisoni|kumppani|kumppanini|"
    r"poikaystävä|poikaystäväni|tyttöystävä|tyttöystäväni|exä|exäni|eksä|eksäni|"
    r"isä|isäni|isäpuoli|isäpuoleni|äiti|äitini|veli|veljeni|kämppis|joku|hän)"
)
_FI_PERSON_OBJECT = (
    r"(?:miestä|miestäni|mieheni|mun miestä|vaimoa|vaimoani|puolisoa|puolisoani|"
    r"poikaystävää|poikaystävääni|tyttöystävää|tyttöystävääni|exää|exääni|eksää|eksääni|"
    r"kumppania|kumppaniani|isää|isääni|isäpuolta|isäpuoltani|äitiä|äitiäni|"
    r"veljeä|veljeäni|poikaani|kämppistä|naapuria)"
)
_FI_HITS = (
    r"(?:lyö|löi|lyönyt|lyöny|lyövät|hakkaa|hakkas|hakkasi|hakannut|hakkaamaan|potkii|potki|"
    r"potkaisi|kuristi|kuristaa|kuristanut|tönii|töni|tönäisi|läimii|läimäytti|retuuttaa|riehuu)"
)
_FI_PILLS_OR_ROPE = (
    r"(?:pillerit|pillereitä|pillerin|tabletit|tabletteja|unilääkkeet|unilääkkeitä|lääkkeet|"
    r"lääkkeitä|napit|nappeja|köysi|köyden|köyttä|narun|hirttosilmukka)"
)

_SV_ME = r"(?:mig|mej|oss|barnen|mina barn|mitt barn)"
_SV_TONIGHT = r"(?:i natt|inatt|i kväll|ikväll|idag|i dag|just nu|till natten|i morgon)"
_SV_PARTNER = (
    r"(?:honom|henne|min man|min make|min sambo|min pojkvän|min flickvän|min fru|"
    r"min partner|mitt ex|min pappa|min far|min styvpappa|min bror|min son|min mamma)"
)

_EN_SUBJECT = (
    r"(?:he|she|they|husband|wife|partner|boyfriend|girlfriend|bf|gf|ex|dad|father|"
    r"stepdad|stepfather|mom|mum|mother|brother|son|someone|somebody|spouse|"
    r"roommate|flatmate|man|guy|neighbour|neighbor)"
)
_EN_ME = r"(?:me|us|my kids|my children|my son|my daughter|my child|my baby)"
_EN_TONIGHT = r"(?:tonight|today|this evening|this night|right now)"
_EN_PARTNER = (
    r"(?:husband|wife|partner|boyfriend|girlfriend|ex|father|dad|stepfather|stepdad|"
    r"mother|mom|mum|brother|son|flatmate|roommate|spouse)"
)

# Statements of a crisis: they count wherever they appear.
_STATEMENTS: dict[str, dict[str, list[str]]] = {
    "suicide": {
        "fi": [
            # Folded, "tappaa" (kill) and "tapaa" (meet) are one word; the
            # reflexive object tells them apart, but not in "tapasin itseni kaltaisia".
            rf"(?:tappaa|tapan|tapat|tappaisin|tappaisi|tappais|tappamaan|tappanut|tappanu|tappamalla|"
            rf"tappaakseni|tappaminen|tappamista|tappamisesta|tapoin|tappoi|tappa) (?:\w+ ){{0,1}}"
            rf"{_FI_MYSELF}(?! kaltai\w*)",
            r"(?:haluan|haluun|haluu|haluaa|halu|halusin|haluaisin|haluisin|haluis|haluais|tahdon|"
            r"tahtoisin|toivon|toivoisin|toivoin|meinaan|aion|kunpa|kunpa vaan) … "
            r"(?:kuolla|kuolevani|kuolisin|kuolis|kuollut|kuollu|pois tästä maailmasta)",
            r"kuolla pois", r"kuolisinpa", r"kuolisin pois", r"pois tästä (?:elämästä|maailmasta)",
            r"(?:olisin|oisin|olisinpa|oisinpa) … (?:kuollut|kuollu)",
            r"(?:en|ei|enkä|eikä) (?:jaksa|jaksais|jaksaisi|jaks|halua|haluu|haluais|haluaisi|tahdo|"
            r"kestä) … (?:elää|elämää|elossa|hengissä|olla olemassa|olemassa|olla täällä enää)",
            r"(?:syytä|järkeä|syy|merkitystä|tarkoitusta) (?:\w+ ){0,2}"
            r"(?:elää|elämiseen|elämässä|jatkaa elämää|jatkaa elämääni|jatkaa eteenpäin)",
            r"(?:ei|en) … elämisen arvo\w*",
            r"(?:lopettaa|lopetan|lopettaisin|lopettais|lopettamaan|lopettaisi|päättää|päätän|"
            r"päättäisin|päättämään|päättäis) … (?:elämäni|elämän|päiväni|tämän elämän)",
            # "lopettaa kaiken" but not "lopetin kaiken juomisen" or "Kela lopettaa kaiken tuen".
            r"(?:lopettaa|lopetan|lopettaisin|lopettais|lopettamaan|lopettaisi) (?:\w+ ){0,2}kaiken"
            r"(?! \w*(?:misen|isen|käytön|tuen|tuet|avun|rahan|maksun|maksut|asiat|kulut)\b)",
            r"parempi (?:jos|et|että|ettei|etten|kun|ku) … (?:mua|minua|mä|minä|mun|en|ei|mut) … "
            r"(?:ois|olis|olisi|olisin|oisin|olemassa|elossa|syntyny|syntynyt|syntynytkään|katoan|"
            r"katoaisin|kuolisin|kuolen|lähden pois)",
            r"parempi (?:ettei|etten|jos en|jos mua ei|jos minua ei)",
            r"(?:parempi|paremmin|helpompaa|helpompi) … ilman (?:mua|minua|minuu|mut)",
            r"(?:parempi|helpompaa|helpompi|paremmin) … jos (?:mä |minä |ma )?(?:kuolisin|katoaisin|"
            r"katoisin|olisin kuollut|häviäisin)",
            r"(?:kukaan ei|ei kukaan|kukaan) (?:\w+ ){0,1}(?:kaipais|kaipaisi|kaipaa|huomais|huomaisi|"
            r"ikävöis|ikävöisi|välittäis|välittäisi) (?:mua|minua|jos)",
            # Sleeping and not waking up, but not "ettei vauva herää".
            r"(?:enkä|etten|kunpa en) (?:\w+ ){0,2}(?:herätä|heräis\w*|heräisi\w*|herää)",
            r"(?:ettei|kunpa ei|toivon ettei) (?:\w+ ){0,2}(?:heräis|heräisi\w*)",
            r"(?:enää|ikinä|koskaan) (?:\w+ ){0,1}herätä",
            r"en (?:halua|haluu|haluais|haluaisi) (?:enää |ikinä |koskaan )?herätä"
            r"(?! (?:aikaisin|ajoissa|kello|klo|aamulla|[0-9]))",
            r"nukahtaa (?:\w+ ){0,1}(?:ikuisesti|ikuiseen uneen|pysyvästi)",
            r"(?:katoan|katoaisin|katoisin|häviän|häviäisin|lähden|lähtisin|poistun|poistuisin) "
            r"(?:\w+ ){0,2}(?:lopullisesti|pysyvästi|ikuisesti|tästä maailmasta)",
            r"(?:ulospääsy\w*|ulospääsyä|keino\w*|vaihtoehto\w*|ratkaisu\w*) (?:\w+ ){0,3}"
            r"(?:kuolema|kuolla|kuolemaan|kuolemassa)",
            r"(?:otin|otti|otan|ottanut|ottanu|nielin|nieli|nielaisin|söin|söi|vedin|veti|napsin) … "
            r"(?:kaikki|liikaa|koko purkin|purkillisen|paketin) … "
            r"(?:lääk\w*|pillere\w*|pillerit|tabletit|tabletteja|unilääkkeet|nappeja|napit|nappia)",
            _near(_FI_PILLS_OR_ROPE, r"valmiina|valmiiks|valmiiksi|esillä|kerättynä|säästössä|kerännyt|"
                  r"säästäny|säästänyt|hamstrannut", 3),
            r"hyvästikirje\w*", r"jäähyväiskirje\w*", r"hyvästelykirje\w*", r"itsemurhaviest\w*",
            r"yliannost\w*",
            r"hirttä\w*", r"hirtä\w*",
            r"(?:hyp\w*|heittäyd\w*|heittäyt\w*) … (?:sillalta|sillalt|katolta|parvekkeelta|"
            r"ikkunasta|junan alle|junan eteen|auton alle|rekan alle|kalliolta|jyrkänteeltä|tornista)",
            r"en (?:halua|haluu) enää olla (?:täällä|olemassa|elossa)",
        ],
        "sv": [
            r"(?:ta|tar|tänker ta|ska ta|vill ta|kommer att ta) livet av (?:mig|mej|sig|dig)",
            r"(?:ta|tar|tänker ta|ska ta|vill ta|kommer att ta) (?:mitt|sitt|ditt) (?:eget )?liv",
            r"(?:döda|dödar|döder) (?:mig|mej) själv",
            r"(?:vill|ville|skulle vilja|önskar|önskade|vill bara|vil) … (?:dö|vara död|dö nu)",
            r"(?:vill|ville|orkar|orkade|önskar|vill bara|vil) (?:\w+ ){0,2}(?:inte|int|aldrig) "
            r"(?:\w+ ){0,2}(?:leva|finnas|vakna|vara med längre)",
            r"(?:somna|sova|sover) (?:\w+ ){0,2}(?:aldrig|inte|int) (?:\w+ ){0,1}vakna",
            r"bättre utan mig",
            r"(?:bättre|lättare|enklare) om jag (?:inte|int) (?:fanns|levde|var här)",
            r"(?:bättre|lättare|enklare) om jag (?:var död|dog|försvann|var borta)",
            r"(?:ingen|inte någon) (?:\w+ ){0,1}(?:sakna|saknar|märka|märker|bry sig om) (?:mig|mej|om jag)",
            r"ingen mening (?:med att leva|att leva|med livet|med mitt liv)",
            r"(?:utväg|väg ut|lösning) (?:\w+ ){0,3}(?:dö|döden|självmord)",
            _near(r"tabletter\w*|piller\w*|sömntabletter\w*|ett rep|repet",
                  r"framme|redo|färdiga|samlat|sparat|tänker ta dem|ta alla", 4),
            r"avskedsbrev\w*", r"självmordsbrev\w*",
            r"(?:hoppa|hoppar|kasta mig|kastar mig) … (?:från bron|från en bro|från taket|"
            r"framför tåget|framför ett tåg|framför en bil|från balkongen)",
            r"hänga mig", r"hänger mig",
            r"(?:ta|göra) slut på (?:allt|mitt liv|mig själv|mig)",
        ],
        "en": [
            r"kil\w* (?:my ?self|meself|myslef)",
            r"end\w* (?:it all|my life|my own life|it tonight|it now|everything|my suffering)",
            r"take my (?:own )?life",
            r"(?:gonna|going to|want to|wanna|will|just|to) end it"
            r"(?! (?:with|for|at|on|by|after|before|next|this|when|if|early|soon))",
            r"(?:want|wanna|wanted|wanting|wish|ready) (?:\w+ ){0,2}(?:die|be dead)",
            r"wish (?:i was|i were|id|i had|i d) (?:\w+ ){0,1}(?:dead|never been born|not born|gone)",
            r"(?:dont|do not|didnt|no longer|not) (?:\w+ ){0,1}(?:want|wanna) (?:to )?"
            r"(?:live(?! (?:in|with|at|there|near|alone|together|on|under|here|close))|"
            r"be alive|exist|be here anymore|be around anymore|go on(?= anymore| any more| living|$))",
            r"(?:no|any|not any|what) (?:reason|point) … (?:to live|living|in living|to go on|to keep going|of living)",
            r"better off (?:without me|dead|if i (?:was|were) (?:dead|gone)|if i wasnt here)",
            r"(?:better|easier) (?:for everyone |for everybody |for them )?if i "
            r"(?:wasnt|werent|was not|were not|wasn t) (?:here|around|alive)",
            r"(?:better|easier) (?:for everyone |for everybody |for them )?if i "
            r"(?:was dead|were dead|was gone|were gone|died|disappeared|killed myself)",
            r"(?:nobody|no one|noone|no body) (?:would|will|is going to|gonna|is gonna) (?:even )?"
            r"(?:miss|notice|care|care if)",
            r"(?:no way out|way out|only option|only solution|only escape) (?:\w+ ){0,3}(?:death|dying|to die|suicide)",
            r"cant go on (?:anymore|any more|living)",
            r"overdos\w*",
            r"(?:took|swallowed|taken|take) (?:all|a lot of|too many|a bunch of|a handful of|lots of|loads of|"
            r"the whole) … (?:pills|meds|tablets|medication|sleeping pills|painkillers)",
            _near(r"pills|tablets|meds|sleeping pills|rope|noose", r"ready|saved up|stockpiled|lined up|counted out", 3),
            r"(?:goodbye|farewell|suicide) (?:letter|note)s?",
            r"hang\w* (?:my ?self)",
            r"jump\w* (?:off|from) (?:a |the |my )?(?:bridge|roof|building|balcony|cliff)",
            r"(?:jump|step|throw my ?self|lie down) (?:in front of|under) (?:a |the )?(?:train|bus|car|truck)",
            r"(?:dont|do not|never) (?:want|wanna) (?:to )?wake up",
            r"(?:hope|wish|pray) … (?:dont|never|wont|wouldnt|do not|not|will not) wake up",
            r"(?:sleep|asleep) (?:\w+ ){0,3}(?:never|not) wake up", r"never wake up again",
            r"want (?:it|everything|it all) (?:all )?to (?:end|be over)",
            r"not (?:want to |wanna )?be alive", r"life (?:is )?not worth living",
        ],
    },
    "self_harm": {
        "fi": [
            r"viiltel\w*", r"viiltä\w*", r"viilto\w*", r"viillel\w*", r"viilsi\w*",
            r"(?:satutan|satuttaa|satuttanut|satutin|satuttais\w*|satuttamaan|vahingoitan|vahingoittaa|"
            r"vahingoittanut|vahingoitin|vahingoittamaan|viillän|viilsin|raavin|raavon|lyön|hakkaan) … "
            r"(?:itseäni|itteäni|itseni|itteni|itteeni|itseeni|itteä|itseä|itsees|itsensä|ittensä|"
            r"ranteeni|ranteet|ranteita|käsiäni|käteni|reisiäni)",
            # Not "polttaa itsensä loppuun" (burn out): partitive objects only.
            r"(?:poltan|poltin|polttaa|polttanut|polttanu|poltella) (?:\w+ ){0,1}"
            r"(?:itseäni|itteäni|itteeni|ihoani|käsiäni|käsivarsiani)",
            r"itsensä vahingoitta\w*", r"itsensävahingoitta\w*", r"itseä vahingoittav\w*",
            r"(?:teen|tekisin|tehdä|tekemään|teenkö|teen vielä) (?:\w+ ){0,1}"
            r"(?:itselleni|itelleni|itelle|ittelleni|itselle|ittelle) (?:\w+ ){0,1}(?:jotain|jotakin|pahaa|jotai)",
        ],
        "sv": [
            r"(?:skada|skadar|skadade|skär|skära|skar|bränna|bränner|slå|slår|slog) (?:mig|mej) själv",
            r"(?:skär|skära|skar|skurit) (?:mig|mej)(?! i (?:fingret|handen))",
            r"självskad\w*",
        ],
        "en": [
            r"(?:hurt|hurting|harm|harming|cut|cutting|burn|burning|injure|injuring) (?:my ?self|meself)",
            r"self ?harm\w*", r"self injur\w*", r"self mutilat\w*",
            r"cutting (?:my )?(?:arms|wrists|legs|skin)",
        ],
    },
    "acute_danger": {
        "fi": [
            r"hengenvaara\w*", r"(?:henki|henkeni|hengeni|mun henki) (?:on )?vaarassa",
            r"pelkä\w* (?:\w+ ){0,1}(?:henkeni|hengeni)", r"(?:henkeni|hengeni) puolesta",
            r"(?:en|ei|emme) (?:ole|oo|oo enää|ole enää) turvassa",
            r"ei (?:ole|oo) turvallista (?:olla )?(?:kotona|kotiin)",
            r"(?:veitsi|veitsen|puukko|puukon|ase|aseen|kirves|kirveen|pistooli|pistoolin)\w* (?:\w+ ){0,2}kädessä",
            r"uhka\w* … (?:veitsellä|puukolla|aseella|kirveellä|pistoolilla)",
            r"puukott\w*", r"ampu\w* (?:\w+ ){0,1}(?:mua|minua|meitä|mut)",
            r"(?:joku|ne|hän|se) (?:\w+ ){0,2}(?:murtautu\w*|tunkeutu\w*)", r"murtautuu",
            r"(?:lapsi|lapseni|lapset|lapsemme|vauva) (?:on |ovat |oo )?vaarassa",
            r"väijy\w*", r"vainoa\w*", r"vainoo",
            r"ei päästä (?:mua|minua|mut|minut|meitä) (?:\w+ ){0,1}(?:ulos|lähtemään|pois)",
        ],
        "sv": [
            r"livsfara", r"rädd för mitt liv", r"(?:mitt|vårt) liv är i fara", r"(?:jag|vi) är i fara",
            r"(?:inte|int) (?:trygg|säker) (?:hemma|här)", r"känner mig (?:inte|int) (?:trygg|säker)",
            r"hota\w* … med (?:kniv|vapen|pistol|yxa)",
            r"(?:någon|han|hon|de) (?:\w+ ){0,2}(?:ta sig in|bryta sig in|bryter sig in|tar sig in)",
            r"(?:barnen|barnet|mitt barn|mina barn) (?:är )?i fara",
            r"förföljer (?:mig|mej)", r"släpper (?:inte|int) ut (?:mig|mej)",
        ],
        "en": [
            r"(?:im|i am|we are|were|i feel|we feel) (?:\w+ ){0,1}(?:in danger(?! of)|not safe|unsafe)",
            r"fear for my (?:life|safety)", r"(?:my|our) life is in danger",
            r"(?:dont|do not|cant|cannot) feel safe (?:at home|here|in my home|in my own home)",
            r"(?:has|had|with|holding|pulled) (?:a |his |her )?(?:knife|gun|weapon|axe)",
            r"threat\w* … with (?:a |his |her )?(?:knife|gun|weapon|axe)",
            r"(?:someone|somebody|he|she|they) (?:\w+ ){0,2}(?:break\w* in|breaking into|broke into)",
            r"(?:kids|children|child|baby|son|daughter) (?:are |is )?in danger",
            r"(?:stalking|stalks|stalked) me", r"(?:wont|will not|doesnt|does not) let me (?:leave|go out|out)",
        ],
    },
    "violence": {
        "fi": [
            rf"{_FI_HITS} (?:\w+ ){{0,2}}(?:{_FI_ME}|lapsia|lapsiani|lastani|lasta|mun lasta|mun lapsia)",
            rf"(?:pahoinpitel\w*|satutti|repii) (?:\w+ ){{0,2}}{_FI_ME}",
            # "kumppani ... lyö jos yritän lähteä": the object is elsewhere in the
            # sentence. Only verbs that are hardly ever about balls, wood or bets.
            _near(_FI_PERSON, r"lyö(?! vetoa| laimin)|löi(?! vetoa| laimin)|kuristi|kuristaa|riehuu|raivoaa", 6),
            rf"{_FI_PERSON} (?:\w+ ){{0,1}}uhka\w* (?:{_FI_ME})",
            r"uhka\w* … (?:tappaa|tappaisi|tapan|lyödä|hakata|satuttaa|puukottaa|ampua|"
            r"väkivallalla|tappamisella|viedä lapset|tappaa itsensä)",
            r"(?:sanoi|sano|sanoo|huusi|meinaa|aikoo|lupasi|lupas|uhkas|uhkasi) (?:\w+ ){0,3}"
            r"(?:tappaa|tappaisi|tappais)(?: \w+)?",
            rf"pelkä\w* (?:\w+ ){{0,1}}{_FI_PERSON_OBJECT}",
            r"(?:pelkä\w*|pelottaa) (?:et|että|ettei) … (?:tappaa|tappaisi|tappais|satuttaa|lyö|hakkaa|kuristaa)",
            r"(?:pelkä\w*|pelottaa) (?:\w+ ){0,1}(?:mennä kotiin|olla kotona|kotiin)",
            r"en (?:uskalla|uskalla enää) (?:mennä |palata |olla |lähteä )?(?:kotiin|kotona)",
        ],
        "sv": [
            rf"(?<!det )(?:slår|slog|slagit|sparkar|sparkade|sparkat|misshandlar|misshandlade|misshandlat|"
            rf"hotar|hotade|hotat|stryper|ströp|strypt|våldtog|våldtar|knuffar|knuffade|skadar|skadade|"
            rf"örfilade) {_SV_ME}",
            r"(?:hotar|hotade|hotat) (?:att|med att) (?:döda|slå|skada|mörda|ta livet av)",
            rf"(?:rädd|livrädd|skräckslagen) för {_SV_PARTNER}",
            r"(?:rädd|livrädd) (?:att|för att) (?:gå|åka|komma) hem",
            r"(?:vågar|törs) (?:inte|int) (?:gå |åka |komma )?hem",
        ],
        "en": [
            # Not "my son hit me up for money".
            rf"{_EN_SUBJECT} (?:\w+ ){{0,2}}(?!hits? (?:me|us) up)(?:hits|hit|hitting|beats|beat|beating|kicks|kicked|kicking|"
            rf"chokes|choked|choking|strangles|strangled|strangling|slaps|slapped|slapping|punches|"
            rf"punched|punching|pushes|pushed|hurts|hurt|hurting|abuses|abusing|"
            rf"attacks|attacked|attacking|rapes|raped|assaulted|assaults) {_EN_ME}",
            rf"{_EN_SUBJECT} (?:\w+ ){{0,3}}(?:kil|kill) (?:me|us|my kids|my children)",
            r"threat\w* (?:\w+ ){0,3}(?:to kill|to hurt|to stab|to shoot|to beat|to take the kids)",
            rf"(?:afraid|scared|terrified|frightened) of (?:my (?:ex )?{_EN_PARTNER}|him|her)",
            r"(?:afraid|scared|terrified) (?:to go|of going) home",
        ],
    },
    "homeless_tonight": {
        "fi": [
            _near(
                r"ei (?:\w+ ){0,2}(?:paikkaa|yöpaikkaa|kämppää|asuntoa|kotia|kotii|mihin mennä|minne mennä|"
                r"missä nukkua|mis nukkua|kattoa pään päälle|katto pään päällä)|asunnoton\w*|koditon\w*|"
                r"kadulla|kadulle",
                _FI_TONIGHT,
            ),
            r"(?:nukun|nukuin|nukkua|nukkumaan|nukkunut|nukkunu|yövyn|yöpyä|yövyin|joudun nukkumaan|"
            r"jouduin nukkumaan|nukutaan|nukumme) (?:\w+ ){0,2}(?:ulkona|kadulla|ulos|kadulle|puistossa|"
            r"rappu\w*|porraskäytäv\w*|autossa|asemalla|metsässä|teltassa|rautatieasemalla|pihalla|"
            r"bussipysäkillä|roskakatoksessa|kellarissa)",
            r"yöpaik\w*", r"yösij\w*",
            r"(?:asun|asutaan|asumme|elän|elämme) (?:\w+ ){0,1}(?:autossa|kadulla|teltassa|ulkona|"
            r"rappukäytävässä|porraskäytävässä|rapussa|puistossa)",
            r"(?:missä|mis|mihin|minne|mihi) (?:mä |minä |me |ma )?(?:nukun|nukkuisin|voin nukkua|vois nukkua|"
            r"yövyn|menen yöksi|mennä yöksi|voisin nukkua|nukumme)",
            r"(?:paikkaa|paikka) (?:missä|mis|jossa|mihin|mist) (?:\w+ ){0,1}(?:nukkua|yöpyä|olla yö)",
            _near(
                r"(?:häädettiin|häädetään|häätö|häädetty|heitettiin|heitti|heittivät|heitetty|potkaisi|potki|"
                r"jouduin lähtemään|joudun lähtemään|vuokranantaja vaihtoi lukot)",
                r"(?:kadulle|pihalle|ulos|tyhjän päälle|" + _FI_TONIGHT + r")",
                4,
            ),
            r"(?:oon|olen|ollaan|olemme|jäin|jään|joudun|päädyin|päädyn|jouduin) (?:\w+ ){0,1}(?:kadulla|kadulle)",
        ],
        "sv": [
            r"ingenstans (?:att )?(?:sova|ta vägen|övernatta|vara i natt)",
            _near(r"ingenstans (?:att )?bo|hemlös\w*|bostadslös\w*|på gatan", _SV_TONIGHT),
            r"(?:sover|sova|sov|måste sova|tvungen att sova) (?:\w+ ){0,1}(?:ute|utomhus|på gatan|i bilen|"
            r"i trapphuset|i parken|på stationen|i en trappuppgång)",
            _near(r"vräk\w*|utkastad|utslängd|slängde ut|kastade ut|kastades ut|slängdes ut",
                  _SV_TONIGHT + r"|på gatan", 5),
            r"(?:är|hamnar|hamnade|står|hamnat) på gatan",
            r"(?:ingen|inget) (?:plats|ställe|sovplats) (?:att|där jag kan) sova",
            r"var (?:ska|kan|skall) (?:jag|vi) sova", r"inget tak över huvudet",
            _near(r"tak över huvudet", _SV_TONIGHT),
        ],
        "en": [
            r"nowhere (?:\w+ ){0,1}(?:to sleep|to stay|to go)",
            _near(r"nowhere (?:to )?live|homeless|evicted|kicked (?:\w+ )?out|thrown out|threw (?:\w+ )?out|"
                  r"locked (?:\w+ )?out|on the streets?", _EN_TONIGHT),
            r"(?:sleep|sleeping|slept|sleep) (?:\w+ ){0,1}(?:outside|rough|on the streets?|in the streets?|"
            r"in my car|in the car|in a car|in the park|at the station|in a stairwell|in the stairwell|outdoors)",
            r"no (?:place|where) to (?:sleep|stay)(?! (?:in|at) (?:the|a) )",
            r"where (?:can|do|will|should|am) (?:i|we) (?:going to |gonna )?sleep",
            r"(?:no|without a) roof over (?:my|our) head\w*",
        ],
    },
    "no_food": {
        "fi": [
            r"(?:en|ei|emme|eivät|ette|et|enkä|eikä) (?:\w+ ){0,2}(?:syöny|syönyt|syöneet|syönny|syönyk|syöty)",
            r"(?:ei|eikä|ilman) (?:(?:oo|ole|ollu|ollut|enää|yhtään|mitään|mtn|ees|edes|kotona|meillä|mulla|"
            r"mul|lapsille|tänään|nyt|jääkaapissa|kaapissa|ollenkaan|yhtää|mitää|kotii) ){0,3}"
            r"(?:ruokaa|syötävää|ruokia|safkaa|sapuskaa)",
            r"nälkä(?!palk)\w*", r"nälissä\w*", r"nälkiintyn\w*", r"nälänhätä",
            r"jääkaappi (?:on )?(?:ihan |täysin |aivan )?tyhjä", r"tyhjä jääkaappi",
        ],
        "sv": [
            r"ingen mat", r"inget att äta", r"(?:inte|ej|int|inget) ätit", r"inte fått (?:\w+ )?mat",
            r"hungrig\w*", r"svälter", r"svälta", r"svältande",
            r"tomt i kylskåpet", r"kylskåpet är tomt", r"tomt kylskåp",
        ],
        "en": [
            r"no food(?! (?:bank|banks|aid|help|parcel|parcels|assistance|stamps|voucher|vouchers))",
            r"nothing to eat", r"(?:anything|something) to eat",
            r"(?:havent|have not|hasnt|has not|not|havnt|hadnt|had not) (?:\w+ ){0,1}(?:eaten|eat)",
            r"(?:didnt|did not|cant|cannot) (?:eat|afford to eat) (?:anything|today|yesterday|for)",
            r"starv\w*", r"(?:kids|children|we|i|im|baby|son|daughter|family) (?:\w+ ){0,2}hungry",
            r"(?:fridge|cupboard|cupboards) (?:is |are )?empty", r"empty fridge",
        ],
    },
}

# Words that name a crisis topic rather than state one ("itsemurha",
# "väkivalta", "abusive relationship"). They count too, unless the message
# shows that it is about the past, about someone else's death, or a school,
# compensation or peer-support matter (`_NOT_ACUTE_CONTEXT`).
_TOPICS: dict[str, dict[str, list[str]]] = {
    "suicide": {
        # "itemurha", "itsmurha": typos are common in exactly these messages.
        "fi": [r"(?<!teki )(?<!tehnyt )(?<!tehny )(?<!kuoli )it\w{0,2}murh\w*", r"itse murh\w*", r"itsari\w*",
               r"itsetuho\w*",
               r"(?:en|enkä) (?:\w+ ){0,2}(?:oo|ole) (?:täällä )?(?:enää )?(?:kauaa|pitkään)",
               r"(?:pois|lähteä|lähden|häipyä) (?:\w+ ){0,1}lopullisesti"],
        "sv": [r"självmord\w*", r"kommer (?:inte|int) (?:att )?(?:vara|finnas) (?:här|kvar) (?:så )?länge"],
        "en": [r"(?<!committed )(?<!to )suicid\w*", r"(?:wont|will not) be (?:here|around) (?:much |for )?(?:longer|long)"],
    },
    "violence": {
        "fi": [r"\w*väkival\w*", r"raiska\w*", r"pahoinpitel\w*", r"uhkail\w*"],
        "sv": [r"våld i (?:hemmet|nära relationer|familjen)", r"våldtäkt\w*", r"våldtog", r"våldsam\w*",
               r"misshandl\w*", r"familjevåld", r"relationsvåld", r"våld hemma"],
        "en": [r"domestic (?:violence|abuse)",
               r"abusive (?:\w+ )?(?:husband|partner|relationship|boyfriend|girlfriend|wife|home|father|dad|ex)",
               r"rape\w*", r"(?:being|been|im|i am) (?:\w+ ){0,1}abused", r"violen\w*"],
    },
}

_NOT_ACUTE_CONTEXT = re.compile(
    _fold_pattern(
        r"\b(?:"
        # fi
        r"vuosia sitten|vuos sitten|vuosi sitten|nuorena|lapsena|aikoinaan|joskus ennen|olin ennen|"
        r"menee (?:nyt )?hyvin|tehneiden|tehneen|omaisille|omaisten|omaiset|läheisille|läheisten|"
        r"vertaistu\w*|vertaisryhm\w*|koulutehtäv\w*|esseen|esitelmä\w*|opinnäyte\w*|tutkimu\w*|korvau\w*|"
        r"muutan|muutto\w*|muuttamassa|"
        # sv
        r"för (?:flera|många|några|[0-9]+) år sedan|för länge sedan|när jag var (?:ung|liten|barn)|som ung|"
        r"som barn|anhöriga|efterlevande|stödgrupp\w*|skoluppgift\w*|skolarbete\w*|uppsats\w*|"
        r"ersättning\w*|flyttar|flytta|"
        # en
        r"years ago|a year ago|used to|in the past|when i was (?:young|a kid|a child|little|younger)|"
        r"as a (?:kid|child|teen)|back then|lost (?:someone|somebody|a \w+|my \w+|\w+) to|bereave\w*|"
        r"survivors?|support groups?|peer groups?|school (?:project|assignment|essay)|essay|thesis|"
        r"research|compensation|moving (?:out|away|to)"
        r")\b"
    )
)

# Most severe first: the first category that matches is the one returned.
# Acute danger (a weapon, being locked in, "my life is in danger") comes
# before violence in general because it is happening now.
CATEGORY_ORDER: tuple[CrisisCategory, ...] = (
    "suicide", "self_harm", "acute_danger", "violence", "homeless_tonight", "no_food",
)


def _compile(by_language: dict[str, list[str]] | None) -> re.Pattern[str] | None:
    if by_language is None:
        return None
    branches = []
    for language in ("fi", "sv", "en"):
        if by_language.get(language):
            alternatives = "|".join(_fold_pattern(pattern) for pattern in by_language[language])
            branches.append(f"(?P<{language}>\\b(?:{alternatives})\\b)")
    return re.compile("|".join(branches)) if branches else None


_COMPILED: tuple[tuple[CrisisCategory, re.Pattern[str], re.Pattern[str] | None], ...] = tuple(
    (category, _compile(_STATEMENTS[category]), _compile(_TOPICS.get(category)))
    for category in CATEGORY_ORDER
)

# Nearly every message matches nothing. One pass over everything answers
# that about twice as fast as a pass per category; only a message that
# matches something is searched again, category by category, for the most
# severe one.
_ANYTHING = re.compile(
    r"\b(?:"
    + "|".join(
        _fold_pattern(pattern)
        for lexicon in (_STATEMENTS, _TOPICS)
        for by_language in lexicon.values()
        for patterns in by_language.values()
        for pattern in patterns
    )
    + r")\b"
)


def crisis_check(text: str) -> CrisisHit | None:
    """The most severe crisis category the message matches, or None."""
    normalised = normalise(text)
    if not normalised or not _ANYTHING.search(normalised):
        return None
    not_acute: bool | None = None  # looked up once, and only when a topic word matches
    for category, statements, topics in _COMPILED:
        match = statements.search(normalised)
        if match is None and topics is not None:
            match = topics.search(normalised)
            if match is not None:
                if not_acute is None:
                    not_acute = _NOT_ACUTE_CONTEXT.search(normalised) is not None
                if not_acute:
                    match = None
        if match is not None:
            return CrisisHit(category=category, language=match.lastgroup, matched=match.group(0))
    return None
