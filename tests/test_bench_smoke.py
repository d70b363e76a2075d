"""The handoff benchmark still runs end to end (a few messages, one race), so that
`./polku bench` cannot rot unnoticed. Its figures are not judged here."""

from __future__ import annotations

import re
import subprocess
import sys

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
