"""Command line of the bot: train, parse, evaluate, shell, serve-rasa, settings-doc, facts."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .content import Content, ContentError
from .evaluation import (CHECK, CRISIS, NONE, CrisisReport, Report, crisis_cases, heldout_cases,
                         heldout_crisis_cases, split_cases)
from .policy import Bot
from .rasa_server import (RASA_READY_TIMEOUT_SECS, RasaProcess, ensure_model, ensure_rasa, free_port,
                          rasa_answers, start_missing_rasa, stop_all)
from .settings import PROJECT_ROOT, Settings, SettingsError, settings_markdown
from .training import TrainingError, latest_model, load_heldout, train
from .types import LANGUAGES, DialogueState

DEFAULT_HELDOUT = PROJECT_ROOT / "tests" / "data" / "heldout.yml"
DEFAULT_CRISIS_EVAL = PROJECT_ROOT / "tests" / "data" / "crisis_eval.yml"


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    model = train(settings, on_output=(lambda line: _err(line)) if args.verbose else None)
    print(model)
    return 0


async def _parse_lines(bot: Bot, lines, ui_language: str | None) -> None:
    for line in lines:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        result = await bot.parse(text, ui_language)
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
        sys.stdout.flush()


def _run_with_bot(settings: Settings, work, process: RasaProcess | None = None):
    """Run `work(bot)` against Rasa: `process` when given (stopped afterwards),
    else the configured server, or one started for the purpose."""
    if process is not None:
        started = [process]
    else:
        if not all(rasa_answers(url, token=settings.rasa_token) for url in settings.rasa_urls):
            # A command's few parses need one Rasa server, not every one a chat server would use.
            settings = settings.replace(POLKU_RASA_URL=settings.rasa_urls[0])
        started = ensure_rasa(settings, log=_err)
    bot = Bot.from_settings(settings)

    async def run():
        try:
            return await work(bot)
        finally:
            await bot.close()

    try:
        return asyncio.run(run())
    finally:
        stop_all(started)


def cmd_parse(settings: Settings, args: argparse.Namespace) -> int:
    _run_with_bot(settings, lambda bot: _parse_lines(bot, sys.stdin, args.language))
    return 0


async def evaluate_cases(bot: Bot, cases) -> Report:
    report = Report()
    for case in cases:
        result = await bot.parse(case.text, case.language)
        report.add(case, result.intent)
    return report


async def evaluate_crisis(bot: Bot, cases) -> CrisisReport:
    """Each message as the first of a conversation, through the whole answer path."""
    report = CrisisReport()
    for case in cases:
        turn = await bot.handle(case.text, DialogueState(), case.language)
        ids = [reply.response_id for reply in turn.replies]
        if turn.handoff is not None and turn.handoff.priority == "crisis":
            outcome = CRISIS
        elif "crisis_check" in ids:
            outcome = CHECK
        else:
            outcome = NONE
        report.add(case, outcome, ids[0] if ids else "", turn.parse.intent)
    return report


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    process = None
    crisis: list = []
    if args.split:
        content = Content.load(settings.training_data_dir)
        cases = split_cases(content, args.split)
        _err(f"Training on the other {1 - args.split:.0%} of the examples; testing on {len(cases)}...")
        tmp = tempfile.mkdtemp(prefix="polku-eval-")
        model = train(settings, content=content, out_dir=tmp, exclude=[c.text for c in cases])
        process = RasaProcess(settings, model, free_port(), log_path=Path(tmp) / "rasa.log").start().wait_ready()
        settings = settings.replace(POLKU_RASA_URL=process.url)
    else:
        heldout = load_heldout(args.heldout)
        cases = heldout_cases(heldout)
        if args.crisis:
            with open(args.crisis, encoding="utf-8") as handle:
                crisis = crisis_cases(yaml.safe_load(handle) or {}) + heldout_crisis_cases(heldout)

    async def work(bot: Bot):
        return (await evaluate_cases(bot, cases),
                await evaluate_crisis(bot, crisis) if crisis else None)

    report, crisis_report = _run_with_bot(settings, work, process)
    if args.json:
        out = report.to_dict()
        if crisis_report is not None:
            out["crisis"] = crisis_report.to_dict()
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    print(report.format())
    if args.errors:
        print("\nMisclassified:")
        for case, predicted in report.errors():
            print(f"  [{case.language}] {case.expected} -> {predicted}: {case.text}")
    if crisis_report is not None:
        print("\n" + crisis_report.format())
        if args.errors:
            print("\nCrisis messages without the crisis answer:")
            for o in crisis_report.misses():
                print(f"  [{o.case.language}] {o.case.category} -> {o.outcome} ({o.intent}): {o.case.text}")
            print("\nOrdinary messages with the crisis answer or the safety check:")
            for o in crisis_report.alarms():
                print(f"  [{o.case.language}] {o.case.category} -> {o.outcome} ({o.intent}): {o.case.text}")
    return 0


def cmd_shell(settings: Settings, args: argparse.Namespace) -> int:
    print("Polku chat bot. Write a message (Ctrl-D to quit).")

    async def run(bot: Bot) -> None:
        state = DialogueState()
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            turn = await bot.handle(line, state, args.language)
            state = turn.state
            for reply in turn.replies:
                print(f"bot> {reply.text}")
                for qr in reply.quick_replies:
                    print(f"     [{qr.title}] -> {qr.payload}")
            if turn.handoff:
                print(f"     (handoff to the counsellor queue: {turn.handoff.reason}, "
                      f"priority {turn.handoff.priority})")
            print(f"     ({turn.parse.intent} {turn.parse.confidence:.2f} {turn.parse.language})")

    _run_with_bot(settings, run)
    return 0


# A Rasa process that exits is started again (the others answer meanwhile), unless
# one has had to be restarted this many times within RESTART_WINDOW_SECS.
MAX_RESTARTS = 3
RESTART_WINDOW_SECS = 300.0


_stopping = False


def _interrupt(signum, frame):
    # The first signal stops; the ones after it (Ctrl-C twice, or SIGTERM to the whole
    # process group and then from ./polku's trap) do nothing, so they cannot cut the stop
    # short and leave a Rasa running. (Ignoring them with signal.signal came too late when
    # the second one was already pending: a traceback, and the stop skipped.)
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise KeyboardInterrupt


def cmd_serve_rasa(settings: Settings, args: argparse.Namespace) -> int:
    """Run Rasa in the foreground on the newest model (training one when there is none):
    one process for each of POLKU_RASA_URL's servers that does not answer yet. A
    process that exits, before it is ready or after, is started again on the newest
    model file (the one an activation made newest) while the others go on answering."""
    global _stopping
    _stopping = False
    # Stopped by SIGTERM like by Ctrl-C: the Rasa processes are stopped too. SIGINT
    # explicitly: a background job of a script (./polku start) starts with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    processes = start_missing_rasa(settings, log=_err, die_with_parent=True)
    if not processes:
        _err(f"Rasa already answers at {', '.join(settings.rasa_urls)}")
        return 0
    restarts: dict[int, list[float]] = {}
    waiting = True  # for every process to answer once, to say so
    deadline = time.monotonic() + RASA_READY_TIMEOUT_SECS
    try:
        while True:
            time.sleep(0.5)
            for i, process in enumerate(processes):
                if process.proc.poll() is None:
                    continue
                now = time.monotonic()
                recent = [t for t in restarts.get(process.port, []) if now - t < RESTART_WINDOW_SECS]
                if len(recent) >= MAX_RESTARTS:
                    _err(f"Rasa at {process.url} exited {len(recent) + 1} times in a few minutes; "
                         f"giving up. See {process.log_path}")
                    return 1
                restarts[process.port] = recent + [now]
                model = latest_model(settings.model_dir) or process.model
                _err(f"Rasa at {process.url} exited with {process.proc.returncode}; starting it again "
                     f"on {model.name} (see {process.log_path})")
                processes[i] = RasaProcess(settings, model, process.port, host=process.host,
                                           log_path=process.log_path, die_with_parent=True).start()
            if waiting and all(rasa_answers(p.url, token=settings.rasa_token) for p in processes):
                waiting = False
                _err(f"Rasa ready at {', '.join(p.url for p in processes)}")
            elif waiting and time.monotonic() > deadline:
                _err(f"Rasa did not become ready in {RASA_READY_TIMEOUT_SECS:.0f} s; see "
                     + ", ".join(str(p.log_path) for p in processes))
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        _stopping = True  # stopping on an error too: signals meanwhile do nothing (see _interrupt)
        stop_all(processes)
    return 0


def cmd_ensure_model(settings: Settings, args: argparse.Namespace) -> int:
    print(ensure_model(settings, log=_err))
    return 0


def cmd_settings_doc(settings: Settings, args: argparse.Namespace) -> int:
    sys.stdout.write(settings_markdown())
    return 0


def cmd_facts(settings: Settings, args: argparse.Namespace) -> int:
    """The service facts left to fill, confirm or re-check; exit 1 when the crisis path is incomplete."""
    from .facts import needs_attention, report_lines

    content = Content.load(settings.training_data_dir)
    if args.json:
        data = needs_attention(content)
        data["unfilled_crisis_path"] = content.unfilled_crisis_facts()
        data["coming_closures"] = [c.to_json() for c in content.hours.closures(30)]
        data["example_opening_hours"] = content.hours.example
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print("\n".join(report_lines(content)))
    return 1 if content.unfilled_crisis_facts() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the Rasa model from training_data/")
    p.add_argument("-v", "--verbose", action="store_true", help="show Rasa's output")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("parse", help="one message per line in, one JSON object per line out")
    p.add_argument("--language", choices=LANGUAGES, help="the widget's language (tie-breaker)")
    p.set_defaults(func=cmd_parse)
    p = sub.add_parser("evaluate", help="per-intent and per-language precision/recall")
    p.add_argument("--heldout", default=str(DEFAULT_HELDOUT), help="held-out YAML (text, lang, intent)")
    p.add_argument("--split", type=float, default=0.0,
                   help="instead: train on the rest and test on this share of the training examples")
    p.add_argument("--crisis", default=str(DEFAULT_CRISIS_EVAL),
                   help="crisis evaluation set (crisis recall and false alarms); '' to skip")
    p.add_argument("--json", action="store_true")
    p.add_argument("--errors", action="store_true", help="list the misclassified messages")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("shell", help="chat with the bot in the terminal")
    p.add_argument("--language", choices=LANGUAGES)
    p.set_defaults(func=cmd_shell)
    sub.add_parser("serve-rasa", help="run the Rasa server on the newest model").set_defaults(func=cmd_serve_rasa)
    sub.add_parser("ensure-model", help="train a model when there is none").set_defaults(func=cmd_ensure_model)
    sub.add_parser("settings-doc", help="print docs/settings.md").set_defaults(func=cmd_settings_doc)
    p = sub.add_parser("facts", help="list unfilled, example and stale service facts, and coming closures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_facts)
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return args.func(settings, args)
    except (SettingsError, ContentError, TrainingError) as exc:
        _err(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
