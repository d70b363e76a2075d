"""Train a Rasa NLU model and, in the same process, parse a list of texts with it.

Runs in Rasa's own Python 3.10 environment (``.venv-rasa/bin/python``), not in
ours: our code starts it from ``bot.training``. Doing both in one process saves
what a separate evaluation would cost: importing Rasa and TensorFlow a second
time and starting a server.

    python train_nlu.py

imports Rasa and TensorFlow (about 10 s), prints ``POLKU-READY``, then reads
one job, a JSON object on one line of stdin::

    {"config": C, "nlu": N, "out": DIR, "name": NAME, "parse": IN.json, "parsed": OUT.json}

(``parse``/``parsed`` optional), runs it and exits. End of input instead of a
job exits at once: the process can be started ahead of a job ("warm") and
thrown away unused. ``IN.json`` is a JSON list of texts; ``OUT.json`` gets one
object per text, exactly what Rasa's ``POST /model/parse`` answers for it
(``Agent.parse_message`` is what that endpoint calls). Rasa's training output
(the "Epochs: NN%" lines) goes to stderr as with ``rasa train nlu``.
"""

import asyncio
import json
import logging
import os
import sys


def parse_all(model_path: str, texts: list) -> list:
    from rasa.core.agent import Agent

    agent = Agent.load(model_path)

    async def run() -> list:
        return [await agent.parse_message(text) for text in texts]

    return asyncio.run(run())


def skip_training_cache() -> None:
    """Train every component afresh, with no fingerprints and no cache.

    Rasa's training cache saves work only when the same data is trained again
    with a changed later component. Our retrains follow an edit of the data,
    so every component misses, yet Rasa still fingerprints the whole training
    data before training, fingerprints every component's output (the data
    with all its features) after it and writes that output to the cache:
    about 5 s of a 60-70 s retrain on a 2-core machine. ``RASA_MAX_CACHE_SIZE=0``
    (read when training starts) turns the writes off; the hook that only feeds
    the cache is turned off here; ``force_full_training`` skips the
    fingerprint run. The training itself is untouched. Rasa is pinned
    (3.6.21), so these internals don't move under us.
    """
    os.environ["RASA_MAX_CACHE_SIZE"] = "0"
    from rasa.engine.training.hooks import TrainingHook

    TrainingHook.on_before_node = lambda self, *args, **kwargs: {}
    TrainingHook.on_after_node = lambda self, *args, **kwargs: None


def run_job(job: dict) -> int:
    from rasa.model_training import train_nlu

    skip_training_cache()
    # train_nlu hands additional_arguments on to the graph training as keyword
    # arguments, which is where force_full_training is read.
    model = train_nlu(job["config"], job["nlu"], job["out"], fixed_model_name=job["name"],
                      additional_arguments={"force_full_training": True})
    if not model or not os.path.isfile(model):
        print("training produced no model", file=sys.stderr)
        return 1
    print(f"POLKU-MODEL {model}", flush=True)
    if job.get("parse"):
        with open(job["parse"], encoding="utf-8") as handle:
            texts = json.load(handle)
        print(f"POLKU-PHASE evaluating {len(texts)}", flush=True)
        results = parse_all(model, texts)
        tmp = job["parsed"] + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(results, handle, ensure_ascii=False)
        os.replace(tmp, job["parsed"])
    return 0


def main() -> int:
    # Everything a job needs is imported before the job arrives.
    import rasa.core.agent  # noqa: F401
    import rasa.model_training  # noqa: F401
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    # What `rasa train` sets up: INFO for Rasa's own loggers, and no
    # per-message debug lines when parsing.
    configure_logging_and_warnings(logging.INFO)
    configure_structlog(logging.INFO)
    print("POLKU-READY", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    return run_job(json.loads(line))


if __name__ == "__main__":
    sys.exit(main())
