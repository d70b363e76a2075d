"""Single sign-on with OpenID Connect: the authorization code flow with PKCE.

Configured by ``POLKU_OIDC_ISSUER``, ``POLKU_OIDC_CLIENT_ID`` and
``POLKU_OIDC_CLIENT_SECRET``; the roles come from one claim of the ID token
(``POLKU_OIDC_ROLE_CLAIM``, e.g. Entra ID's ``groups`` or ``roles``) matched
against ``POLKU_OIDC_ADMIN_GROUPS`` and ``POLKU_OIDC_COUNSELLOR_GROUPS``; a user
in neither is refused. The provider's sign-in is the authentication (its own
second factor policy applies), so these accounts have no password and no TOTP
here.

- Protocol pieces from kept libraries: Authlib makes the PKCE challenge (S256)
  and the random state, nonce and verifier; joserfc (Authlib's JOSE library)
  checks the ID token's signature against the provider's published keys and
  its registered claims. The HTTP is aiohttp's, like the rest of the server.
- ``state`` is single-use: stored (hashed) in ``staff_sso_states`` with the
  nonce, the PKCE verifier and where to go after, deleted when the callback
  uses it (a replayed callback finds nothing), valid 10 minutes, and bound to
  the browser that started it by a cookie (an attacker's callback URL opened
  in a counsellor's browser does not sign them in as the attacker).
- The ID token must be signed with an asymmetric algorithm by a key of the
  provider's JWKS, issued by the configured issuer, for this client (``aud``,
  and ``azp`` when several audiences), unexpired (5 s of leeway for clocks),
  and carry the nonce of this sign-in.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from bot.settings import Settings

from ..errors import ConfigurationError, SsoError, SsoNoRole
from ..store.models import utcnow
from ..store.staff import StaffRepository

log = logging.getLogger(__name__)

STATE_TTL = timedelta(minutes=10)
LEEWAY_SECS = 5
METADATA_TTL_SECS = 3600.0
HTTP_TIMEOUT_SECS = 10.0
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
SCOPES = "openid profile email"
_USERNAME_CHARS = re.compile(r"[^a-z0-9._@-]")


@dataclass(frozen=True)
class SsoUser:
    subject: str  # "issuer sub": unique across providers
    username: str
    display_name: str
    role: str
    next_path: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


class OidcClient:
    """The relying party: start a sign-in, finish it at the callback."""

    def __init__(self, settings: Settings, repo: StaffRepository) -> None:
        self.issuer = settings.oidc_issuer.rstrip("/") if settings.oidc_issuer else ""
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self.role_claim = settings.oidc_role_claim
        self.admin_groups = set(settings.oidc_admin_groups)
        self.counsellor_groups = set(settings.oidc_counsellor_groups)
        if not self.client_id:
            raise ConfigurationError("POLKU_OIDC_ISSUER is set but POLKU_OIDC_CLIENT_ID is empty")
        if not (self.admin_groups or self.counsellor_groups):
            raise ConfigurationError("single sign-on needs POLKU_OIDC_ADMIN_GROUPS or POLKU_OIDC_COUNSELLOR_GROUPS "
                                     "(which values of the role claim make a counsellor or an admin)")
        self.repo = repo
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    # -- the provider's metadata and keys --

    async def _get_json(self, url: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECS)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(url, headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise SsoError(f"{url}: HTTP {response.status}")
                return await response.json(content_type=None)

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL_SECS:
                try:
                    data = await self._get_json(self.issuer + "/.well-known/openid-configuration")
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                    raise SsoError(f"provider metadata: {type(exc).__name__}") from None
                if data.get("issuer", "").rstrip("/") != self.issuer:
                    raise SsoError("the provider's metadata names another issuer")
                self._metadata, self._metadata_at, self._keys = data, time.monotonic(), None
            return self._metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self.metadata()
            try:
                self._keys = KeySet.import_key_set(await self._get_json(metadata["jwks_uri"]))
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, JoseError) as exc:
                raise SsoError(f"provider keys: {type(exc).__name__}") from None
        return self._keys

    # -- step 1: to the provider --

    async def start(self, redirect_uri: str, next_path: str, *, prompt_login: bool = False) -> tuple[str, str]:
        """(the provider's authorization URL to redirect to, the state for the browser's cookie)."""
        metadata = await self.metadata()
        state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
        now = utcnow()
        async with self.repo.transaction() as writes:
            await writes.add_sso_state(_hash(state), nonce, verifier, next_path[:500], now, STATE_TTL)
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                  "scope": SCOPES + (f" {self.role_claim}" if self.role_claim == "groups" else ""),
                  "state": state, "nonce": nonce, "code_challenge": create_s256_code_challenge(verifier),
                  "code_challenge_method": "S256"}
        if prompt_login:
            params["prompt"] = "login"
            params["max_age"] = "0"
        return metadata["authorization_endpoint"] + "?" + urlencode(params), state

    # -- step 2: back from the provider --

    async def finish(self, *, code: str, state: str, browser_state: str | None, redirect_uri: str) -> SsoUser:
        if not state or not browser_state or not hmac.compare_digest(state.encode(), browser_state.encode()):
            raise SsoError("state does not match this browser's")
        async with self.repo.transaction() as writes:  # single use: gone once read
            started = await writes.take_sso_state(_hash(state))
        if started is None:
            raise SsoError("unknown or already used state")
        nonce, verifier, next_path, created = (started.nonce, started.code_verifier, started.next_path,
                                               started.created_at)
        if utcnow() - created > STATE_TTL:
            raise SsoError("state expired")
        if not code:
            raise SsoError("no code")
        tokens = await self._exchange(code, verifier, redirect_uri)
        claims = await self.check_id_token(tokens.get("id_token"), nonce)
        role = self.role_of(claims)
        if role is None:
            raise SsoNoRole("no role claim value of Polku")
        return SsoUser(subject=f"{self.issuer} {claims['sub']}", username=self.username_of(claims),
                       display_name=self.display_name_of(claims), role=role, next_path=next_path)

    async def _exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        metadata = await self.metadata()
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECS)
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        basic = base64.b64encode(f"{_form_encode(self.client_id)}:{_form_encode(self.client_secret)}".encode())
        headers = {"Accept": "application/json", "Authorization": "Basic " + basic.decode("ascii")}
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(metadata["token_endpoint"], data=data, headers=headers) as response:
                    body = await response.json(content_type=None)
                    if response.status != 200:
                        raise SsoError(f"token endpoint: HTTP {response.status} {body.get('error', '')}")
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError) as exc:
            raise SsoError(f"token endpoint: {type(exc).__name__}") from None
        if not isinstance(body, dict) or body.get("token_type", "").lower() != "bearer":
            raise SsoError("token endpoint: not a bearer token response")
        return body

    async def check_id_token(self, id_token: Any, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once signature, issuer, audience, expiry and nonce are right."""
        if not isinstance(id_token, str) or not id_token:
            raise SsoError("no ID token")
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(), algorithms=ALGORITHMS)
            except JoseError:
                # A key rotated at the provider: fetch its keys once more.
                token = jwt.decode(id_token, await self._key_set(refresh=True), algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=LEEWAY_SECS, iss={"essential": True, "value": self.issuer},
                sub={"essential": True}, exp={"essential": True}, iat={"essential": True})
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise SsoError(f"ID token refused: {type(exc).__name__}: {exc}") from None
        claims = token.claims
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or self.client_id not in audiences:
            raise SsoError("ID token refused: it is for another audience")
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != self.client_id:
            raise SsoError("ID token refused: authorized party is another client")
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"].encode(), nonce.encode()):
            raise SsoError("ID token refused: wrong nonce")
        return claims

    # -- who the user is here --

    def role_of(self, claims: dict[str, Any]) -> str | None:
        values = claims.get(self.role_claim)
        values = {values} if isinstance(values, str) else set(v for v in values or () if isinstance(v, str))
        if values & self.admin_groups:
            return "admin"
        if values & self.counsellor_groups:
            return "counsellor"
        return None

    @staticmethod
    def username_of(claims: dict[str, Any]) -> str:
        for key in ("preferred_username", "email"):
            value = claims.get(key)
            if isinstance(value, str):
                name = _USERNAME_CHARS.sub("", value.strip().lower())[:64].lstrip("._@-")
                if len(name) >= 2:
                    return name
        return "sso-" + _hash(str(claims.get("sub")))[:12]

    @staticmethod
    def display_name_of(claims: dict[str, Any]) -> str:
        for key in ("name", "preferred_username", "email"):
            value = claims.get(key)
            if isinstance(value, str) and value.strip():
                cleaned = " ".join("".join(c for c in value if c.isprintable()).split())[:100]
                if cleaned:
                    return cleaned
        return "SSO"


def _form_encode(value: str) -> str:
    """client_secret_basic: id and secret form-urlencoded before Basic (RFC 6749 2.3.1)."""
    return quote_plus(value)
