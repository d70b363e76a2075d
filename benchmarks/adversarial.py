"""The bot path on adversarial messages beside ordinary ones: CPU time per message.

What one resident message costs our process before and after Rasa:
redaction, crisis lexicon, language detection and the dialogue policy
(``Bot.handle``), with Rasa's parse answered by a fixed ranking so that only
our own work is timed. Three corpora:

- ordinary: the held-out messages (tests/data/heldout.yml), as residents write;
- ordinary, 2,000 characters: held-out messages joined up to the longest
  message a resident may send (POLKU_MAX_MESSAGE_CHARS), so that length alone
  is compared like with like;
- adversarial, 2,000 characters: hand-written worst cases of the backtracking
  patterns redaction used to have ("358" + digits + ".5" froze the server for
  seconds to minutes) and generated ones (digit runs split by every kind of
  separator, Unicode spaces and dashes, near-matches repeated).

Each message is timed as the least CPU time (``time.process_time``) of a few
runs, so that another process taking the core does not count. Printed: p50,
p99 and the worst message of each corpus, per component and for the whole
path, and the worst adversarial message against the worst ordinary one of
the same length (goal: within 3x).

``--rasa`` also times the path with the real Rasa (wall time, one message at
a time), started on the newest model as ``bench parse`` does.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Awaitable, Callable

import yaml

from bot.content import Content
from bot.language import detect_language
from bot.nlu import NluResult
from bot.policy import Bot
from bot.redact import redact
from bot.safety import crisis_check
from bot.settings import PROJECT_ROOT, Settings

from .stats import percentile

MAX_CHARS = 2000
TRIES = 3


def _to_length(unit: str, prefix: str = "", suffix: str = "") -> str:
    room = MAX_CHARS - len(prefix) - len(suffix)
    return prefix + (unit * (room // max(1, len(unit)) + 1))[:room] + suffix


def adversarial_corpus(generated: int, seed: int = 13) -> dict[str, str]:
    cases = {
        "358 + 200 digits + .5 (the issue's)": "358" + "1" * 200 + ".5",
        "358 + digits + .5": _to_length("1", "358", ".5"),
        "358 + digit pairs": _to_length(" 12", "358", ".5"),
        "+358 + one-digit groups": _to_length(" 1", "+358", ".5"),
        "00358 + dotted groups": _to_length(".12", "00358", ",5"),
        "national + groups": _to_length(" 12", "040 123", ".5"),
        "(09) + slashes": _to_length("/123", "(09)", "5"),
        "digits only": "0" * MAX_CHARS,
        "phones back to back": _to_length("040 123 4567 "),
        "identity codes back to back": _to_length("010190-123A "),
        "identity code near misses": _to_length("010190-123"),
        "IBAN + one-character groups": _to_length(" 1", "FI21", " x"),
        "e-mail local part without @": _to_length("a."),
        "e-mail @ chain": _to_length("a@"),
        "e-mail domains": _to_length("a@b.c"),
        "no-break spaces": _to_length("0\u00a0"),
        "non-breaking hyphens": _to_length("\u201112", "358"),
        "full-width digits": _to_length("０"),
        "zero-width spaces in digits": _to_length("0\u200b"),
        "expanding characters": _to_length("½⒈㍱"),
        "one-letter words": _to_length("a "),
        "hyphenated chain": _to_length("a-"),
        "stretched letters": _to_length("heyyyyyyyyyy "),
        "crisis words repeated": _to_length("en jaksa "),
        "emoji": _to_length("😊"),
    }
    separators = [" ", "-", "+", "(", ")", "(0)", ".", ",", "/", "\u00a0", "\u202f", "\u2009", "\u3000",
                  "\u2011", "\u2013", "\u2212", "\uff0d", "\u200b", "\n"]
    near = ["358", "+358", "00358", "040", "(09)", "FI21", "010190", "-123", "A", "a", "@", ".fi", "a."]
    rng = random.Random(seed)
    for index in range(generated):
        if index % 2:
            unit = "".join(rng.choice("0123456789０") * rng.randint(1, 12) + rng.choice(separators)
                           for _ in range(rng.randint(1, 8)))
        else:
            unit = "".join(rng.choice(near + separators) for _ in range(rng.randint(1, 8)))
        cases[f"generated {index}"] = _to_length(unit, rng.choice(["", "358", "+358 ", "040 ", "FI21 "]),
                                                 rng.choice(["", ".5", ",5", "x"]))
    return cases


def ordinary_corpora() -> tuple[list[str], list[str]]:
    items = yaml.safe_load((PROJECT_ROOT / "tests" / "data" / "heldout.yml").read_text(encoding="utf-8"))
    texts = [item["text"] for item in items]
    long_texts, current = [], ""
    for text in texts * 8:
        if len(current) + 1 + len(text) > MAX_CHARS:
            long_texts.append(current)
            current = ""
        current = f"{current} {text}" if current else text
    return texts, long_texts


class FixedNlu:
    """Rasa's answer as a fixed ranking: the in-process figure times only our own work."""

    async def parse(self, text: str) -> NluResult:
        return NluResult("housing_allowance", 0.8, (("housing_allowance", 0.8), ("unemployment", 0.1)))

    async def close(self) -> None:
        pass


def cpu_secs(call: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(TRIES):
        started = time.process_time()
        call()
        best = min(best, time.process_time() - started)
    return best


def _fmt(samples: list[float]) -> str:
    return (f"p50 {percentile(samples, 50) * 1000:7.3f} ms  p99 {percentile(samples, 99) * 1000:7.3f} ms  "
            f"worst {max(samples) * 1000:7.3f} ms")


def _in_process(bot: Bot, corpora: dict[str, dict[str, str]]) -> dict[str, dict[str, list[float]]]:
    loop = asyncio.new_event_loop()
    try:
        components: dict[str, Callable[[str], Any]] = {
            "redaction": redact,
            "language": lambda text: detect_language(redact(text), hint="fi"),
            "crisis lexicon": lambda text: crisis_check(redact(text)),
            "whole path (Bot.handle)": lambda text: loop.run_until_complete(bot.handle(text)),
        }
        results: dict[str, dict[str, list[float]]] = {}
        for corpus, texts in corpora.items():
            results[corpus] = {name: [] for name in components}
            for text in texts.values():
                for name, func in components.items():
                    results[corpus][name].append(cpu_secs(lambda: func(text)))
        return results
    finally:
        loop.close()


async def _with_rasa(settings: Settings, corpora: dict[str, dict[str, str]]) -> None:
    bot = Bot.from_settings(settings)
    try:
        for text in list(corpora["ordinary"].values())[:20]:
            await bot.handle(text)
        print("With the real Rasa (wall time per message, one at a time; Rasa's parse included):")
        for corpus, texts in corpora.items():
            samples = []
            for text in texts.values():
                started = time.perf_counter()
                await bot.handle(text)
                samples.append(time.perf_counter() - started)
            print(f"  {corpus:<32} {_fmt(samples)}  n={len(samples)}")
    finally:
        await bot.close()


def main(args) -> None:
    short, long_texts = ordinary_corpora()
    adversarial = adversarial_corpus(args.generated)
    corpora = {
        "ordinary": {f"heldout {i}": t for i, t in enumerate(short)},
        f"ordinary, {MAX_CHARS} chars": {f"joined {i}": t for i, t in enumerate(long_texts)},
        f"adversarial, {MAX_CHARS} chars": adversarial,
    }
    settings = Settings()
    bot = Bot(Content.load(settings.training_data_dir), FixedNlu())
    # Warm up: caches of the folding table and the compiled patterns.
    for texts in corpora.values():
        for text in list(texts.values())[:5]:
            redact(text)
    results = _in_process(bot, corpora)
    print(f"In-process bot path, CPU time per message (least of {TRIES} runs), Rasa's parse a fixed ranking:")
    for corpus, by_component in results.items():
        print(f"  {corpus} (n={len(corpora[corpus])})")
        for name, samples in by_component.items():
            print(f"    {name:<26} {_fmt(samples)}")
    whole = "whole path (Bot.handle)"
    adversarial_samples = results[f"adversarial, {MAX_CHARS} chars"][whole]
    worst_index = max(range(len(adversarial_samples)), key=adversarial_samples.__getitem__)
    worst_name = list(adversarial)[worst_index]
    ordinary_long = max(results[f"ordinary, {MAX_CHARS} chars"][whole])
    ordinary_short = percentile(results["ordinary"][whole], 50)
    worst = adversarial_samples[worst_index]
    print(f"  worst adversarial message: {worst_name!r}: {worst * 1000:.3f} ms")
    print(f"  worst adversarial / worst ordinary of {MAX_CHARS} chars: {worst / ordinary_long:.2f}x (goal <= 3x)")
    print(f"  worst adversarial / median ordinary message: {worst / ordinary_short:.1f}x "
          f"(a {MAX_CHARS}-character message against a median of "
          f"{int(percentile([len(t) for t in short], 50))} characters)")
    if args.rasa:
        from bot.rasa_server import ensure_rasa

        settings = settings.replace(POLKU_RASA_URL=settings.rasa_urls[0])
        started = ensure_rasa(settings, log=print)
        try:
            asyncio.run(_with_rasa(settings, corpora))
        finally:
            for process in started:
                process.stop()


def add_arguments(parser) -> None:
    parser.add_argument("--generated", type=int, default=200, help="generated adversarial messages")
    parser.add_argument("--rasa", action="store_true", help="also time the path with the real Rasa")
