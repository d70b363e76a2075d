"""Staff sign-in parts that grew out of ``chat_server/auth.py``: the throttle of
sign-in attempts, the second factor (TOTP and recovery codes), the sign-in
pages and single sign-on (OpenID Connect)."""
