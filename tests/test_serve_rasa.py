"""`python -m bot serve-rasa` (what `./polku start` runs) with two Rasa servers:
it starts both, starts one again when it dies while the other answers, and
stops both when it is stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from bot.rasa_server import free_port, rasa_answers
from bot.settings import PROJECT_ROOT

pytestmark = pytest.mark.rasa


def _rasa_pids(port: int) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"rasa run --enable-api .* -p {port}( |$)"], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def _rasa_pid(port: int) -> int:
    pids = _rasa_pids(port)
    assert len(pids) == 1, f"Rasa processes on port {port}: {pids}"
    return pids[0]


def _parse(url: str) -> str:
    request = urllib.request.Request(url + "/model/parse", data=b'{"text": "miten haen asumistukea"}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_serve_rasa_starts_both_servers_restarts_one_that_dies_and_stops_both(rasa_model, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(rasa_model, models / rasa_model.name)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    env = {**os.environ, "POLKU_RASA_URL": ",".join(urls), "POLKU_MODEL_DIR": str(models),
           "POLKU_DATA_DIR": str(tmp_path / "data")}
    out_path = tmp_path / "serve-rasa.out"
    with open(out_path, "w") as out:
        serve = subprocess.Popen([sys.executable, "-m", "bot", "serve-rasa"], cwd=PROJECT_ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, text=True)

    def _wait(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        raise AssertionError(f"{what} within {timeout:.0f} s; serve-rasa said:\n{out_path.read_text()}")

    try:
        # Killed while it is still loading, before serve-rasa has seen it ready (once that
        # stopped every Rasa process, when it raced with the wait for readiness).
        _wait(lambda: _rasa_pids(ports[0]), 60, "the first Rasa process did not start")
        first = _rasa_pid(ports[0])
        os.kill(first, signal.SIGKILL)
        _wait(lambda: not rasa_answers(urls[0]), 10, "the killed Rasa still answered")
        _wait(lambda: rasa_answers(urls[1]), 240, "the second Rasa server did not answer")
        assert "housing_allowance" in _parse(urls[1])  # the other one answers meanwhile
        _wait(lambda: rasa_answers(urls[0]), 240, "the killed Rasa was not started again")
        assert _rasa_pid(ports[0]) != first and serve.poll() is None
        assert "housing_allowance" in _parse(urls[0])
        second = _rasa_pid(ports[1])
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    output = out_path.read_text()
    assert "starting it again" in output, output
    # Stopped with SIGTERM (as ./polku's trap does), it stops its Rasa processes too.
    _wait(lambda: not any(rasa_answers(url) for url in urls), 30, "a Rasa server outlived serve-rasa")
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)
