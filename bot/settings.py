"""The one registry of Polku chat's settings.

Every setting has a name, a type, a default and a help text, and is read from
the environment (``POLKU_*``). The defaults are the embedded ones: SQLite,
in-memory queue and Socket.IO, Rasa on localhost. A real deployment is one
setting away (``POLKU_DATABASE_URL``, ``POLKU_REDIS_URL``).

``docs/settings.md`` is generated from this registry (``python -m bot
settings-doc``); a test fails when a setting is missing there or when code
reads a ``POLKU_*`` variable that is not registered here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .types import LANGUAGES

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str

    def parse(self, raw: str) -> Any:
        try:
            if self.type is bool:
                lowered = raw.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(raw)
            if self.type is list:
                return [part.strip() for part in raw.split(",") if part.strip()]
            return self.type(raw)
        except ValueError as exc:
            raise SettingsError(
                f"{self.name}={raw!r} is not a valid {self.type.__name__}: {self.help}"
            ) from exc


_REGISTRY: dict[str, Setting] = {}


def _register(name: str, type_: type, default: Any, help_: str) -> None:
    if name in _REGISTRY:
        raise RuntimeError(f"setting {name} registered twice")
    _REGISTRY[name] = Setting(name, type_, default, help_)


# --- General -----------------------------------------------------------------
_register("POLKU_LOG_LEVEL", str, "INFO",
          "Log level of our processes (DEBUG, INFO, WARNING). Message text is never logged at INFO.")
_register("POLKU_DATA_DIR", str, str(PROJECT_ROOT / "var"),
          "Directory for runtime files on embedded defaults: the SQLite database, logs, the generated secret key.")
_register("POLKU_DEFAULT_LANGUAGE", str, "fi",
          "Language (fi, sv or en) used when a message's language cannot be told and the widget sent none.")

# --- Bot and Rasa ------------------------------------------------------------
_register("POLKU_RASA_URL", str, "http://127.0.0.1:5005,http://127.0.0.1:5006",
          "Base URL of the Rasa server that does the language understanding (its HTTP API), or several, "
          "comma-separated, on the same model: the first takes the parses, the next ones take those that "
          "would queue behind it at a moderate load (POLKU_RASA_SPILL_BELOW) and all of them while it is "
          "down or loading a model; a model activation loads every one in turn. `./polku start` starts a "
          "Rasa process (about 0.8 GB each) for each local URL that does not answer; give one URL for one.")
_register("POLKU_RASA_SPILL_BELOW", int, 3,
          "With several Rasa servers: while fewer parses than this are in flight in all, a busy first server "
          "passes the next parse to an idle one; past it, parses queue for the first server, and the others "
          "stay idle (on 2 cores a second busy Rasa slows everything down). 0 spreads parses evenly, for "
          "machines with a core to spare for each Rasa server.")
_register("POLKU_RASA_TOKEN", str, "",
          "Token of Rasa's HTTP API: the Rasa processes we start require it (handed to them on stdin, "
          "never on a command line) and our requests send it (?token=). Set it wherever other users "
          "share the host: without it, anything on the host can load a model into Rasa. Empty: no token, "
          "except under ./polku start, which makes a random one for each run.")
_register("POLKU_RASA_TIMEOUT_SECS", float, 3.0,
          "How long one parse request to Rasa may take before the bot answers that it cannot answer right now.")
_register("POLKU_RASA_VENV", str, str(PROJECT_ROOT / ".venv-rasa"),
          "Rasa's own Python 3.10 virtual environment (installed by ./polku with pinned packages).")
_register("POLKU_MODEL_DIR", str, str(PROJECT_ROOT / "models"),
          "Directory of trained Rasa models; the newest is served unless an admin activated another.")
_register("POLKU_TRAINING_DATA_DIR", str, str(PROJECT_ROOT / "training_data"),
          "Directory of the bot's training data, answers and service facts.")
_register("POLKU_FALLBACK_THRESHOLD", float, 0.3,
          "Below this intent confidence the bot is unsure (nlu_fallback): it asks to rephrase and offers a counsellor.")
_register("POLKU_FALLBACKS_BEFORE_HANDOFF", int, 2,
          "Consecutive fallbacks after which the conversation is handed to the counsellor queue.")

# --- Chat server ---------------------------------------------------------------
_register("POLKU_HOST", str, "127.0.0.1", "Address the chat server listens on.")
_register("POLKU_PORT", int, 8080, "Port the chat server listens on.")
_register("POLKU_PUBLIC_URL", str, "",
          "URL residents reach the chat server at (for the widget snippet); defaults to http://HOST:PORT.")
_register("POLKU_DATABASE_URL", str, "",
          "SQLAlchemy URL of the database. Empty: SQLite in POLKU_DATA_DIR. PostgreSQL: postgresql://user@host/db.")
_register("POLKU_REDIS_URL", str, "",
          "Redis URL (redis://127.0.0.1:6379/0). Empty: queue, presence and Socket.IO stay in this one process.")
_register("POLKU_REDIS_PREFIX", str, "polku:",
          "Prefix of every Redis key and channel of this installation (lets tests and installations share a Redis).")
_register("POLKU_ALLOWED_ORIGINS", list, ["http://127.0.0.1:8080", "http://localhost:8080"],
          "Comma-separated website origins allowed to open the resident chat (the pages that embed the widget); * allows any.")
_register("POLKU_MAX_MESSAGE_CHARS", int, 2000,
          "Longest resident message accepted, in characters; a longer one is refused with an error event.")
_register("POLKU_RATE_SESSION_PER_MIN", int, 30,
          "Messages one resident conversation may send per minute before it is rate limited.")
_register("POLKU_RATE_ADDRESS_PER_MIN", int, 120,
          "Messages one client address may send per minute, over all its conversations.")
_register("POLKU_SOCKETS_PER_ADDRESS", int, 20,
          "Resident sockets one client address may hold open at once, over every server process (a "
          "further one is refused with too_many_connections). Generous: a library, shelter or family "
          "behind one NAT shares an address.")
_register("POLKU_QUEUED_PER_ADDRESS", int, 3,
          "Conversations from one client address that may wait in the counsellor queue at once; a further "
          "request for a person is refused with queue_limited. A crisis is never refused: it is always queued.")
_register("POLKU_SESSION_TTL_HOURS", float, 24.0,
          "Hours after its last message that a resident session id can still resume its conversation.")
_register("POLKU_TRUSTED_PROXIES", list, [],
          "Comma-separated addresses or networks (10.0.0.5, 10.0.0.0/24) of reverse proxies whose "
          "X-Forwarded-For header names the resident's address for rate limits. Empty: the header is ignored.")
_register("POLKU_QUEUE_SECS_PER_CONVERSATION", float, 300.0,
          "Estimated counsellor time per queued conversation, in seconds: the wait shown to a resident is "
          "its queue position times this, divided by the counsellors online.")
_register("POLKU_MIGRATE_ON_START", bool, True,
          "Whether the chat server brings the database schema up to date when it starts "
          "(off when migrations are run separately with `python -m chat_server migrate`).")
_register("POLKU_HISTORY_MAX_MESSAGES", int, 200,
          "Most messages a resumed session gets back in the history event (the newest ones).")

# --- Counsellors (console, sign-in, handoff) -----------------------------------
_register("POLKU_CHAT_ALWAYS_OPEN", bool, False,
          "Ignore the chat's opening hours (service_facts.yml opening_hours.chat): residents are offered a "
          "counsellor whenever one is online. For demos and tests; off in production.")
_register("POLKU_COUNSELLOR_GRACE_SECS", float, 60.0,
          "Seconds a counsellor whose console lost its connection keeps their chats; after that the chats "
          "go back to the front of the queue and their residents are told.")
_register("POLKU_QUEUE_NOBODY_BACK_SECS", float, 120.0,
          "Seconds the queue waits for a counsellor to come back after the last one left (signed out or "
          "lost their connection); then every queued resident but the crisis ones is told and returned to "
          "the bot, which keeps answering. Outside chat hours, with nobody online, they are returned at once.")
_register("POLKU_REQUIRE_CRISIS_FACTS", bool, False,
          "Production: refuse to start while a service fact on the crisis path (named by a crisis answer "
          "in responses.yml, e.g. the area's emergency social services number) is unfilled. Either way the "
          "server logs the unfilled, example and stale facts at start (python -m bot facts lists them).")
_register("POLKU_QUEUE_ABANDON_HOURS", float, 4.0,
          "Hours a queued conversation may go without a word from its resident before it is closed as "
          "abandoned (a resident who closed the page must not hold a place in the queue); 0 keeps them.")
_register("POLKU_STAFF_SESSION_HOURS", float, 10.0,
          "Hours a counsellor's or admin's sign-in lasts at most, however active (the absolute timeout); "
          "then they sign in again.")
_register("POLKU_STAFF_IDLE_MINUTES", float, 30.0,
          "Minutes a staff sign-in lasts without the user doing anything (opening a page, a change, typing "
          "or clicking in the console); the console warns a minute before and lets them stay.")
_register("POLKU_STAFF_REAUTH_MINUTES", float, 10.0,
          "Minutes after the second factor was last given in which the most sensitive admin actions "
          "(exporting or deleting a conversation, activating a model) go ahead; later they ask for it again.")
_register("POLKU_LOCAL_ACCOUNTS", bool, True,
          "Whether local accounts (username, password and a TOTP second factor) can sign in. Turn off when "
          "staff sign in with single sign-on (POLKU_OIDC_ISSUER) only.")
_register("POLKU_OIDC_ISSUER", str, "",
          "Single sign-on: the OpenID Connect provider's issuer URL (for Microsoft Entra ID "
          "https://login.microsoftonline.com/<tenant>/v2.0). Empty: no single sign-on.")
_register("POLKU_OIDC_CLIENT_ID", str, "", "Single sign-on: this application's client id at the provider.")
_register("POLKU_OIDC_CLIENT_SECRET", str, "",
          "Single sign-on: the client secret (confidential client; PKCE is used as well).")
_register("POLKU_OIDC_ROLE_CLAIM", str, "groups",
          "Single sign-on: the ID token claim that lists the user's groups or roles (Entra ID: groups or roles).")
_register("POLKU_OIDC_COUNSELLOR_GROUPS", list, [],
          "Single sign-on: values of the role claim that make a user a counsellor (comma-separated).")
_register("POLKU_OIDC_ADMIN_GROUPS", list, [],
          "Single sign-on: values of the role claim that make a user an admin (comma-separated); "
          "a user in neither list is refused.")
_register("POLKU_LOGIN_RATE_ADDRESS_PER_MIN", int, 20,
          "Sign-in attempts one client address may make per minute (over every account) before it must wait. "
          "Besides it, failed attempts slow down by growing delays per account and address (never a lock).")

# --- Admin pages -----------------------------------------------------------------
_register("POLKU_HELDOUT_PATH", str, str(PROJECT_ROOT / "tests" / "data" / "heldout.yml"),
          "Held-out evaluation messages (- {text, lang, intent}), never trained on: a retrain from the "
          "admin page is measured against them, beside the model in use.")
_register("POLKU_ADMIN_PREWARM_TRAINER", bool, True,
          "Start Rasa's training process (about 0.5 GB) when an admin opens the training page, so that "
          "a retrain does not wait for Rasa and TensorFlow to load; unused, it ends after 15 minutes.")
_register("POLKU_ADMIN_KEEP_MODELS", int, 5,
          "Model files kept of each kind after a retrain or an activation: the most recently activated "
          "(rollback targets) and, apart, the newest trained but never activated; the model in use is "
          "always kept. Older files are deleted (about 30 MB each). 0 keeps every file.")
_register("POLKU_INBOX_CONFIDENCE_BELOW", float, 0.6,
          "Resident messages the model answered with less confidence than this (and every fallback) "
          "go to the admin page's inbox of what the bot did not understand.")
_register("POLKU_RETENTION_DAYS", int, 90,
          "Conversations whose last message is older than this many days are deleted automatically "
          "(their statistics are kept as daily counts). 0 keeps conversations forever.")
_register("POLKU_AUDIT_RETENTION_DAYS", int, 730,
          "Audit log records (who opened which conversation, sign-ins, failed sign-ins) older than this "
          "many days are deleted by the hourly retention run. 0 keeps them forever.")
_register("POLKU_REPORT_TIMEZONE", str, "Europe/Helsinki",
          "Time zone of the days and hours in the admin page's statistics.")


def registry() -> Mapping[str, Setting]:
    return dict(_REGISTRY)


class Settings:
    """Typed values of every registered setting, read once from an environment."""

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        env = os.environ if environ is None else environ
        unknown = [key for key in overrides if key not in _REGISTRY]
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        self._values: dict[str, Any] = {}
        for name, setting in _REGISTRY.items():
            if name in overrides:
                self._values[name] = overrides[name]
            elif name in env:
                self._values[name] = setting.parse(env[name])
            else:
                self._values[name] = setting.default
        lang = self._values["POLKU_DEFAULT_LANGUAGE"]
        if lang not in LANGUAGES:
            raise SettingsError(f"POLKU_DEFAULT_LANGUAGE must be fi, sv or en, not {lang!r}")

    def __getattr__(self, attr: str) -> Any:
        key = "POLKU_" + attr.upper()
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no setting {key}") from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def replace(self, **overrides: Any) -> "Settings":
        values = dict(self._values)
        values.update(overrides)
        return Settings(environ={}, **values)

    @property
    def data_dir(self) -> Path:
        path = Path(self._values["POLKU_DATA_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def rasa_urls(self) -> tuple[str, ...]:
        """The Rasa servers of POLKU_RASA_URL (several when it lists them, comma-separated)."""
        from .nlu import split_urls

        try:
            return split_urls(self._values["POLKU_RASA_URL"])
        except ValueError:
            raise SettingsError("POLKU_RASA_URL is empty: give the Rasa server's base URL") from None

    @property
    def database_url(self) -> str:
        url = self._values["POLKU_DATABASE_URL"]
        return url or f"sqlite:///{self.data_dir / 'polku.db'}"


def settings_markdown() -> str:
    """The settings reference, as docs/settings.md holds it."""
    lines = [
        "# Settings",
        "",
        "Every setting is an environment variable. Generated from `bot/settings.py` "
        "by `python -m bot settings-doc`; do not edit by hand.",
        "",
        "| name | type | default | what it does |",
        "|---|---|---|---|",
    ]
    for setting in _REGISTRY.values():
        default = setting.default
        if isinstance(default, list):
            default = ",".join(default)
        if isinstance(default, str) and default.startswith(str(PROJECT_ROOT)):
            default = "<checkout>" + default[len(str(PROJECT_ROOT)):]
        lines.append(f"| `{setting.name}` | {setting.type.__name__} | `{default}` | {setting.help} |")
    return "\n".join(lines) + "\n"


def get_settings(environ: Mapping[str, str] | None = None) -> Settings:
    return Settings(environ)

