"""Client errors, with messages a district admin can act on and that never carry a secret or a payload.

`OneRosterHTTPError` is a final non-2xx answer (after retries): its message names the redacted URL, the status
and what the provider said, parsed leniently from the body forms seen in the wild (1.2 `imsx_*` with
`imsx_CodeMinor`, a flat `imsx_codeMinor` string, a `statusInfoSet` wrapper, an OAuth `error` object, an HTML
page's <title>, or nothing). `OneRosterDataError` is a 2xx answer we cannot use (not JSON, no envelope).
"""

from __future__ import annotations

import json
import re
from html import unescape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from .redaction import redact

# query parameters whose values are never shown (lower-cased names; oauth_* covers OAuth 1.0a query signing)
_SECRET_PARAMS = {"access_token", "token", "client_secret", "secret", "password", "api_key", "apikey", "key",
                  "signature", "sig", "code"}
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HINTS = {
    401: "check the client id/secret or access token (ONEROSTER_CLIENT_ID, ONEROSTER_CLIENT_SECRET, "
         "ONEROSTER_ACCESS_TOKEN) and ONEROSTER_AUTH",
    403: "the credentials lack a scope or permission for this endpoint (1.2 needs roster-core.readonly)",
    404: "the endpoint does not exist: check ONEROSTER_BASE_URL and ONEROSTER_VERSION "
         "(a district without the OneRoster module answers 404 on the base path)",
    429: "the provider is rate limiting; retries were exhausted (ONEROSTER_MAX_RETRIES)",
}


class OneRosterError(Exception):
    """Base class of every client error. Its message passes the redactor: a secret a server echoed (in an error
    page, a JSON error body, a token endpoint's answer) never reaches a log, a table or the event log."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(redact(message), *args)


class OneRosterHTTPError(OneRosterError):
    """A final non-2xx response. `status` is the HTTP status; `code_minor`/`description` what the provider said."""

    def __init__(self, url: str, status: int, description: str | None = None, code_minor: str | None = None,
                 context: str = "", hint: str | None = None) -> None:
        description, code_minor = (redact(description) if description else description,
                                   redact(code_minor) if code_minor else code_minor)
        self.url, self.status, self.description, self.code_minor = redact_url(url), status, description, code_minor
        said = "; ".join(p for p in (description, f"codeMinor {code_minor}" if code_minor else None) if p)
        hint = _HINTS.get(status) if hint is None else hint
        message = f"{context}HTTP {status} from {self.url}: {said or 'no error detail in the response body'}"
        super().__init__(message + (f" ({hint})" if hint else ""))


class OneRosterDataError(OneRosterError):
    """A 2xx response the client cannot use (not JSON, no expected envelope, a server that ignores offset)."""

    def __init__(self, url: str, problem: str, offset: int | None = None) -> None:
        self.url, self.offset = redact_url(url), offset
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{problem} ({self.url}{where})")


class OneRosterConnectionError(OneRosterError):
    """The provider could not be reached after the retries. `kind` says what happened: `dns` (the host name does
    not resolve), `refused` (nothing listens on the port), `tls` (handshake or certificate failure),
    `connect_timeout`, `read_timeout`, `reset` (closed before an answer), `deadline` (no complete answer within
    ONEROSTER_REQUEST_DEADLINE_SECONDS), `redirect` (to another origin, or too many), `unreachable` (another
    socket error) or `other`; `host` is `host:port` of the URL."""

    def __init__(self, message: str, kind: str = "other", host: str | None = None) -> None:
        self.kind, self.host = kind, host
        super().__init__(message)


class OneRosterReadTimeout(OneRosterConnectionError):
    """A page request the server did not answer within ONEROSTER_TIMEOUT_SECONDS (the pager retries it with a
    smaller page before giving up)."""

    def __init__(self, message: str, kind: str = "read_timeout", host: str | None = None) -> None:
        super().__init__(message, kind, host)


class OneRosterRedirectRefused(OneRosterConnectionError):
    """The server redirected a request to another origin (scheme, host or port): never followed, so the request's
    credentials (Authorization, an OAuth 1.0a signature, a token request's client secret) stay with their host."""


def connection_error(error: BaseException, url: str, timeout: float, method: str = "GET",
                     cls: type[OneRosterConnectionError] = OneRosterConnectionError) -> OneRosterConnectionError:
    """A `OneRosterConnectionError` saying what happened, from a requests/urllib3 exception chain: DNS failure,
    refused, TLS/certificate failure, connect or read timeout, reset. Names the redacted URL and its host."""
    import socket  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    import urllib3.exceptions as u3  # noqa: PLC0415

    chain = list(_exception_chain(error))
    shown = redact_url(url)
    parts = urlsplit(url)
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        port = None
    host = f"{parts.hostname or '?'}" + (f":{port}" if port else "")

    def find(*types):
        return next((e for e in chain if isinstance(e, types)), None)

    budget = "gave up after the retries of ONEROSTER_MAX_RETRIES"
    if (dns := find(u3.NameResolutionError, socket.gaierror)) is not None:
        said = getattr(find(socket.gaierror), "strerror", None) or type(dns).__name__
        kind, text = "dns", (f"DNS lookup failed: the host name {parts.hostname!r} could not be resolved ({said}); "
                             "check the host in the URL (ONEROSTER_BASE_URL / ONEROSTER_TOKEN_URL) and the machine's "
                             "DNS")
    elif find(ConnectionRefusedError) is not None:
        kind, text = "refused", (f"connection refused by {host}: nothing is listening on that port; check the host "
                                 "and port in the URL, and that the provider's server is up")
    elif (cert := find(ssl.SSLCertVerificationError)) is not None:
        said = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) or "verification failed"
        kind, text = "tls", (f"TLS certificate verification failed for {host} ({said}); the server's certificate "
                             "is not trusted by this machine (expired, self-signed, another host's name, or a proxy "
                             "intercepting TLS)")
    elif (tls := find(ssl.SSLError, u3.SSLError)) is not None:
        ssl_error = find(ssl.SSLError)
        said = (getattr(ssl_error, "reason", None) or str(ssl_error or tls))[:120]
        kind, text = "tls", (f"TLS handshake with {host} failed ({said}); is it an https:// URL for a server that "
                             "speaks plain HTTP on that port, or a proxy in between?")
    elif find(u3.ReadTimeoutError, requests.exceptions.ReadTimeout) is not None:
        kind, text = "read_timeout", (f"read timed out: {host} accepted the connection but sent no answer within "
                                      f"{timeout:g}s (ONEROSTER_TIMEOUT_SECONDS)")
    elif find(TimeoutError) is not None or any(isinstance(e, u3.ConnectTimeoutError) and
                                               not isinstance(e, u3.NewConnectionError) for e in chain):
        kind, text = "connect_timeout", (f"connect timed out: no connection to {host} within {timeout:g}s "
                                         "(ONEROSTER_TIMEOUT_SECONDS); a wrong host, a firewall dropping the "
                                         "connection, or the server is overloaded")
    elif find(ConnectionResetError, ConnectionAbortedError, BrokenPipeError, u3.ProtocolError) is not None:
        kind, text = "reset", f"the connection to {host} was closed before an answer (reset by the server or network)"
    elif (os_error := find(OSError)) is not None and getattr(os_error, "strerror", None):
        kind, text = "unreachable", f"could not connect to {host}: {os_error.strerror}"
    else:
        kind, text = "other", f"could not connect to {host} ({type(chain[-1]).__name__})"
    return cls(f"{text}. {method} {shown} ({budget})", kind, host)


def _exception_chain(error: BaseException):
    """The error and every exception it wraps (urllib3 `reason`, exception args, __cause__, __context__)."""
    seen, queue = set(), [error]
    while queue:
        current = queue.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        queue += [getattr(current, "reason", None) if isinstance(getattr(current, "reason", None), BaseException)
                  else None]
        queue += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        queue += [current.__cause__, current.__context__]


def redact_url(url: str) -> str:
    """The URL without user:password and without the values of secret-looking query parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = urlencode([(k, "***" if _is_secret(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*'<>=:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _is_secret(name: str) -> bool:
    name = name.lower()
    return name in _SECRET_PARAMS or name.startswith("oauth_")


def http_error(response: requests.Response, context: str = "", hint: str | None = None) -> OneRosterHTTPError:
    """A `OneRosterHTTPError` for a final error response (the body is read, parsed leniently, never quoted whole)."""
    description, code_minor = describe_body(response)
    return OneRosterHTTPError(response.url, response.status_code, description, code_minor, context, hint)


def describe_body(response: requests.Response) -> tuple[str | None, str | None]:
    """(description, codeMinor) from an error body of any known form; (None, None) for an empty or unknown one."""
    text = response.text.strip() if response.content else ""
    if not text:
        return None, None
    try:
        payload = json.loads(text)
    except ValueError:
        title = _TITLE.search(text)
        if title:
            return "HTML page: " + " ".join(unescape(title.group(1)).split())[:200], None
        return ("non-JSON body: " + " ".join(text.split())[:120]) if len(text) < 2000 else None, None
    return _describe_json(payload)


def _describe_json(payload: object) -> tuple[str | None, str | None]:
    if isinstance(payload, dict) and isinstance(payload.get("statusInfoSet"), list) and payload["statusInfoSet"]:
        payload = payload["statusInfoSet"][0]
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if not isinstance(payload, dict):
        return None, None
    if "error" in payload and isinstance(payload["error"], str):  # RFC 6749 token endpoint error
        description = payload.get("error_description")
        return payload["error"] + (f": {description}" if isinstance(description, str) else ""), None
    description = _first_str(payload, "imsx_description", "description", "message")
    return description, _code_minor(payload)


def _code_minor(payload: dict) -> str | None:
    for key in ("imsx_CodeMinor", "imsx_codeMinor"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            fields = value.get("imsx_codeMinorField")
            fields = fields if isinstance(fields, list) else [fields]
            values = [f.get("imsx_codeMinorFieldValue") for f in fields if isinstance(f, dict)]
            values = [v for v in values if isinstance(v, str)]
            if values:
                return ", ".join(values)
    return None


def _first_str(payload: dict, *keys: str) -> str | None:
    for key in keys:
        if isinstance(payload.get(key), str) and payload[key].strip():
            return payload[key].strip()[:300]
    return None
