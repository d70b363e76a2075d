"""python -m benchmarks [parse|chat|roundtrips|handoff|adversarial|fuzz] ..."""

from __future__ import annotations

import argparse
import importlib


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="name")
    p = sub.add_parser("parse", help="parse latency: our path beside Rasa's own /model/parse")
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    c = sub.add_parser("chat", help="chat load: many Socket.IO residents, ours beside stock `rasa run` socketio")
    from .chat import add_arguments as chat_arguments
    chat_arguments(c)
    r = sub.add_parser("roundtrips", help="database and Redis round trips per message, counted inside the server")
    from .roundtrips import add_arguments as roundtrips_arguments
    roundtrips_arguments(r)
    h = sub.add_parser("handoff", help="counsellor -> resident latency across processes; the pick-up race")
    from .handoff import add_arguments as handoff_arguments
    handoff_arguments(h)
    a = sub.add_parser("adversarial", help="bot path CPU time: 2,000-character adversarial messages beside ordinary ones")
    from .adversarial import add_arguments as adversarial_arguments
    adversarial_arguments(a)
    f = sub.add_parser("fuzz", help="100,000 fuzzed events and frames: events/s, problems, /health latency, RSS")
    from .fuzz import add_arguments as fuzz_arguments
    fuzz_arguments(f)
    args = parser.parse_args()
    names = [args.name] if args.name else ["parse", "chat", "roundtrips", "handoff", "adversarial", "fuzz"]
    for name in names:
        if name != args.name:
            args = parser.parse_args([name])
        print(f"=== benchmark: {name}")
        importlib.import_module(f"benchmarks.{name}").main(args)


if __name__ == "__main__":
    main()
