"""Our Rasa components (bot/rasa/polku_components.py) against Rasa's own classes,
in Rasa's environment, on the session's trained model."""

from __future__ import annotations

import json
import subprocess

import yaml

from bot.content import Content
from bot.settings import PROJECT_ROOT, Settings
from bot.training import rasa_env, rasa_executable

CHECK = PROJECT_ROOT / "tests" / "rasa_checks" / "check_components.py"

# Odd input a resident may type: digits (Rasa's number token), unknown words,
# accents and case, emoji, a non-breaking space, a very long "word", repeats.
ODD_TEXTS = [
    "123", "asumistuki 2024 ja 450e", "ÅÄÖ åäö ÉÈ", "ASUMISTUKI!!!", "🙂🙂 apua", "hei\u00a0kuka siellä",
    "x" * 300, "kela kela kela kela", "q", "???", "tarvitsen-apua/nyt", "toimeentulotukea.Miten",
]


def test_our_rasa_components_match_rasas_own(rasa_model, tmp_path):
    training = Content.load(Settings(environ={}).training_data_dir).example_texts()
    heldout = [item["text"] for item in
               yaml.safe_load((PROJECT_ROOT / "tests" / "data" / "heldout.yml").read_text(encoding="utf-8"))]
    texts = training + heldout + ODD_TEXTS
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    python = rasa_executable(Settings(environ={})).with_name("python")
    done = subprocess.run([str(python), str(CHECK), str(rasa_model), str(texts_file)], env=rasa_env(),
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("POLKU-REPORT ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(lines[-1].removeprefix("POLKU-REPORT "))
    assert report["texts"] == len(texts) > 1000
    assert report["feature_differences"] == []
    assert report["parse_differences"] == []
    assert report["batch_differences"] == []
    # our paths really ran (a silent fallback to Rasa's would pass the comparisons)
    assert report["concrete_function_used"]
    assert report["own_batch_used"]
    assert report["tokens_cached"] > 1000
