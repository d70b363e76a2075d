"""``python -m chat_server [serve] [--host H] [--port P]``, ``python -m chat_server migrate`` and
the staff accounts: ``python -m chat_server users create|list|disable|enable|set-password|reset-2fa``.

    python -m chat_server users create --username anna --display-name "Anna" --role counsellor
    python -m chat_server users create --username ville --display-name "Ville" --role admin --password-stdin < pw.txt
    python -m chat_server users list
    python -m chat_server users disable --username anna
    python -m chat_server users reset-2fa --username anna   # a lost phone: enrol again at the next sign-in

The password is asked twice at a prompt (never an argument: it would show in
the process list and the shell history), or read from stdin with
``--password-stdin``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import sys

from aiohttp import web

from bot.settings import Settings, SettingsError

from .store import db
from .errors import StartupError

# No %a: client addresses are not kept, not even in logs. logsafe.SafeAccessLogger
# writes the route, not the request line (no query strings, no client-chosen paths).
ACCESS_LOG_FORMAT = '"%r" %s %b %Tfs'


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chat_server", description="Polku chat server")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the chat (the default)")
    for p, default in ((parser, None), (serve, argparse.SUPPRESS)):
        # SUPPRESS: `--port 1 serve` must not be undone by serve's own default.
        p.add_argument("--host", default=default, help="address to listen on (default: POLKU_HOST)")
        p.add_argument("--port", type=int, default=default, help="port to listen on (default: POLKU_PORT)")
    sub.add_parser("migrate", help="bring the database schema up to date and exit")
    users = sub.add_parser("users", help="counsellor and admin accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="create an account")
    create.add_argument("--username", required=True, help="sign-in name: a-z, 0-9 and . _ @ -")
    create.add_argument("--display-name", required=True, help="the only name residents see")
    create.add_argument("--role", required=True, choices=("counsellor", "admin"),
                        help="counsellor (the console) or admin (the admin pages and the console)")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    users_sub.add_parser("list", help="list the accounts")
    for name, text in (("disable", "disable an account and end its sign-ins"),
                       ("enable", "enable a disabled account"),
                       ("set-password", "set a new password (ends the account's sign-ins)"),
                       ("reset-2fa", "forget the account's authenticator and recovery codes (ends its "
                                     "sign-ins; the next sign-in enrols a new one)")):
        command = users_sub.add_parser(name, help=text)
        command.add_argument("--username", required=True)
        if name == "set-password":
            command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise _CliError("the passwords differ")
    return first


class _CliError(Exception):
    pass


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    from .errors import InvalidStaffInput
    from .staff.service import StaffAuth
    from .store.core import Store
    from .store.staff import StaffRepository

    engine = db.create_engine(settings.database_url)
    try:
        if settings.migrate_on_start:
            await db.migrate(engine)
        auth = StaffAuth.from_settings(StaffRepository(Store(engine)), settings)
        try:
            if args.users_command == "create":
                password = _read_password(args.password_stdin)
                user = await auth.create_user(args.username, args.display_name, args.role, password)
                print(f"created {user.role} {user.username} ({user.display_name})")
            elif args.users_command == "list":
                print(f"{'username':<24} {'role':<11} {'status':<9} {'sign-in':<14} display name")
                for user in await auth.users():
                    status = "disabled" if user.disabled else "active"
                    how = ("single sign-on" if user.external_subject else
                           "password+totp" if user.totp_secret else "not enrolled")
                    print(f"{user.username:<24} {user.role:<11} {status:<9} {how:<14} {user.display_name}")
            elif args.users_command in ("disable", "enable"):
                user = await auth.set_disabled(args.username, args.users_command == "disable")
                print(f"{args.users_command}d {user.username}")
            elif args.users_command == "set-password":
                user = await auth.set_password(args.username, _read_password(args.password_stdin))
                print(f"password set for {user.username}")
            elif args.users_command == "reset-2fa":
                user = await auth.reset_second_factor(args.username)
                print(f"second factor reset for {user.username}: they enrol a new authenticator at the next sign-in")
        except (InvalidStaffInput, _CliError) as exc:
            print(f"polku chat server: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        await engine.dispose()


async def _migrate(settings: Settings) -> None:
    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
    finally:
        await engine.dispose()


# Garbage collection of a long-running chat server. Everything loaded at start
# (the bot's content, SQLAlchemy's mappers, the Socket.IO and aiohttp machinery)
# lives as long as the process: frozen, the collector no longer walks it. A
# larger first-generation threshold makes young collections rarer. Measured
# with 1000 residents at 50 msg/s (3 runs each, 23 Nov 2026): full collections
# had stopped the event loop for 80-280 ms at a time; p99 292-445 ms before,
# 134-361 ms after.
GC_THRESHOLDS = (10_000, 10, 10)


async def _tune_gc(app: web.Application) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
            print("database schema is up to date")
            return 0
        if args.command == "users":
            logging.getLogger("alembic").setLevel(logging.WARNING)  # a CLI says only what it did
            logging.getLogger("chat_server.db").setLevel(logging.WARNING)
            return asyncio.run(_users(settings, args))
        overrides = {}
        if args.host:
            overrides["POLKU_HOST"] = args.host
        if args.port is not None:
            overrides["POLKU_PORT"] = args.port
        settings = settings.replace(**overrides)
        from .app import create_app
        from .logsafe import SafeAccessLogger

        app = create_app(settings)
        app.on_startup.append(_tune_gc)  # after the server's own startup
        web.run_app(app, host=settings.host, port=settings.port, access_log_format=ACCESS_LOG_FORMAT,
                    access_log_class=SafeAccessLogger,
                    print=lambda text: print(text, flush=True))
        return 0
    except (SettingsError, StartupError) as exc:
        print(f"polku chat server: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
