"""The benchmarks still run end to end with tiny numbers (the handoff benchmark: a few
messages, one race; fuzz; the chat load's production configurations), so that
`./polku bench` cannot rot unnoticed. Their figures are not judged here."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading

from bot.settings import PROJECT_ROOT


def test_handoff_benchmark_runs_and_reports():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "handoff", "--messages", "20", "--warmup", "5", "--races", "2",
         "--counsellors", "6", "--queue", "20", "--queue-consoles", "2", "--queue-changes", "3"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"p50\s+[\d.]+ ms\s+p90\s+[\d.]+ ms\s+p99\s+[\d.]+ ms .* n=20", out.stdout), out.stdout
    assert "double assignments: 0" in out.stdout and "for 2/2 chats" in out.stdout, out.stdout
    assert re.search(r"filling the queue to 20 .* residents got [\d,]+ events", out.stdout), out.stdout
    assert re.search(r"3 changes .* per change [\d,]+ events", out.stdout), out.stdout


def test_fuzz_benchmark_runs_and_reports():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "fuzz", "--events", "300", "--pool", "10"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"fuzz: \d+ events on \d+ connections .* \d+ events/s", out.stdout), out.stdout
    assert "problems found: 0; ERROR/traceback lines in the server log: 0" in out.stdout, out.stdout
    assert re.search(r"/health: .* worst \d+ ms", out.stdout) and "server RSS:" in out.stdout, out.stdout


class _StandInNlu(http.server.BaseHTTPRequestHandler):
    """Rasa's /model/parse answering "greet" at once (and /status), for the chat benchmark's smoke run."""

    def do_POST(self):  # noqa: N802 - the library's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json({"intent": {"name": "greet", "confidence": 0.97},
                    "intent_ranking": [{"name": "greet", "confidence": 0.97}, {"name": "thanks", "confidence": 0.02}]})

    def do_GET(self):  # noqa: N802
        self._json({"model_file": "stand-in.tar.gz", "num_active_training_jobs": 0})

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_chat_benchmark_runs_the_production_configurations():
    """The steady load on one and two processes on PostgreSQL + Redis, with tiny numbers (a stand-in
    NLU instead of Rasa): the table has their rows with p50/p95/p99, throughput and CPU per answer."""
    nlu = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandInNlu)
    thread = threading.Thread(target=nlu.serve_forever, daemon=True)
    thread.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks", "chat", "--scenario", "steady", "--configs",
             "postgresql,postgresql-2", "--residents", "4", "--duration", "2", "--interval", "1",
             "--client-procs", "0", "--rasa-url", f"http://127.0.0.1:{nlu.server_address[1]}",
             "--out", os.devnull],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)
    finally:
        nlu.shutdown()
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    assert "p95 ms" in out.stdout and "CPU ms/answer" in out.stdout, out.stdout
    for name in ("ours (1 process, PostgreSQL + Redis)", "ours (2 processes, PostgreSQL + Redis)"):
        row = re.search(re.escape(name) + r"\s+4\s+\d+\s+(\d+)\s+[\d.]+(\s+[\d.]+){4}\s+0\s+0\s+[\d.]+", out.stdout)
        assert row and int(row.group(1)) > 0, out.stdout


def test_roundtrips_counts_a_bot_turn_on_both_backends():
    """`./polku bench roundtrips` runs; a bot turn's events leave a process in one PUBLISH."""
    out = subprocess.run([sys.executable, "-m", "benchmarks", "roundtrips", "--messages", "2", "--no-reference"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    bot_turn = out.stdout.split("== resident message, bot answers", 1)[1].split("\n== ", 1)[0]
    assert re.search(r"sqlite\s+2 messages", bot_turn) and re.search(r"postgresql\s+2 messages", bot_turn), bot_turn
    assert re.search(r"PostgreSQL round trips \d+", bot_turn) and "PUBLISH 1 " in bot_turn, bot_turn
