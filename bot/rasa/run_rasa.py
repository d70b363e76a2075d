"""``rasa run`` with the API token read from stdin instead of the command line.

Rasa 3.6 takes its token only as ``rasa run --auth-token T`` (rasa/cli/run.py,
passed on to ``rasa.core.run.serve_application``), which shows the token to
anyone on the host in the process list (``ps``, /proc/PID/cmdline), and an
environment variable would show in /proc/PID/environ of the process for its
whole life. So ``bot/rasa_server.py`` starts this module instead, in Rasa's
environment (``bot/rasa`` is on its PYTHONPATH), with the arguments of
``rasa run`` and the token on the first line of stdin. The token is added to
Rasa's own argument list in this process's memory only: /proc/PID/cmdline
keeps the arguments the process was started with.

    python -m run_rasa run --enable-api -m MODEL -p PORT   < token
"""

from __future__ import annotations

import sys


def main() -> None:
    token = sys.stdin.readline().strip()
    sys.stdin.close()
    args = sys.argv[1:]
    if token:
        args += ["--auth-token", token]
    sys.argv = ["rasa", *args]
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
