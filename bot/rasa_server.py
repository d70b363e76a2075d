"""Start and stop the Rasa server process (``rasa run --enable-api``).

With ``POLKU_RASA_TOKEN`` set, Rasa's HTTP API needs that token, and the token
is handed to Rasa on its stdin (``bot/rasa/run_rasa.py``), never on a command
line, where every user of the host could read it in the process list."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from .settings import Settings
from .training import TrainingError, latest_model, rasa_env, rasa_executable, train

RASA_READY_TIMEOUT_SECS = 180.0
RASA_STOP_TIMEOUT_SECS = 15.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies
    (even by SIGKILL), so that no Rasa outlives `serve-rasa` and holds its port."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def rasa_answers(url: str, timeout_secs: float = 1.0, token: str = "") -> bool:
    """True when a Rasa server with a loaded model answers at `url` (``token``: its API token)."""
    query = "?" + urllib.parse.urlencode({"token": token}) if token else ""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status" + query, timeout=timeout_secs) as resp:
            return resp.status == 200 and b"model_file" in resp.read()
    except (urllib.error.URLError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RasaProcess:
    """One `rasa run` child process on a model; `extra_args` adds e.g. a socketio channel."""

    def __init__(self, settings: Settings, model: Path, port: int, *, host: str = "127.0.0.1",
                 extra_args: tuple[str, ...] = (), log_path: Path | None = None,
                 cwd: Path | None = None, die_with_parent: bool = False) -> None:
        self.settings = settings
        self.model = Path(model).resolve()
        self.port = port
        self.host = host
        self.extra_args = extra_args
        self.log_path = log_path or settings.data_dir / "rasa.log"
        self.cwd = cwd or settings.data_dir
        self.proc: subprocess.Popen | None = None
        # Stopped when the starting process dies (Linux; start() from the main thread only:
        # the signal follows the thread that started it).
        self.die_with_parent = die_with_parent

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "RasaProcess":
        # `rasa run` through run_rasa.py, which reads the API token from stdin (not the command line).
        python = rasa_executable(self.settings).with_name("python")
        cmd = [str(python), "-m", "run_rasa", "run", "--enable-api", "-m", str(self.model),
               "-i", self.host, "-p", str(self.port), *self.extra_args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = rasa_env()
        env.pop("POLKU_RASA_TOKEN", None)  # Rasa gets it on stdin; /proc/PID/environ would keep it
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdin=subprocess.PIPE, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent if self.die_with_parent else None)
        log.close()
        try:
            self.proc.stdin.write((self.settings.rasa_token + "\n").encode())
            self.proc.stdin.close()
        except BrokenPipeError:  # exited at once; wait_ready says so
            pass
        return self

    def wait_ready(self, timeout_secs: float = RASA_READY_TIMEOUT_SECS) -> "RasaProcess":
        deadline = time.monotonic() + timeout_secs
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise TrainingError(f"Rasa exited with {self.proc.returncode}; see {self.log_path}")
            if rasa_answers(self.url, token=self.settings.rasa_token):
                return self
            time.sleep(0.5)
        raise TrainingError(f"Rasa did not become ready in {timeout_secs:.0f} s; see {self.log_path}")

    def terminate(self) -> None:
        """Ask the process (and its group) to stop; ``stop`` waits for it."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout_secs: float = RASA_STOP_TIMEOUT_SECS) -> None:
        if self.proc and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=timeout_secs)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def stop_all(processes: list[RasaProcess]) -> None:
    """Stop every process: all are asked at once, then each is waited for."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop()


def ensure_model(settings: Settings, log=print) -> Path:
    """The newest trained model; trains one first when there is none."""
    model = latest_model(settings.model_dir)
    if model is None:
        log("No trained model yet: training one from training_data/ (about a minute)...")
        model = train(settings)
        log(f"Trained {model.name}")
    return model


def start_missing_rasa(settings: Settings, log=print, *, die_with_parent: bool = False) -> list[RasaProcess]:
    """Start a Rasa process on the newest model for each configured Rasa server that
    does not answer, at its port (they load side by side); not waited for. None
    when all answer already."""
    missing = [url for url in settings.rasa_urls if not rasa_answers(url, token=settings.rasa_token)]
    for url in missing:
        if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
            raise TrainingError(f"Rasa at {url} does not answer and is not local; start it there.")
    if not missing:
        return []
    model = ensure_model(settings, log)
    log(f"Starting Rasa on {model.name} at {', '.join(missing)} (about 20 s)...")
    processes = []
    for url in missing:
        parsed = urlparse(url)
        first = url == settings.rasa_urls[0]
        log_path = settings.data_dir / ("rasa.log" if first else f"rasa-{parsed.port or 5005}.log")
        processes.append(RasaProcess(settings, model, parsed.port or 5005, host=parsed.hostname,
                                     log_path=log_path, die_with_parent=die_with_parent).start())
    return processes


def ensure_rasa(settings: Settings, log=print) -> list[RasaProcess]:
    """Use the configured Rasa servers that answer; start the others and wait until
    they answer. Returns the processes we started (the caller stops them), none
    when all were already running."""
    processes = start_missing_rasa(settings, log)
    try:
        for process in processes:
            process.wait_ready()
    except BaseException:
        stop_all(processes)
        raise
    return processes
