"""Servers of the chat benchmark: our chat server processes, the Rasa NLU
server they call, the stock ``rasa run`` socketio reference (its model
generated, trained and cached here), a temporary PostgreSQL database and a
Redis key prefix. Everything on 127.0.0.1; every process started here is
stopped here, by its own id."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import yaml

from bot.content import CONTRACT_INTENTS, Content
from bot.rasa_server import RasaProcess, free_port
from bot.settings import PROJECT_ROOT, Settings
from bot.training import TrainingError, fingerprint, latest_model, nlu_yaml, rasa_config, rasa_env, \
    rasa_executable, train

BENCH_DIR = PROJECT_ROOT / "var" / "bench"
PG_ADMIN_DSN = os.environ.get("CHAT_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CHAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CLK_TCK = os.sysconf("SC_CLK_TCK")
REFERENCE_TRAIN_TIMEOUT_SECS = 1200

Log = Callable[[str], None]


# --- process figures ---------------------------------------------------------------


def proc_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def proc_cpu_secs(pid: int) -> float:
    """User + system CPU seconds of the process (its threads included)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pid_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie, not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def proc_runqueue_wait_secs(pid: int) -> float:
    """Seconds the process's threads have waited for a CPU while runnable (/proc/<pid>/task/*/schedstat):
    on a shared machine this shows how much other tenants kept the server off the cores."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            continue
    return total / 1e9


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])


def _high_nofile() -> None:
    """preexec_fn of server processes: as many open files as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop_process_group(proc: subprocess.Popen | None, grace_secs: float = 15.0) -> None:
    """Stop a child we started in its own session (its group id is its pid)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_secs)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- our chat server ---------------------------------------------------------------


class ChatServerProcess:
    """One ``python -m chat_server`` child on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None,
                 root: Path | None = None) -> None:
        self.port = port or free_port()
        self.root = Path(root) if root else PROJECT_ROOT
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "ChatServerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chat_server", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_high_nofile)
        log.close()
        return self

    def wait_ready(self, timeout_secs: float = 60.0) -> "ChatServerProcess":
        deadline = time.monotonic() + timeout_secs
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chat server exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_tail())
            if _http_ok(self.url + "/health"):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"chat server did not answer /health in {timeout_secs:.0f} s; see {self.log_path}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        _stop_process_group(self.proc)


def chat_server_env(data_dir: Path, rasa_url: str, origin: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmark chat server: our settings only, limits high enough for the load
    (every simulated resident comes from 127.0.0.1, one address)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLKU_")}
    env.update({
        "POLKU_DATA_DIR": str(data_dir),
        "POLKU_RASA_URL": rasa_url,
        "POLKU_ALLOWED_ORIGINS": origin,
        "POLKU_RATE_SESSION_PER_MIN": "1000000",
        "POLKU_RATE_ADDRESS_PER_MIN": "1000000000",
        "POLKU_SOCKETS_PER_ADDRESS": "1000000",
        "POLKU_QUEUED_PER_ADDRESS": "1000000",
        "POLKU_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


# --- the NLU model and its Rasa server ------------------------------------------------


def nlu_model(settings: Settings, log: Log) -> Path:
    """The newest model in the model directory when it was trained from the current
    training data and pipeline; else one trained from them into var/bench (cached)."""
    content = Content.load(settings.training_data_dir)
    wanted = fingerprint(content, settings)
    newest = latest_model(settings.model_dir)
    if newest is not None:
        meta_path = newest.with_suffix("").with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("fingerprint") == wanted:
            return newest
        log(f"note: newest model {newest.name} was trained from other data than training_data/ now "
            f"(fingerprint {meta.get('fingerprint')} != {wanted}); using one trained from the current data")
    cache = BENCH_DIR / f"nlu-{wanted}"
    cached = latest_model(cache)
    if cached is not None:
        return cached
    if newest is None:
        log("No trained model yet: training one from training_data/ (about a minute)...")
    else:
        log(f"Training the current NLU data into {cache} (about a minute, cached for later runs)...")
    return train(settings, content=content, out_dir=cache)


def start_rasa(settings: Settings, model: Path, work_dir: Path, name: str,
               extra_args: tuple[str, ...] = ()) -> RasaProcess:
    rasa_settings = Settings(environ={}, POLKU_DATA_DIR=str(work_dir), POLKU_RASA_VENV=settings.rasa_venv)
    process = RasaProcess(rasa_settings, model, free_port(), extra_args=extra_args,
                          log_path=work_dir / f"{name}.log", cwd=work_dir)
    return process.start()


# --- the stock Rasa reference -----------------------------------------------------------

CREDENTIALS = {"socketio": {"user_message_evt": "user_uttered", "bot_message_evt": "bot_uttered",
                            "session_persistence": True}}


def _one_message(text: str) -> str:
    # Rasa's socketio channel sends every "\n\n"-separated part as its own bot_uttered;
    # one answer is one message in both servers.
    return "\n".join(part for part in text.split("\n") if part.strip())


def reference_project(settings: Settings, polku_components: bool = False) -> dict[str, str]:
    """The stock Rasa project: file name -> text. The same NLU data and pipeline as ours,
    one response per intent (our Finnish answer) and one rule per intent.

    The pipeline names Rasa's own featurizer and classifier where ours names our
    subclasses (bot/rasa/polku_components.py): stock Rasa, with the same
    settings, trains the same model (our classes train exactly as Rasa's and
    predict bit-identically; tests/test_rasa_components.py). `polku_components`
    keeps our classes, to see how much of a difference is theirs."""
    content = Content.load(settings.training_data_dir)
    responses: dict[str, list[dict]] = {}
    rules = []
    answers = {intent: intent for intent in CONTRACT_INTENTS}
    answers["nlu_fallback"] = "fallback"  # FallbackClassifier's intent gets our rephrase answer
    for intent, response_id in answers.items():
        reply = content.reply(response_id, "fi")
        entry: dict = {"text": _one_message(reply.text)}
        if reply.quick_replies:
            entry["buttons"] = [{"title": qr.title, "payload": qr.payload} for qr in reply.quick_replies]
        responses[f"utter_{intent}"] = [entry]
        rules.append({"rule": f"answer {intent}",
                      "steps": [{"intent": intent}, {"action": f"utter_{intent}"}]})
    domain = {"version": "3.1", "intents": list(CONTRACT_INTENTS), "responses": responses,
              "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True}}
    config = rasa_config(settings)
    if "policies: []" not in config:
        raise RuntimeError("bot/rasa/config.yml no longer ends with `policies: []`; update reference_project")
    config = config.replace("policies: []", "policies:\n  - name: RulePolicy")
    if not polku_components:
        config = re.sub(r"\bpolku_components\.Polku(\w+)", r"\1", config)
    dump = lambda data: yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000)  # noqa: E731
    return {
        "domain.yml": dump(domain),
        "config.yml": config,
        "data/nlu.yml": nlu_yaml(content),
        "data/rules.yml": dump({"version": "3.1", "rules": rules}),
        "credentials.yml": dump(CREDENTIALS),
    }


def _rasa_version(settings: Settings) -> str:
    for meta in Path(settings.rasa_venv).glob("lib/python*/site-packages/rasa-*.dist-info"):
        return meta.name
    return "unknown"


def reference_model(settings: Settings, log: Log, polku_components: bool = False) -> tuple[Path, Path]:
    """(model, credentials file): trained with `rasa train` once per fingerprint, cached in var/bench."""
    files = reference_project(settings, polku_components)
    digest = hashlib.sha256(_rasa_version(settings).encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    key = digest.hexdigest()[:16]
    cache = BENCH_DIR / f"rasa-reference-{key}"
    model = cache / "model.tar.gz"
    credentials = cache / "credentials.yml"
    if model.exists() and credentials.exists():
        return model, credentials
    log(f"Training the stock Rasa reference model ({key}) with `rasa train` (about a minute, cached)...")
    exe = rasa_executable(settings)
    with tempfile.TemporaryDirectory(prefix="polku-bench-ref-") as tmp:
        root = Path(tmp)
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
        cmd = [str(exe), "train", "--domain", "domain.yml", "--config", "config.yml", "--data", "data",
               "--out", str(root / "models"), "--fixed-model-name", "reference"]
        try:
            done = subprocess.run(cmd, cwd=root, env=rasa_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=REFERENCE_TRAIN_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            raise TrainingError(f"rasa train took longer than {REFERENCE_TRAIN_TIMEOUT_SECS} s") from None
        trained = root / "models" / "reference.tar.gz"
        if done.returncode != 0 or not trained.exists():
            raise TrainingError("rasa train of the reference failed:\n"
                                + "\n".join(done.stdout.splitlines()[-30:]))
        cache.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (cache / "project" / name).parent.mkdir(parents=True, exist_ok=True)
            (cache / "project" / name).write_text(text, encoding="utf-8")
        credentials.write_text(files["credentials.yml"], encoding="utf-8")
        shutil.move(str(trained), model)
    return model, credentials


# --- PostgreSQL and Redis ---------------------------------------------------------------


class TempPostgres:
    """A database of the benchmark's own on 127.0.0.1:5432, dropped afterwards."""

    def __init__(self) -> None:
        self.name = "polku_bench_" + secrets.token_hex(5)
        self.url = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> "TempPostgres":
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class TempRedisPrefix:
    """A Redis key prefix of the benchmark's own; its keys are deleted afterwards."""

    def __init__(self) -> None:
        self.prefix = f"polkubench:{secrets.token_hex(5)}:"
        self.url = REDIS_URL

    def __enter__(self) -> "TempRedisPrefix":
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
        return self

    def __exit__(self, *exc) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=3)
        try:
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i:i + 500])
        finally:
            client.close()
