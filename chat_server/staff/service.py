"""``StaffAuth``: the staff service one server process holds (``server.auth``).

Its parts live in the module of their concern: ``accounts.py`` (accounts and
passwords), ``signin.py`` (password, second factor, single sign-on,
re-authentication), ``sessions.py`` (sessions and their timeouts) and
``audit.py`` (the audit log). It takes the staff repository
(``store/staff.py``), not the server.
"""

from __future__ import annotations

from datetime import timedelta

from bot.settings import Settings

from ..ratelimit import Counter
from ..store.staff import StaffRepository
from .accounts import Accounts, Passwords
from .audit import AuditLog
from .sessions import Sessions
from .signin import SignIn
from .throttle import Throttle


class StaffAuth(SignIn, Sessions, Accounts, AuditLog):
    """Staff accounts, sign-in (password, then TOTP, or single sign-on) with growing delays,
    server-side sessions with idle and absolute timeouts, and the audit log."""

    def __init__(self, repo: StaffRepository, throttle: Throttle | None = None, *, session_hours: float = 10.0,
                 idle_minutes: float = 30.0, reauth_minutes: float = 10.0,
                 rate_address_per_min: int = 20, counter: Counter | None = None,
                 local_accounts: bool = True) -> None:
        self.repo = repo
        self.passwords = Passwords()
        self.throttle = throttle or Throttle()
        self.counter = counter
        self.session_hours = session_hours
        self.idle = timedelta(minutes=idle_minutes)
        self.reauth_window = timedelta(minutes=reauth_minutes)
        self.rate_address_per_min = rate_address_per_min
        self.local_accounts = local_accounts

    @classmethod
    def from_settings(cls, repo: StaffRepository, settings: Settings, redis: object = None,
                      counter: Counter | None = None) -> "StaffAuth":
        return cls(repo, Throttle(redis, settings.redis_prefix), session_hours=settings.staff_session_hours,
                   idle_minutes=settings.staff_idle_minutes, reauth_minutes=settings.staff_reauth_minutes,
                   rate_address_per_min=settings.login_rate_address_per_min, counter=counter,
                   local_accounts=settings.local_accounts)
