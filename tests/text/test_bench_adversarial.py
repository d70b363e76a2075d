"""`./polku bench adversarial` still runs and reports its figures (not judged here,
except that the adversarial worst case is printed beside the ordinary one)."""

from __future__ import annotations

import re
import subprocess
import sys

from bot.settings import PROJECT_ROOT


def test_adversarial_benchmark_runs_and_reports():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "adversarial", "--generated", "4"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"adversarial, 2000 chars \(n=\d+\)", out.stdout), out.stdout
    assert re.search(r"worst adversarial / worst ordinary of 2000 chars: [\d.]+x", out.stdout), out.stdout
    assert out.stdout.count("whole path (Bot.handle)") == 3, out.stdout
