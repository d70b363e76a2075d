"""Train the Rasa NLU model from ``training_data/``.

Our YAML (one file per intent, examples per language) is turned into Rasa's
NLU format and trained with Rasa's Python API in its own Python 3.10 venv
(``bot/rasa/train_nlu.py``, which can also parse texts with the new model).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import yaml

from .content import Content
from .settings import PROJECT_ROOT, Settings

RASA_DIR = PROJECT_ROOT / "bot" / "rasa"  # what runs in Rasa's environment; on its PYTHONPATH
RASA_CONFIG_TEMPLATE = RASA_DIR / "config.yml"
TRAINING_TIMEOUT_SECS = 1200
MODEL_GLOB = "*.tar.gz"


class TrainingError(RuntimeError):
    pass


def rasa_env() -> dict[str, str]:
    """The environment of every Rasa process: our Rasa components
    (bot/rasa/polku_components.py) importable, telemetry and noise off."""
    env = dict(os.environ)
    env.update(RASA_TELEMETRY_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONWARNINGS="ignore", SQLALCHEMY_SILENCE_UBER_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(RASA_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def rasa_executable(settings: Settings) -> Path:
    exe = Path(settings.rasa_venv) / "bin" / "rasa"
    if not exe.exists():
        raise TrainingError(
            f"Rasa is not installed at {exe}. Run ./polku install (it creates Rasa's "
            "own Python 3.10 environment with pinned packages)."
        )
    return exe


def _escape(example: str) -> str:
    # Rasa reads [text](entity) and {"entity": ...} as annotations; our examples have none.
    return re.sub(r"\s+", " ", example.replace("[", "(").replace("]", ")")).strip()


def nlu_yaml(content: Content, exclude: Iterable[str] = ()) -> str:
    """Rasa NLU training data for every intent and language, minus `exclude` texts."""
    skip = {e.strip().lower() for e in exclude}
    blocks = []
    for intent in sorted(content.intents):
        data = content.intents[intent]
        lines = [f"- intent: {intent}", "  examples: |"]
        seen: set[str] = set()
        for lang in sorted(data.examples):
            for example in data.examples[lang]:
                text = _escape(example)
                key = text.lower()
                if not text or key in seen or key in skip:
                    continue
                seen.add(key)
                lines.append(f"    - {text}")
        blocks.append("\n".join(lines))
    return 'version: "3.1"\nnlu:\n' + "\n".join(blocks) + "\n"


def rasa_config(settings: Settings) -> str:
    template = RASA_CONFIG_TEMPLATE.read_text(encoding="utf-8")
    return template.replace("__FALLBACK_THRESHOLD__", repr(float(settings.fallback_threshold)))


def fingerprint(content: Content, settings: Settings) -> str:
    digest = hashlib.sha256()
    digest.update(nlu_yaml(content).encode())
    digest.update(rasa_config(settings).encode())
    return digest.hexdigest()[:16]


def latest_model(model_dir: str | Path) -> Path | None:
    models = sorted(Path(model_dir).glob(MODEL_GLOB), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


TRAIN_SCRIPT = RASA_DIR / "train_nlu.py"


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    # What Rasa's /model/parse answers with the new model for each text asked for.
    parses: dict[str, dict] = field(default_factory=dict)


class TrainerProcess:
    """One ``bot/rasa/train_nlu.py`` process in Rasa's environment: it imports
    Rasa and TensorFlow at once, then waits for a single job. Started ahead of
    a job (``spawn`` when an admin opens the training page) it saves the
    import time of a retrain; ``discard`` ends it unused."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.started = time.monotonic()

    @classmethod
    def spawn(cls, settings: Settings) -> "TrainerProcess":
        python = rasa_executable(settings).with_name("python")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([str(python), str(TRAIN_SCRIPT)], cwd=settings.data_dir, env=rasa_env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)
        return cls(proc)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def discard(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # end of input: it exits by itself
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def run(self, job: dict, on_output: Callable[[str], None] | None, timeout_secs: float) -> None:
        """Hand over the job and follow its output until the process ends."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        watchdog = threading.Timer(timeout_secs, self.proc.kill)  # also when Rasa prints nothing
        watchdog.daemon = True
        watchdog.start()
        tail: list[str] = []
        try:
            try:
                self.proc.stdin.write(json.dumps(job) + "\n")
                self.proc.stdin.close()
            except OSError as exc:  # it died before the job came
                raise TrainingError(f"Rasa's training process ended early: {exc}") from exc
            for line in self.proc.stdout:
                tail = (tail + [line.rstrip()])[-30:]
                if on_output:
                    on_output(line.rstrip())
            code = self.proc.wait()
        finally:
            watchdog.cancel()
            self.discard()
        if code != 0:
            if code < 0 and time.monotonic() - self.started >= timeout_secs:
                raise TrainingError(f"training took longer than {timeout_secs:.0f} s; stopped")
            raise TrainingError("rasa train nlu failed:\n" + "\n".join(tail))


def train(settings: Settings, *, content: Content | None = None, out_dir: str | Path | None = None,
          exclude: Iterable[str] = (), on_output: Callable[[str], None] | None = None) -> Path:
    """Train a model; returns the path of the new model file.

    `on_output` receives Rasa's output line by line (the admin page shows
    progress from it)."""
    return train_and_parse(settings, content=content, out_dir=out_dir, exclude=exclude,
                           on_output=on_output).path


def train_and_parse(settings: Settings, *, content: Content | None = None,
                    out_dir: str | Path | None = None, exclude: Iterable[str] = (),
                    on_output: Callable[[str], None] | None = None,
                    parse_texts: Sequence[str] = (), trainer: TrainerProcess | None = None) -> TrainedModel:
    """Train a model and parse ``parse_texts`` with it in the same Rasa process:
    an evaluation without starting a Rasa server for the new model.

    ``trainer``: a process started ahead (its imports done or under way);
    without one, or when it has died, a new one is started."""
    content = content or Content.load(settings.training_data_dir)
    out = Path(out_dir or settings.model_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if trainer is None or not trainer.alive():
        if trainer is not None:
            trainer.discard()
        trainer = TrainerProcess.spawn(settings)
    texts = list(dict.fromkeys(parse_texts))
    try:
        with tempfile.TemporaryDirectory(prefix="polku-train-") as tmp:
            nlu_path = Path(tmp) / "nlu.yml"
            config_path = Path(tmp) / "config.yml"
            nlu_path.write_text(nlu_yaml(content, exclude), encoding="utf-8")
            config_path.write_text(rasa_config(settings), encoding="utf-8")
            name = "polku-" + time.strftime("%Y%m%d-%H%M%S")
            job = {"config": str(config_path), "nlu": str(nlu_path), "out": str(out), "name": name}
            parsed_path = Path(tmp) / "parsed.json"
            if texts:
                texts_path = Path(tmp) / "texts.json"
                texts_path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
                job.update(parse=str(texts_path), parsed=str(parsed_path))
            trainer.run(job, on_output, TRAINING_TIMEOUT_SECS)
            parses: dict[str, dict] = {}
            if texts:
                try:
                    results = json.loads(parsed_path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise TrainingError(f"the new model's parse results are missing: {exc}") from exc
                if len(results) != len(texts):
                    raise TrainingError(f"{len(results)} parse results for {len(texts)} texts")
                parses = dict(zip(texts, results))
    finally:
        trainer.discard()
    model = out / f"{name}.tar.gz"
    if not model.exists():
        raise TrainingError(f"rasa train finished but {model} is missing")
    meta = {"fingerprint": fingerprint(content, settings), "trained_at": time.time(),
            "examples": len(content.example_texts())}
    model.with_suffix("").with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    return TrainedModel(model, parses)


def load_heldout(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or []
