"""Train the Rasa NLU model from ``training_data/``.

Our YAML (one file per intent, examples per language) is turned into Rasa's
NLU format and trained with Rasa's own CLI in its own Python 3.10 venv.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import yaml

from .content import Content
from .settings import PROJECT_ROOT, Settings

RASA_CONFIG_TEMPLATE = PROJECT_ROOT / "bot" / "rasa" / "config.yml"
TRAINING_TIMEOUT_SECS = 1200
MODEL_GLOB = "*.tar.gz"


class TrainingError(RuntimeError):
    pass


def rasa_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RASA_TELEMETRY_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONWARNINGS="ignore", SQLALCHEMY_SILENCE_UBER_WARNING="1")
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


def train(settings: Settings, *, content: Content | None = None, out_dir: str | Path | None = None,
          exclude: Iterable[str] = (), on_output: Callable[[str], None] | None = None) -> Path:
    """Train a model; returns the path of the new model file.

    `on_output` receives Rasa's output line by line (the admin page shows
    progress from it)."""
    content = content or Content.load(settings.training_data_dir)
    out = Path(out_dir or settings.model_dir)
    out.mkdir(parents=True, exist_ok=True)
    exe = rasa_executable(settings)
    with tempfile.TemporaryDirectory(prefix="polku-train-") as tmp:
        nlu_path = Path(tmp) / "nlu.yml"
        config_path = Path(tmp) / "config.yml"
        nlu_path.write_text(nlu_yaml(content, exclude), encoding="utf-8")
        config_path.write_text(rasa_config(settings), encoding="utf-8")
        name = "polku-" + time.strftime("%Y%m%d-%H%M%S")
        cmd = [str(exe), "train", "nlu", "--config", str(config_path), "--nlu", str(nlu_path),
               "--out", str(out), "--fixed-model-name", name]
        env = rasa_env()
        # Rasa caches trained components (the featurizers) between runs: keep
        # the cache so that a retrain after a small edit is faster.
        env["RASA_CACHE_DIRECTORY"] = str(settings.data_dir / "rasa-cache")
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        tail: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + TRAINING_TIMEOUT_SECS
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            if on_output:
                on_output(line.rstrip())
            if time.monotonic() > deadline:
                proc.kill()
                raise TrainingError(f"training took longer than {TRAINING_TIMEOUT_SECS} s; stopped")
        if proc.wait() != 0:
            raise TrainingError("rasa train nlu failed:\n" + "\n".join(tail))
    model = out / f"{name}.tar.gz"
    if not model.exists():
        raise TrainingError(f"rasa train finished but {model} is missing")
    meta = {"fingerprint": fingerprint(content, settings), "trained_at": time.time(),
            "examples": sum(len(v) for d in content.intents.values() for v in d.examples.values())}
    model.with_suffix("").with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    return model


def load_heldout(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or []
