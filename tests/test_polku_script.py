"""`./polku start`'s running part (``run_system``, sourced from the script so
that nothing is installed): Ctrl-C and SIGTERM to its process group stop
everything it started, and a process left on one of its ports is reported
with its PID instead of a shell error."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchmarks.chat_servers import pid_alive
from bot.rasa_server import free_port
from bot.settings import PROJECT_ROOT

STOP_WITHIN_SECS = 40.0  # the chat server drains (<= 5 s), each Rasa gets 15 s before SIGKILL


def _env(tmp_path: Path, port: int, *rasa_ports: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLKU_")}
    return {**env, "POLKU_PORT": str(port),
            "POLKU_RASA_URL": ",".join(f"http://127.0.0.1:{p}" for p in rasa_ports),
            "POLKU_DATA_DIR": str(tmp_path / "data"), "POLKU_CHAT_ALWAYS_OPEN": "true",
            "POLKU_ADMIN_PREWARM_TRAINER": "false", **extra}


def _run_system(env: dict[str, str], out) -> subprocess.Popen:
    # Its own process group, as a terminal gives it: Ctrl-C is SIGINT to the group.
    return subprocess.Popen(["bash", "-c", "source ./polku && run_system"], cwd=PROJECT_ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_process_on_a_port_is_reported_with_its_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import socket, time\n"
                               "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
                               "print(s.getsockname()[1], flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        busy = int(holder.stdout.readline())
        result = subprocess.run(["bash", "-c", "source ./polku && run_system"], cwd=PROJECT_ROOT,
                                env=_env(tmp_path, busy, free_port()), capture_output=True, text=True,
                                timeout=60)
    finally:
        holder.kill()
        holder.wait()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"port {busy} is in use by PID {holder.pid}" in output, output
    assert "kill" in output and "unbound variable" not in output, output


@pytest.mark.rasa
# SIGTERM with the default two Rasa servers: the group's SIGTERM and then the trap's reach
# serve-rasa while it stops the first one (the second was left running).
@pytest.mark.parametrize("stop_signal, rasa_servers", [(signal.SIGINT, 1), (signal.SIGTERM, 2)],
                         ids=["ctrl-c", "sigterm-two-rasa"])
def test_start_stops_everything_it_started(rasa_model, tmp_path, stop_signal, rasa_servers):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(rasa_model, models / rasa_model.name)
    port, rasa_ports = free_port(), [free_port() for _ in range(rasa_servers)]
    out_path = tmp_path / "start.out"
    with open(out_path, "w") as out:
        script = _run_system(_env(tmp_path, port, *rasa_ports, POLKU_MODEL_DIR=str(models)), out)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while not _answers(f"http://127.0.0.1:{port}/health"):
            assert script.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.5)
        started = _descendants(script.pid)
        assert len(started) >= 2 + rasa_servers, started  # serve-rasa, its Rasa servers, the chat server
        # ./polku start gives Rasa a token of its own: the API refuses a caller without it.
        for rasa_port in rasa_ports:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{rasa_port}/status", timeout=5)
            assert refused.value.code in (401, 403), refused.value.code
        began = time.monotonic()
        os.killpg(script.pid, stop_signal)
        script.wait(timeout=STOP_WITHIN_SECS)
        while any(pid_alive(pid) for pid in started) and time.monotonic() - began < STOP_WITHIN_SECS:
            time.sleep(0.2)
        left = [pid for pid in started if pid_alive(pid)]
        output = out_path.read_text()
        assert not left, f"still running: {left}\n{output}"
        assert _port_free(port) and all(_port_free(p) for p in rasa_ports)
        assert "unbound variable" not in output and "Stopping Polku chat" in output, output
    finally:
        for pid in started | _descendants(script.pid) | {script.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_rasa_process_does_not_outlive_a_killed_serve_rasa():
    """serve-rasa's children are started with a parent-death signal (bot.rasa_server._die_with_parent):
    here a stand-in child, since only the start matters, and serve-rasa killed with SIGKILL."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "from bot.rasa_server import _die_with_parent\n"
         "child = subprocess.Popen(['sleep', '60'], start_new_session=True, preexec_fn=_die_with_parent)\n"
         "print(child.pid, flush=True); time.sleep(60)"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert pid_alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
