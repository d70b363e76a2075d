"""Rasa's HTTP API with a token that is on no command line (issue 16)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.rasa_server import RasaProcess, free_port, rasa_answers
from bot.settings import Settings

TOKEN = "rasa-test-token-" + "x7Q2" * 6


@pytest.fixture(scope="module")
def rasa_with_token(rasa_model, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("rasa-token")
    # Set as an operator would: in the environment of the process that starts Rasa.
    os.environ["POLKU_RASA_TOKEN"] = TOKEN
    try:
        settings = Settings(environ={"POLKU_DATA_DIR": str(data_dir), "POLKU_RASA_TOKEN": TOKEN})
        process = RasaProcess(settings, rasa_model, free_port(), log_path=data_dir / "rasa.log").start()
    finally:
        del os.environ["POLKU_RASA_TOKEN"]
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_rasa_api_needs_the_token(rasa_with_token):
    url = rasa_with_token.url
    assert _status(url + "/status") == 401
    assert _status(url + "/status?token=wrong") == 401
    assert _status(url + "/status?token=" + TOKEN) == 200
    assert not rasa_answers(url) and rasa_answers(url, token=TOKEN)
    # Loading a model (what an attacker on the host would do) is refused without it.
    request = urllib.request.Request(url + "/model", method="PUT", data=json.dumps({"model_file": "/x"}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("PUT /model without the token was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401


def test_the_token_is_on_no_command_line_nor_in_the_environment(rasa_with_token):
    pid = rasa_with_token.proc.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"run_rasa\x00run\x00--enable-api" in cmdline
    assert TOKEN.encode() not in cmdline and TOKEN.encode() not in environ
    # Nor in any process of ours (ps shows every command line to every user).
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                assert TOKEN.encode() not in (proc / "cmdline").read_bytes(), proc.name
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
