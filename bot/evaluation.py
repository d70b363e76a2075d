"""Intent accuracy figures: per intent, per language, and the confusion pairs."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .content import Content
from .types import LANGUAGES


@dataclass(frozen=True)
class Case:
    text: str
    language: str
    expected: str


@dataclass
class Report:
    results: list[tuple[Case, str]] = field(default_factory=list)  # (case, predicted)

    def add(self, case: Case, predicted: str) -> None:
        self.results.append((case, predicted))

    @property
    def accuracy(self) -> float:
        return _share(sum(c.expected == p for c, p in self.results), len(self.results))

    def accuracy_by_language(self) -> dict[str, tuple[float, int]]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for case, predicted in self.results:
            groups[case.language].append(case.expected == predicted)
        return {lang: (_share(sum(v), len(v)), len(v)) for lang, v in sorted(groups.items())}

    def precision_recall(self, language: str | None = None) -> dict[str, tuple[float, float, int]]:
        """intent -> (precision, recall, support), optionally for one language."""
        rows = [(c, p) for c, p in self.results if language is None or c.language == language]
        intents = sorted({c.expected for c, _ in rows} | {p for _, p in rows})
        out = {}
        for intent in intents:
            tp = sum(1 for c, p in rows if c.expected == intent and p == intent)
            predicted = sum(1 for _, p in rows if p == intent)
            support = sum(1 for c, _ in rows if c.expected == intent)
            out[intent] = (_share(tp, predicted), _share(tp, support), support)
        return out

    def confusions(self) -> list[tuple[str, str, int]]:
        counts = Counter((c.expected, p) for c, p in self.results if c.expected != p)
        return [(e, p, n) for (e, p), n in counts.most_common()]

    def errors(self) -> list[tuple[Case, str]]:
        return [(c, p) for c, p in self.results if c.expected != p]

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "cases": len(self.results),
            "by_language": {k: {"accuracy": a, "cases": n} for k, (a, n) in self.accuracy_by_language().items()},
            "by_intent": {k: {"precision": p, "recall": r, "support": s}
                          for k, (p, r, s) in self.precision_recall().items()},
            "confusions": [{"expected": e, "predicted": p, "count": n} for e, p, n in self.confusions()],
        }

    def format(self) -> str:
        lines = [f"Top-1 accuracy: {self.accuracy:.1%} on {len(self.results)} messages", ""]
        lines.append("By language:")
        for lang, (acc, n) in self.accuracy_by_language().items():
            lines.append(f"  {lang}: {acc:.1%} ({n} messages)")
        langs = [lang for lang in LANGUAGES if lang in self.accuracy_by_language()]
        header = f"\n{'intent':<30} {'prec':>6} {'recall':>6} {'n':>4}" + "".join(
            f"  {lang + ' P':>6} {lang + ' R':>6}" for lang in langs)
        lines.append(header)
        per_lang = {lang: self.precision_recall(lang) for lang in langs}
        for intent, (p, r, n) in self.precision_recall().items():
            row = f"{intent:<30} {p:>6.1%} {r:>6.1%} {n:>4}"
            for lang in langs:
                lp, lr, ln = per_lang[lang].get(intent, (0.0, 0.0, 0))
                row += f"  {lp:>6.0%} {lr:>6.0%}" if ln or lp else f"  {'-':>6} {'-':>6}"
            lines.append(row)
        confusions = self.confusions()
        lines.append("\nConfusion pairs (expected -> predicted: count):")
        lines.extend(f"  {e} -> {p}: {n}" for e, p, n in confusions[:30])
        if not confusions:
            lines.append("  none")
        return "\n".join(lines)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def heldout_cases(items: list[dict]) -> list[Case]:
    return [Case(item["text"], item["lang"], item["intent"]) for item in items]


def split_cases(content: Content, test_share: float = 0.2, seed: int = 7) -> list[Case]:
    """A stratified held-out split of the training examples (per intent and language)."""
    rng = random.Random(seed)
    cases = []
    for intent, data in sorted(content.intents.items()):
        for lang, examples in sorted(data.examples.items()):
            picked = list(examples)
            rng.shuffle(picked)
            count = max(1, round(len(picked) * test_share)) if len(picked) >= 5 else 0
            cases.extend(Case(text, lang, intent) for text in picked[:count])
    return cases


# ---------------------------------------------------------------------------
# Crisis: recall on crisis messages, false alarms on ordinary ones

# What the bot did with a message, from the crisis point of view.
CRISIS = "crisis"  # the crisis answer and the front of the counsellor queue
CHECK = "check"  # the safety check ("are you thinking of ending your life?") before another answer
NONE = "none"  # neither

# The answer each kind of crisis should get (training_data/responses.yml).
EXPECTED_ANSWER = {
    "suicide_direct": "crisis_suicide", "suicide_indirect": "crisis_suicide", "plan_means": "crisis_suicide",
    "self_harm": "crisis_suicide", "violence": "crisis_violence", "child_danger": "crisis_violence",
    "no_food": "crisis_basic_needs", "no_shelter": "crisis_basic_needs",
}


@dataclass(frozen=True)
class CrisisCase:
    text: str
    language: str
    category: str  # crisis kind, or the kind of hard negative; "heldout" for the held-out set's messages
    is_crisis: bool


@dataclass
class CrisisOutcome:
    case: CrisisCase
    outcome: str  # CRISIS, CHECK or NONE
    answer: str  # response id of the first reply
    intent: str


def crisis_cases(document: dict) -> list[CrisisCase]:
    """tests/data/crisis_eval.yml: {crisis|not_crisis: {language: {category: [text, ...]}}}."""
    cases = []
    for part, is_crisis in (("crisis", True), ("not_crisis", False)):
        for language, categories in (document.get(part) or {}).items():
            for category, texts in (categories or {}).items():
                cases.extend(CrisisCase(text, language, category, is_crisis) for text in texts or [])
    return cases


def heldout_crisis_cases(items: list[dict]) -> list[CrisisCase]:
    """The held-out set as ordinary messages (and its few crisis ones)."""
    return [CrisisCase(item["text"], item["lang"], "heldout_crisis" if item["intent"] == "crisis" else "heldout",
                       item["intent"] == "crisis") for item in items]


@dataclass
class CrisisReport:
    outcomes: list[CrisisOutcome] = field(default_factory=list)

    def add(self, case: CrisisCase, outcome: str, answer: str, intent: str) -> None:
        self.outcomes.append(CrisisOutcome(case, outcome, answer, intent))

    def _rows(self, *, crisis: bool, language: str | None = None, category: str | None = None,
              heldout: bool | None = None) -> list[CrisisOutcome]:
        return [o for o in self.outcomes if o.case.is_crisis == crisis
                and (language is None or o.case.language == language)
                and (category is None or o.case.category == category)
                and (heldout is None or o.case.category.startswith("heldout") == heldout)]

    @staticmethod
    def _rate(rows: list[CrisisOutcome], outcome: str) -> tuple[float, int, int]:
        hits = sum(o.outcome == outcome for o in rows)
        return _share(hits, len(rows)), hits, len(rows)

    def recall(self, language: str | None = None, category: str | None = None) -> tuple[float, int, int]:
        """Crisis messages of the crisis set that got the crisis answer."""
        return self._rate(self._rows(crisis=True, language=language, category=category, heldout=False), CRISIS)

    def false_alarms(self, language: str | None = None, category: str | None = None,
                     heldout: bool | None = None) -> tuple[float, int, int]:
        """Ordinary messages (hard negatives and the held-out set's) that got the crisis answer."""
        return self._rate(self._rows(crisis=False, language=language, category=category, heldout=heldout), CRISIS)

    def checks(self, crisis: bool, language: str | None = None) -> tuple[float, int, int]:
        return self._rate(self._rows(crisis=crisis, language=language, heldout=None if not crisis else False), CHECK)

    def right_answer(self, language: str | None = None) -> tuple[float, int, int]:
        """Caught crisis messages that got the answer for their kind of crisis."""
        rows = [o for o in self._rows(crisis=True, language=language, heldout=False)
                if o.outcome == CRISIS and o.case.category in EXPECTED_ANSWER]
        hits = sum(o.answer == EXPECTED_ANSWER[o.case.category] for o in rows)
        return _share(hits, len(rows)), hits, len(rows)

    def languages(self) -> list[str]:
        return [lang for lang in LANGUAGES if any(o.case.language == lang for o in self.outcomes)]

    def categories(self, crisis: bool) -> list[str]:
        seen: list[str] = []
        for o in self.outcomes:
            if o.case.is_crisis == crisis and not o.case.category.startswith("heldout") and o.case.category not in seen:
                seen.append(o.case.category)
        return seen

    def to_dict(self) -> dict:
        def triple(value: tuple[float, int, int]) -> dict:
            return {"rate": value[0], "count": value[1], "of": value[2]}

        langs = self.languages()
        return {
            "recall": triple(self.recall()),
            "recall_by_language": {lang: triple(self.recall(lang)) for lang in langs},
            "recall_by_category": {cat: {lang: triple(self.recall(lang, cat)) for lang in langs}
                                   for cat in self.categories(True)},
            "false_alarms": triple(self.false_alarms()),
            "false_alarms_by_language": {lang: triple(self.false_alarms(lang)) for lang in langs},
            "false_alarms_hard_negatives_by_category": {
                cat: {lang: triple(self.false_alarms(lang, cat)) for lang in langs} for cat in self.categories(False)},
            "false_alarms_heldout": {lang: triple(self.false_alarms(lang, heldout=True)) for lang in langs},
            "safety_checks_on_crisis": triple(self.checks(True)),
            "safety_checks_on_ordinary": triple(self.checks(False)),
            "right_answer": triple(self.right_answer()),
            "misses": [{"text": o.case.text, "language": o.case.language, "category": o.case.category,
                        "outcome": o.outcome, "intent": o.intent} for o in self.misses()],
            "alarms": [{"text": o.case.text, "language": o.case.language, "category": o.case.category,
                        "outcome": o.outcome, "intent": o.intent} for o in self.alarms()],
        }

    def misses(self) -> list[CrisisOutcome]:
        return [o for o in self._rows(crisis=True) if o.outcome != CRISIS]

    def alarms(self) -> list[CrisisOutcome]:
        return [o for o in self._rows(crisis=False) if o.outcome != NONE]

    def format(self) -> str:
        langs = self.languages()

        def cell(value: tuple[float, int, int]) -> str:
            rate, hits, whole = value
            return f"{rate:>6.1%} {hits:>3}/{whole:<3}" if whole else f"{'-':>14}"

        head = f"{'':<22}" + "".join(f" {lang:>14}" for lang in langs) + f" {'all':>14}"
        lines = ["Crisis recall (crisis answer and top of the queue), crisis evaluation set:", head]
        for cat in self.categories(True):
            lines.append(f"  {cat:<20}" + "".join(f" {cell(self.recall(lang, cat))}" for lang in langs)
                         + f" {cell(self.recall(None, cat))}")
        lines.append(f"  {'ALL':<20}" + "".join(f" {cell(self.recall(lang))}" for lang in langs)
                     + f" {cell(self.recall())}")
        lines.append(f"  {'safety check only':<20}" + "".join(
            f" {cell(self._rate(self._rows(crisis=True, language=lang, heldout=False), CHECK))}" for lang in langs)
            + f" {cell(self.checks(True))}")
        lines.append(f"  {'right kind of answer':<20}" + "".join(f" {cell(self.right_answer(lang))}" for lang in langs)
                     + f" {cell(self.right_answer())}")
        lines += ["", "False alarms (crisis answer on an ordinary message):", head]
        for cat in self.categories(False):
            lines.append(f"  {cat:<20}" + "".join(f" {cell(self.false_alarms(lang, cat))}" for lang in langs)
                         + f" {cell(self.false_alarms(None, cat))}")
        lines.append(f"  {'hard negatives':<20}" + "".join(
            f" {cell(self.false_alarms(lang, heldout=False))}" for lang in langs)
            + f" {cell(self.false_alarms(heldout=False))}")
        lines.append(f"  {'held-out, ordinary':<20}" + "".join(
            f" {cell(self.false_alarms(lang, heldout=True))}" for lang in langs)
            + f" {cell(self.false_alarms(heldout=True))}")
        lines.append(f"  {'ALL ordinary':<20}" + "".join(f" {cell(self.false_alarms(lang))}" for lang in langs)
                     + f" {cell(self.false_alarms())}")
        lines.append(f"  {'safety check only':<20}" + "".join(
            f" {cell(self.checks(False, lang))}" for lang in langs) + f" {cell(self.checks(False))}")
        return "\n".join(lines)
