"""The tests' OpenID Connect provider: tests/oidc/provider.js (the npm package
oidc-provider, a certified implementation) as a child process on a free port
of 127.0.0.1. Its clients and users are described in that script."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"
CLIENT_SECRET = "polku-test-secret"


class OidcProvider:
    def __init__(self) -> None:
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            pytest.fail("tests/oidc/node_modules is missing: run `npm ci` in tests/oidc (./polku test does)")
        self.proc = subprocess.Popen(["node", "provider.js"], cwd=OIDC_DIR, env={**os.environ, "PORT": "0"},
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        match = re.fullmatch(r"ready (http://127\.0\.0\.1:\d+)\n", line)
        if not match:
            self.stop()
            raise RuntimeError(f"the OpenID provider did not start: {line!r}")
        self.issuer = match.group(1)

    def settings(self, client_id: str = "polku", **extra) -> dict:
        """The chat server's settings for single sign-on with this provider."""
        return {"POLKU_OIDC_ISSUER": self.issuer, "POLKU_OIDC_CLIENT_ID": client_id,
                "POLKU_OIDC_CLIENT_SECRET": CLIENT_SECRET, "POLKU_OIDC_ROLE_CLAIM": "groups",
                "POLKU_OIDC_COUNSELLOR_GROUPS": ["polku-counsellors"], "POLKU_OIDC_ADMIN_GROUPS": ["polku-admins"],
                **extra}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
