"""The Socket.IO libraries' logs, made safe to keep: no client text, no
tracebacks, no floods.

python-engineio and python-socketio log what clients send: packet data and
event names at INFO, origins and session ids in their errors, and
tracebacks whose exception text may quote a frame. ``install()`` (called by
``create_app``) gives their loggers one ``ClientTextFilter`` that rewrites
every record before any handler sees it:

- the message's arguments become their kinds and lengths (``<str 12>``);
- the parts of the library's pre-formatted messages that come from the
  client (a session id, an origin) are withheld;
- a traceback becomes the exception's type name;
- one message repeats at most ``BURST`` times a ``WINDOW_SECS``; the next
  one that gets through says how many were withheld (``RepeatFilter``, also
  on our own loggers of the input handlers, for their warnings and errors).

The loggers stay at ERROR whatever ``POLKU_LOG_LEVEL`` says (their INFO lines
carry packet data), and get no handler of their own: records go to the
application's handlers once (the libraries add a stderr handler of their own
when given ``logger=False``, which logged each traceback twice).
"""

from __future__ import annotations

import logging
import re
import time

from aiohttp.abc import AbstractAccessLogger

LIBRARY_LOGGERS = ("engineio.server", "socketio.server", "engineio", "socketio",
                   "engineio.client", "socketio.client")
LIBRARY_LEVEL = logging.ERROR
BURST = 5
WINDOW_SECS = 60.0
MAX_MESSAGE_CHARS = 200

# python-engineio's messages that embed client text (3 Dec 2026, python-engineio 4.x):
# f"Invalid session {sid}", f"Socket for session {sid} is not connected",
# f"{origin} is not an accepted origin.", f"{e} {sid}".
_SESSION = re.compile(r"session \S*")
_ORIGIN = re.compile(r"^.* is not an accepted origin\.")
_KNOWN_CONSTANT = re.compile(r"^[A-Za-z][A-Za-z .,()'<>-]*$")


def kind_of(value: object) -> str:
    """What a log argument is, without what it says."""
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set)):
        return f"<{type(value).__name__} {len(value)}>"
    if value is None or isinstance(value, bool):
        return repr(value)
    return f"<{type(value).__name__}>"


def scrub_message(message: str) -> str:
    """A library's pre-formatted message with the client's parts withheld."""
    message = _ORIGIN.sub("an origin is not an accepted origin.", message)
    message = _SESSION.sub("session <id>", message)
    if not _KNOWN_CONSTANT.match(message):
        # Something else that may quote the client: keep only its first words.
        head = re.match(r"^[A-Za-z][A-Za-z ]{0,60}", message)
        message = (head.group(0).rstrip() if head else "message") + f" <{len(message)} chars withheld>"
    return message[:MAX_MESSAGE_CHARS]


class RepeatFilter(logging.Filter):
    """One message (its template) at most ``burst`` times a ``window_secs``; the
    next one that gets through says how many were withheld. On the loggers of
    the handlers a client's input reaches (a bug a client can trigger at will
    must not fill the disk either)."""

    def __init__(self, burst: int = BURST, window_secs: float = WINDOW_SECS) -> None:
        super().__init__()
        self.burst = burst
        self.window_secs = window_secs
        self._seen: dict[tuple[str, str], list[float | int]] = {}  # key -> [window start, count, withheld]

    def _admit(self, record: logging.LogRecord, template: str) -> str | None:
        """The suffix to add when the record may go out, None when it is withheld."""
        now = time.monotonic()
        key = (record.name, template[:80])
        entry = self._seen.get(key)
        suffix = ""
        if entry is None or now - entry[0] >= self.window_secs:
            withheld = entry[2] if entry is not None else 0
            entry = [now, 0, 0]
            if len(self._seen) > 1000:  # templates are the code's few; bounded all the same
                self._seen.clear()
            self._seen[key] = entry
            if withheld:
                suffix = f" ({withheld} more like it withheld)"
        entry[1] += 1
        if entry[1] > self.burst:
            entry[2] += 1
            return None
        return suffix

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "periodic", False):
            return True  # a summary already comes once a period (frames.FrameStats)
        suffix = self._admit(record, record.msg if isinstance(record.msg, str) else "")
        if suffix is None:
            return False
        if suffix:
            record.msg = f"{record.msg}{suffix}"
        return True


class ClientTextFilter(RepeatFilter):
    """Rewrites the records of the Socket.IO libraries' loggers (see the module's docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            try:
                message = template % tuple(kind_of(a) for a in args)
            except (TypeError, ValueError):
                message = scrub_message(template)
        else:
            message = scrub_message(template)
        if record.exc_info and record.exc_info[0] is not None:
            message += f" ({record.exc_info[0].__name__})"
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        suffix = self._admit(record, template)
        if suffix is None:
            return False
        record.msg = message + suffix
        record.args = None
        return True


# Our loggers whose warnings and errors a client's input can cause.
# (bot.policy bounds its own "NLU unavailable" line to one per NLU_WARNING_EVERY_SECS; a second,
# process-wide limit on it would swallow that line's periodic count.)
INPUT_LOGGERS = ("chat_server.resident", "chat_server.counsellor.channel", "chat_server.counsellor.service",
                 "chat_server.counsellor.sweeps", "chat_server.counsellor.callbacks", "chat_server.frames",
                 "bot.nlu")

_FILTER = ClientTextFilter()
_REPEATS = RepeatFilter()


def install() -> None:
    """Give the Socket.IO libraries' loggers the filter and their level, and our
    input handlers' loggers the repeat limit (idempotent)."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(LIBRARY_LEVEL)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for name in INPUT_LOGGERS:
        logger = logging.getLogger(name)
        if _REPEATS not in logger.filters:
            logger.addFilter(_REPEATS)


class SafeAccessLogger(AbstractAccessLogger):
    """aiohttp's access log without what the client wrote into the URL.

    A request line (``%r``) carries the query string (Engine.IO session ids,
    anything a client appends) and, on unknown paths, whatever text a client
    chooses; one line per request of it is a log anyone can fill. Logged
    instead: the method (when a standard one), the route's pattern
    (``/socket.io/``, ``/admin/intents/{name}``) or ``<unknown path>``, the
    status, the size and the time."""

    METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

    def log(self, request, response, time: float) -> None:
        method = request.method if request.method in self.METHODS else "<other method>"
        route = "<unknown path>"
        match_info = getattr(request, "match_info", None)
        resource = getattr(getattr(match_info, "route", None), "resource", None)
        if resource is not None and getattr(resource, "canonical", None):
            route = resource.canonical
        self.logger.info('"%s %s" %s %s %.6fs', method, route, response.status, response.body_length, time)


def reset_repeats() -> None:
    """Forget the repeat counts (tests that read the log from a fresh start)."""
    _FILTER._seen.clear()
    _REPEATS._seen.clear()
