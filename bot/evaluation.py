"""Intent accuracy figures: per intent, per language, and the confusion pairs."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .content import Content


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
        langs = [lang for lang in ("fi", "sv", "en") if lang in self.accuracy_by_language()]
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
