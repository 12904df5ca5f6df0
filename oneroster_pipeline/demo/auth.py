"""The demo provider's authentication: OAuth 2.0 client credentials, OAuth 1.0a signatures, static bearer, none."""

# OAuth 2.0 follows Infinite Campus: `POST /oauth2/token` with grant_type=client_credentials and the client
# credentials as HTTP Basic (form fields client_id/client_secret are accepted too); tokens expire after
# `token_lifetime` seconds or when `expire_all()` is called. OAuth 1.0a follows ClassLink's direct access: every
# request is signed with the consumer key/secret (HMAC-SHA256, HMAC-SHA1 accepted), query parameters included;
# verification is oauthlib's `SignatureOnlyEndpoint`.

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, RequestValidator, SignatureOnlyEndpoint

CORE_SCOPE = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly"
ROSTER_SCOPE = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly"
AUTH_MODES = ("none", "oauth2", "oauth1", "bearer")


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    scopes: frozenset[str] = frozenset()
    reason: str = ""


class TokenStore:
    """Issued OAuth 2.0 access tokens with their expiry and scopes."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self._tokens: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def issue(self, scopes: frozenset[str]) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: v for t, v in self._tokens.items() if v[0] > now}
            self._tokens[token] = (now + self.lifetime, scopes)
        return token

    def scopes_of(self, token: str) -> frozenset[str] | None:
        """The token's scopes, or None when it is unknown or expired."""
        entry = self._tokens.get(token)
        return entry[1] if entry and entry[0] > time.monotonic() else None

    def expire_all(self) -> None:
        with self._lock:
            self._tokens.clear()


class _OAuth1Validator(RequestValidator):
    """Accepts one consumer key; rejects replayed nonces within the timestamp window."""

    def __init__(self, client_key: str, client_secret: str) -> None:
        super().__init__()
        self._key, self._secret = client_key, client_secret
        self._nonces: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    enforce_ssl = False
    allowed_signature_methods = (SIGNATURE_HMAC_SHA256, SIGNATURE_HMAC_SHA1)
    dummy_client = "dummy-client"

    def check_client_key(self, client_key: str) -> bool:
        return 0 < len(client_key) <= 200

    def check_nonce(self, nonce: str) -> bool:
        return 8 <= len(nonce) <= 200 and nonce.isascii()

    def validate_client_key(self, client_key: str, request) -> bool:
        return secrets.compare_digest(client_key, self._key)

    def get_client_secret(self, client_key: str, request) -> str:
        return self._secret if client_key == self._key else "dummy-secret"

    def validate_timestamp_and_nonce(self, client_key, timestamp, nonce, request, request_token=None,
                                     access_token=None) -> bool:
        now = time.time()
        with self._lock:
            if len(self._nonces) > 10_000:
                self._nonces = {k: t for k, t in self._nonces.items() if now - t < self.timestamp_lifetime}
            key = (client_key, timestamp, nonce)
            if key in self._nonces:
                return False
            self._nonces[key] = now
            return True


class Authenticator:
    """Checks API requests and answers the token endpoint for the configured mode."""

    def __init__(self, mode: str, client_id: str, client_secret: str, bearer_token: str, token_lifetime: int,
                 scopes: tuple[str, ...]) -> None:
        if mode not in AUTH_MODES:
            raise ValueError(f"auth must be one of {AUTH_MODES}, not {mode!r}")
        self.mode = mode
        self._client_id, self._client_secret, self._bearer = client_id, client_secret, bearer_token
        self.granted = frozenset(scopes)
        self.tokens = TokenStore(token_lifetime)
        self._oauth1 = SignatureOnlyEndpoint(_OAuth1Validator(client_id, client_secret))

    def check(self, method: str, url: str, headers: dict[str, str]) -> AuthResult:
        """Is this API request authorised? `url` is the full URL the client signed (for OAuth 1.0a)."""
        if self.mode == "none":
            return AuthResult(True, self.granted)
        if self.mode == "oauth1":
            valid, _ = self._oauth1.validate_request(url, method, None, headers)
            return AuthResult(valid, self.granted, "" if valid else "invalid OAuth 1.0a signature or consumer key")
        token = _bearer_token(headers.get("Authorization", ""))
        if token is None:
            return AuthResult(False, reason="missing bearer token")
        if self.mode == "bearer":
            ok = secrets.compare_digest(token, self._bearer)
            return AuthResult(ok, self.granted, "" if ok else "invalid bearer token")
        scopes = self.tokens.scopes_of(token)
        return AuthResult(True, scopes) if scopes is not None else AuthResult(False, reason="invalid or expired token")

    def token_response(self, headers: dict[str, str], body: str) -> tuple[int, dict]:
        """(status, JSON payload) for `POST /oauth2/token` (RFC 6749 client credentials grant)."""
        form = {k: v[-1] for k, v in parse_qs(body).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client = _basic_credentials(headers.get("Authorization", "")) or (form.get("client_id"),
                                                                            form.get("client_secret"))
        if not (client[0] and client[1] and secrets.compare_digest(client[0], self._client_id)
                and secrets.compare_digest(client[1], self._client_secret)):
            return 401, {"error": "invalid_client"}
        requested = frozenset(form.get("scope", "").split())
        scopes = (requested & self.granted) if requested else self.granted
        if not scopes:
            return 400, {"error": "invalid_scope"}
        return 200, {"access_token": self.tokens.issue(scopes), "token_type": "bearer",
                     "expires_in": self.tokens.lifetime, "scope": " ".join(sorted(scopes))}


def _bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except ValueError:
        return None
    return client_id, secret
