"""Retraining from the admin page: one run at a time, in the background,
with progress, ending in an evaluation of the new model beside the one in use.

A run: load and check the training data; train and parse the held-out set
with the new model in one Rasa process (``bot.training.train_and_parse`` in a
daemon thread; Rasa's "Epochs: NN%" lines are the progress), while the model
in use is evaluated on the running Rasa; score both through the bot's own
parse; register the model as a candidate. The run's row in
``admin_training_runs`` is the lock (its unique ``running_slot``), the
progress every process's page polls, and the result.

When an admin opens the training page, a training process is started ahead
(``prewarm``): it imports Rasa and TensorFlow while the admin edits, so the
click does not wait for that (about 10 s). Unused, it ends after
``WARM_TRAINER_IDLE_SECS``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from bot.content import Content, ContentError
from bot.evaluation import Report, heldout_cases
from bot.nlu import NluClient, PrecomputedNlu, RasaClient
from bot.policy import Bot
from bot.settings import Settings
from bot.training import TrainerProcess, TrainingError, load_heldout, train_and_parse

from ..errors import TrainingBusy
from ..store.admin.models import ModelRepository
from ..store.admin_models import TrainingRun
from ..store.models import utcnow
from .changes import StaffRef
from .registry import ModelRegistry, model_stem

log = logging.getLogger(__name__)

HEARTBEAT_SECS = 1.0
STALE_RUN_SECS = 120.0  # a running row without a heartbeat this long: its process died
EVAL_PARSE_TIMEOUT_SECS = 10.0
EVAL_CONCURRENCY = 4
TOP_CONFUSIONS = 15
WARM_TRAINER_IDLE_SECS = 900.0

_EPOCHS = re.compile(r"Epochs:\s*(\d{1,3})%")
_MODEL_SAVED = "POLKU-MODEL "

# Share of the whole run each phase ends at (for one progress bar); measured
# on a 2-core machine with a warm training process: the epochs are about half a run.
PHASE_ENDS = {"preparing": 0.35, "training": 0.80, "saving": 0.84, "evaluating": 1.0}
# Each phase starts where the one before it ended.
PHASE_STARTS = dict(zip(PHASE_ENDS, (0.0, *PHASE_ENDS.values())))
# Expected length of the phases without their own progress, for a bar that moves.
PHASE_EXPECTED_SECS = {"preparing": 20.0, "saving": 3.0, "evaluating": 10.0}


class Progress:
    """Written by the training thread, read by the heartbeat: plain attributes under the GIL."""

    def __init__(self) -> None:
        self.phase = "preparing"
        self.phase_started = time.monotonic()
        self.epoch_share = 0.0

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.phase_started = time.monotonic()

    def feed(self, line: str) -> None:
        """One line of Rasa's training output."""
        match = _EPOCHS.search(line)
        if match:
            if self.phase == "preparing":
                self.enter("training")
            self.epoch_share = min(1.0, int(match.group(1)) / 100)
            if self.epoch_share >= 1.0 and self.phase == "training":
                self.enter("saving")
        elif line.startswith(_MODEL_SAVED):
            self.enter("evaluating")

    @property
    def value(self) -> float:
        start, end = PHASE_STARTS[self.phase], PHASE_ENDS[self.phase]
        if self.phase == "training":
            share = self.epoch_share
        else:
            expected = PHASE_EXPECTED_SECS.get(self.phase, 10.0)
            # Approaches the phase's end without reaching it until the phase is over.
            share = min(0.95, (time.monotonic() - self.phase_started) / expected)
        return round(start + (end - start) * share, 3)


def summarise(report: Report) -> dict[str, Any]:
    """Accuracy overall, per language, and per intent and language: [correct, cases]."""
    by_intent: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for case, predicted in report.results:
        for lang in (case.language, "all"):
            cell = by_intent[case.expected][lang]
            cell[0] += int(predicted == case.expected)
            cell[1] += 1
    return {
        "accuracy": round(report.accuracy, 4),
        "cases": len(report.results),
        "by_language": {lang: {"accuracy": round(acc, 4), "cases": n}
                        for lang, (acc, n) in report.accuracy_by_language().items()},
        "by_intent": {intent: {lang: list(cell) for lang, cell in cells.items()}
                      for intent, cells in sorted(by_intent.items())},
        "confusions": [{"expected": e, "predicted": p, "count": n}
                       for e, p, n in report.confusions()[:TOP_CONFUSIONS]],
    }


async def evaluate(nlu: NluClient, content: Content, cases, settings: Settings) -> dict[str, Any]:
    """The held-out cases through the bot's own parse (redaction, crisis check,
    threshold) with ``nlu``: a RasaClient, or the new model's PrecomputedNlu."""
    bot = Bot(content, nlu, fallback_threshold=settings.fallback_threshold,
              default_language=settings.default_language)
    report = Report()
    gate = asyncio.Semaphore(EVAL_CONCURRENCY)

    async def one(case):
        async with gate:
            return case, (await bot.parse(case.text, case.language)).intent

    try:
        for case, predicted in await asyncio.gather(*(one(c) for c in cases)):
            report.add(case, predicted)
    finally:
        await bot.close()
    return summarise(report)


def run_json(row: TrainingRun | None) -> dict[str, Any] | None:
    if row is None:
        return None
    end = row.finished_at or utcnow()
    return {"id": row.id, "status": row.status, "phase": row.phase, "progress": row.progress,
            "started_at": row.started_at.isoformat(), "started_by": row.started_by_name,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "elapsed_secs": round((end - row.started_at).total_seconds(), 1),
            "model": row.model_name, "timings": row.timings, "evaluation": row.evaluation,
            "error": row.error}


def _in_daemon_thread(function: Callable[[], Any]) -> "asyncio.Future[Any]":
    """Run ``function`` in a daemon thread: a server shutting down does not wait for a training."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(setter, value) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the waiting coroutine
            loop.call_soon_threadsafe(settle, future.set_exception, exc)
        else:
            loop.call_soon_threadsafe(settle, future.set_result, result)

    threading.Thread(target=target, name="polku-admin-training", daemon=True).start()
    return future


class TrainingService:
    """Retraining runs, one at a time in all processes, and the training process started ahead."""

    def __init__(self, settings: Settings, repository: ModelRepository, registry: ModelRegistry) -> None:
        self.settings = settings
        self.repository = repository
        self.registry = registry
        self._task: asyncio.Task | None = None
        self._spare: TrainerProcess | None = None  # started ahead by prewarm()
        self._spare_expiry: asyncio.TimerHandle | None = None

    def prewarm(self) -> None:
        """Start a training process ahead of a run, unless one is waiting or running."""
        if not self.settings.admin_prewarm_trainer:
            return
        if self._task is not None and not self._task.done():
            return  # a run here: its process is busy, and a second would slow it down
        if self._spare is not None and self._spare.alive():
            self._arm_expiry()
            return
        try:
            self._spare = TrainerProcess.spawn(self.settings)
        except (TrainingError, OSError) as exc:  # Rasa not installed: the run says so
            log.warning("could not start a training process ahead: %s", exc)
            self._spare = None
            return
        self._arm_expiry()

    async def prewarm_unless_running(self) -> None:
        """prewarm(), unless a run is going in any process."""
        if not self.settings.admin_prewarm_trainer:
            return
        run = await self.latest()
        if run is None or run["status"] != "running":
            self.prewarm()

    def _arm_expiry(self) -> None:
        if self._spare_expiry is not None:
            self._spare_expiry.cancel()
        self._spare_expiry = asyncio.get_running_loop().call_later(
            WARM_TRAINER_IDLE_SECS, self._discard_spare)

    def _discard_spare(self) -> threading.Thread | None:
        spare = self._take_spare()
        if spare is None:
            return None
        thread = threading.Thread(target=spare.discard, daemon=True)  # it may wait up to 5 s
        thread.start()
        return thread

    def _take_spare(self) -> TrainerProcess | None:
        spare, self._spare = self._spare, None
        if self._spare_expiry is not None:
            self._spare_expiry.cancel()
            self._spare_expiry = None
        return spare

    async def latest(self) -> dict[str, Any] | None:
        await self._expire_stale()
        return run_json(await self.repository.latest_run())

    async def start(self, staff: StaffRef) -> dict[str, Any]:
        await self._expire_stale()
        row = await self.repository.start_run(staff_id=staff.id, staff_name=staff.name)
        if row is None:
            raise TrainingBusy("a training is already running")
        self._task = asyncio.create_task(self._run(row.id, staff), name=f"admin-training-{row.id}")
        return run_json(row)

    async def wait(self) -> None:
        """Until this process's run (if any) has ended (tests)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        discarding = self._discard_spare()
        if discarding is not None:
            await asyncio.to_thread(discarding.join)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _expire_stale(self) -> None:
        await self.repository.expire_stale(utcnow() - timedelta(seconds=STALE_RUN_SECS),
                                           "interrupted: the server running it stopped")

    async def _update(self, run_id: int, **values: Any) -> None:
        await self.repository.update_run(run_id, **values)

    async def _heartbeat(self, run_id: int, progress: Progress) -> None:
        while True:
            try:
                await self._update(run_id, phase=progress.phase, progress=progress.value,
                                   heartbeat_at=utcnow())
            except Exception as exc:  # the next beat tries again
                log.warning("training heartbeat failed: %s", type(exc).__name__)
            await asyncio.sleep(HEARTBEAT_SECS)

    async def _run(self, run_id: int, staff: StaffRef) -> None:
        progress = Progress()
        heartbeat = asyncio.create_task(self._heartbeat(run_id, progress))
        current_eval: asyncio.Task | None = None
        started = time.monotonic()
        timings: dict[str, float] = {}
        try:
            content = await asyncio.to_thread(Content.load, self.settings.training_data_dir)
            cases = await asyncio.to_thread(self._cases)
            current_model = await self.registry.active_name()
            if cases:
                # The model in use is measured on the running Rasa while the new one trains.
                current_eval = asyncio.create_task(self._evaluate_current(content, cases))
            candidates = self.registry.candidates_dir
            candidates.mkdir(parents=True, exist_ok=True)
            trainer = self._take_spare()
            texts = [Bot.nlu_text(case.text) for case in cases]
            trained = await _in_daemon_thread(lambda: train_and_parse(
                self.settings, content=content, out_dir=candidates, on_output=progress.feed,
                parse_texts=texts, trainer=trainer))
            model: Path = trained.path
            saved = progress.phase_started if progress.phase == "evaluating" else time.monotonic()
            timings["warm_trainer"] = trainer is not None
            timings["train_secs"] = round(saved - started, 1)
            progress.enter("evaluating")
            new_eval = None
            if cases:
                new_eval = await evaluate(PrecomputedNlu(trained.parses), content, cases, self.settings)
            evaluation = {"heldout_cases": len(cases), "new": new_eval,
                          "current": await current_eval if current_eval else None,
                          "current_model": current_model}
            await self.registry.register(model.name, trained_by=staff.name, examples=len(content.example_texts()),
                                         evaluation=new_eval)
            await self.registry.prune()
            timings["total_secs"] = round(time.monotonic() - started, 1)
            timings["evaluate_secs"] = round(timings["total_secs"] - timings["train_secs"], 1)
            await self._update(run_id, running_slot=None, status="ready", phase="done", progress=1.0,
                               finished_at=utcnow(), model_name=model.name, timings=timings,
                               evaluation=evaluation, heartbeat_at=utcnow())
            log.info("training run %s ready: %s in %.1f s", run_id, model_stem(model), timings["total_secs"])
        except asyncio.CancelledError:
            await self._fail(run_id, "interrupted: the server stopped", timings)
            raise
        except (ContentError, TrainingError, OSError) as exc:
            await self._fail(run_id, str(exc), timings)
        except Exception as exc:
            log.exception("training run %s failed", run_id)
            await self._fail(run_id, f"{type(exc).__name__}: {exc}", timings)
        finally:
            heartbeat.cancel()
            if current_eval is not None and not current_eval.done():
                current_eval.cancel()

    async def _fail(self, run_id: int, error: str, timings: dict) -> None:
        log.warning("training run %s failed: %s", run_id, error.splitlines()[0] if error else "")
        try:
            await self._update(run_id, running_slot=None, status="failed", finished_at=utcnow(),
                               error=error[-4000:], timings=timings or None)
        except Exception as exc:
            log.error("could not record the failed training run: %s", type(exc).__name__)

    def _cases(self):
        path = Path(self.settings.heldout_path)
        if not path.is_file():
            log.warning("no held-out set at %s: the new model is not evaluated", path)
            return []
        return heldout_cases(load_heldout(path))

    async def _evaluate_current(self, content: Content, cases) -> dict | None:
        client = RasaClient(self.settings.rasa_url, EVAL_PARSE_TIMEOUT_SECS, self.settings.rasa_token)
        try:
            return await evaluate(client, content, cases, self.settings)
        except Exception as exc:  # Rasa down: shown as "not available"
            log.warning("could not evaluate the model in use: %s", type(exc).__name__)
            return None
