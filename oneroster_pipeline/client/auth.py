"""Authentication as `requests.auth.AuthBase` objects: OAuth 2.0 client credentials, OAuth 1.0a, bearer, none.

OAuth 2.0 (Infinite Campus, OneRoster 1.2): the token is fetched through the API session (so cookies a load
balancer sets on the token response reach later calls), cached, refreshed shortly before `expires_in`, and
refreshed once more when the API answers 401. Credentials go as HTTP Basic first; if the token endpoint answers
400/401 they are retried once as form fields, and whichever worked is remembered.
OAuth 1.0a (ClassLink direct, OneRoster 1.1) is `requests_oauthlib.OAuth1`: every request, query included, signed.
"""

from __future__ import annotations

import re
import threading
import time

import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256
from requests.auth import AuthBase, HTTPBasicAuth
from requests_oauthlib import OAuth1

from .errors import OneRosterDataError, http_error
from .http import send
from .redaction import REDACTOR
from .settings import ConnectionSettings

_TOKEN_HINT = "check ONEROSTER_CLIENT_ID, ONEROSTER_CLIENT_SECRET and ONEROSTER_TOKEN_URL"
_SIGNATURE_METHODS = {"HMAC-SHA256": SIGNATURE_HMAC_SHA256, "HMAC-SHA1": SIGNATURE_HMAC_SHA1}
# what an HTTP header value may carry (RFC 7230 field-vchar and space): a token with CR, LF or another control
# character would be refused by requests with the token quoted in the error, or split the header
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request  # overrides the session's auth for the token request itself


def _resend_session_cookies(request: requests.PreparedRequest, session: requests.Session) -> None:
    """Rebuild the Cookie header from the session's jar: requests prepares cookies before auth runs, so a cookie
    set by a token response fetched during auth (a load balancer's affinity cookie) would miss this request."""
    request.headers.pop("Cookie", None)
    request.prepare_cookies(session.cookies)


class BearerAuth(AuthBase):
    """A static bearer token (e.g. ClassLink's OAuth2 proxy token)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=********)"


class OAuth2ClientCredentials(AuthBase):
    """OAuth 2.0 client credentials grant with a cached, proactively and reactively refreshed token."""

    REFRESH_MARGIN_SECONDS = 60.0

    def __init__(self, session: requests.Session, token_url: str, client_id: str, client_secret: str,
                 timeout: float) -> None:
        self._session, self._token_url, self._timeout = session, token_url, timeout
        self._client_id, self._client_secret = client_id, client_secret
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.credential_style = "basic"  # or "form" once Basic was refused and form worked
        self.tokens_fetched = 0
        self.scope: str | None = None  # the scopes the latest token response granted (when it says)
        self.lifetime: float | None = None  # seconds, as the latest token response said

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(client_id={self._client_id!r}, credential_style={self.credential_style!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        _resend_session_cookies(request, self._session)  # the token may have just been fetched, setting one
        request.register_hook("response", self._refresh_on_401)
        return request

    def token(self) -> str:
        """The cached access token, fetched or refreshed when missing or about to expire."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._refresh_at:
                self._token, lifetime = self._fetch()
                margin = min(self.REFRESH_MARGIN_SECONDS, lifetime * 0.1) if lifetime else 0.0
                self._refresh_at = time.monotonic() + lifetime - margin if lifetime else float("inf")
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget `token` (if still the cached one) so the next request fetches a new one."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float | None]:
        response = self._request_token(self.credential_style)
        if response.status_code in (400, 401):  # the other credential style, once; remembered if it works
            other = "form" if self.credential_style == "basic" else "basic"
            response = self._request_token(other)
            if response.ok:
                self.credential_style = other
        if not response.ok:
            raise http_error(response, "OAuth2 token request failed: ", _TOKEN_HINT)
        return self._parse(response)

    def _request_token(self, style: str) -> requests.Response:
        data = {"grant_type": "client_credentials"}
        auth: object = HTTPBasicAuth(self._client_id, self._client_secret)
        if style == "form":
            data.update(client_id=self._client_id, client_secret=self._client_secret)
            auth = _no_auth
        return send(self._session, "POST", self._token_url, self._timeout, data=data, auth=auth,
                    headers={"Accept": "application/json"})

    def _parse(self, response: requests.Response) -> tuple[str, float | None]:
        try:
            payload = response.json()
            token = payload["access_token"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise OneRosterDataError(response.url, "the OAuth2 token response has no access_token") from None
        if not isinstance(token, str) or not token:
            raise OneRosterDataError(response.url, "the OAuth2 token response has an empty access_token")
        REDACTOR.register(token)  # an issued token is a secret too, wherever a server echoes it
        if not _HEADER_SAFE.fullmatch(token):
            raise OneRosterDataError(response.url, "the OAuth2 token response's access_token holds characters an "
                                     "HTTP header cannot carry (a space, CR, LF or another control or non-ASCII "
                                     "character): refusing to send it; tell the provider")
        self.tokens_fetched += 1
        scope = payload.get("scope")
        self.scope = scope if isinstance(scope, str) and scope.strip() else None
        try:
            lifetime = float(payload.get("expires_in"))
        except (TypeError, ValueError):
            lifetime = None  # no expiry given: refresh only when the API answers 401
        self.lifetime = lifetime if lifetime and lifetime > 0 else None
        return token, self.lifetime

    def _refresh_on_401(self, response: requests.Response, **kwargs) -> requests.Response:
        """Response hook: on a 401, refresh the token once and resend the request."""
        if response.status_code != 401 or getattr(response.request, "oneroster_retried", False):
            return response
        sent = response.request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.invalidate(sent)
        response.close()  # its body is not read (it may be of any size): the connection is dropped
        retry = response.request.copy()
        retry.oneroster_retried = True
        retry.headers["Authorization"] = f"Bearer {self.token()}"
        _resend_session_cookies(retry, self._session)  # a cookie set by the new token response, if any
        resent = response.connection.send(retry, **kwargs)
        resent.history.append(response)
        resent.request = retry
        return resent


def build_auth(settings: ConnectionSettings, session: requests.Session) -> AuthBase | None:
    """The auth object for the settings' mode (None for `none`)."""
    secret = settings.client_secret.reveal() if settings.client_secret else ""
    REDACTOR.register(secret, settings.access_token.reveal() if settings.access_token else None)
    REDACTOR.register_basic(settings.client_id, secret)
    if settings.auth == "oauth2":
        return OAuth2ClientCredentials(session, settings.token_url, settings.client_id, secret,
                                       settings.timeout_seconds)
    if settings.auth == "oauth1":
        return OAuth1(settings.client_id, client_secret=secret, signature_type="AUTH_HEADER",
                      signature_method=_SIGNATURE_METHODS[settings.oauth1_signature_method])
    if settings.auth == "bearer":
        return BearerAuth(settings.access_token.reveal())
    return None
