"""Staff sign-in: counsellors and admins, their sessions, CSRF and the audit log.

- Local accounts: an argon2id password, then a second factor, TOTP or a
  recovery code, enrolled at the first sign-in. Single sign-on accounts:
  OpenID Connect. ``POLKU_LOCAL_ACCOUNTS=0`` leaves only single sign-on.
- A sign-in is a server-side session row; the browser holds its token in an
  HttpOnly, SameSite=Strict session cookie. Sessions end when idle, at their
  absolute end, at sign-out and at "sign out everywhere"; the most sensitive
  admin actions need the second factor again (``require_recent_auth``).
- CSRF: every state-changing request carries the session's token, checked in
  one middleware. Guessing meets growing delays, never a lock.

The modules, one concern each:

    accounts.py        accounts and passwords (``check_*``, ``Passwords``, ``Accounts``)
    signin.py          password, second factor, single sign-on, re-authentication
    sessions.py        ``Staff`` (who is signed in), sessions and their timeouts, signing out
    audit.py           the audit log (``add_audit``, ``audit``)
    service.py         ``StaffAuth`` (``server.auth``): the parts above over one repository
    web.py             request helpers: ``current_staff``, ``require_staff``,
                       ``require_recent_auth``, cookies, ``ui_language``, ``safe_next``
    csrf.py            the CSRF and security-header middlewares, ``staff_page_headers``
    pages.py           the sign-in pages (HTML and handlers), single sign-on's routes
    session_routes.py  /logout, /session (deadlines, "still here", re-authentication)
    oidc.py            the OpenID Connect relying party
    totp.py            TOTP and recovery codes
    throttle.py        growing delays for sign-in attempts

The SQL is ``chat_server/store/staff.py``; the errors (``AuthError`` and its
kinds, ``SsoError``) are in ``chat_server/errors.py``.
"""
