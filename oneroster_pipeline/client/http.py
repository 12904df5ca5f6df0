"""The HTTP layer: a `requests.Session` with urllib3 retries, and GETs whose failures (HTTP, not JSON) are clear errors.

Retries are urllib3's `Retry`: 429 and 5xx gateway answers, connection resets and read timeouts, exponential
backoff with jitter, `Retry-After` respected (capped), all bounded by `ONEROSTER_MAX_RETRIES`. After the budget
the last response is returned (not raised), so its body can be parsed into a `OneRosterHTTPError`.
Payloads are never logged or quoted in errors. Bodies are decoded by `loads`: msgspec's C decoder when it is installed,
the standard library's `json` for what msgspec refuses (and when it is absent), so the result is json.loads' own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import (
    OneRosterConnectionError,
    OneRosterDataError,
    OneRosterReadTimeout,
    connection_error,
    http_error,
    redact_url,
)
from .settings import ConnectionSettings

try:  # a dependency (pyproject.toml); without it every body goes through json.loads, as it gives the same objects
    from msgspec import DecodeError as _FastDecodeError
    from msgspec.json import decode as _fast_decode
except ImportError:  # pragma: no cover - exercised when msgspec is not installed
    _fast_decode = None

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_MAX_SECONDS = 120  # a provider asking for longer is retried after this long
USER_AGENT = "oneroster-pipeline/0.1 (+requests)"


_local = threading.local()


class ObservedRetry(Retry):
    """urllib3's Retry that tells a listener about every 429 (with its Retry-After, in seconds) before waiting it
    out, so concurrent page fetching can slow down; and that, inside `surface_read_timeouts()`, does not retry a
    read timeout itself (the pager retries the page with a smaller page size instead)."""

    on_rate_limited: Callable[[float | None], None] | None = None

    def new(self, **kw) -> ObservedRetry:
        retry = super().new(**kw)
        retry.on_rate_limited = self.on_rate_limited
        return retry

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and response.status == 429 and self.on_rate_limited is not None:
            self.on_rate_limited(self.get_retry_after(response))
        if isinstance(error, urllib3.exceptions.ReadTimeoutError) and getattr(_local, "surface", False):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


@contextmanager
def surface_read_timeouts() -> Iterator[None]:
    """Requests of this thread inside the block raise `OneRosterReadTimeout` on the first read timeout."""
    _local.surface = True
    try:
        yield
    finally:
        _local.surface = False


def build_retry(settings: ConnectionSettings) -> Retry:
    """The retry policy of every request of a connection (token requests included)."""
    n = settings.max_retries
    return ObservedRetry(
        total=n, connect=n, read=n, status=n, other=0, redirect=3,
        allowed_methods=frozenset({"GET", "POST"}),  # POST: the client-credentials token request is idempotent
        status_forcelist=RETRY_STATUSES, raise_on_status=False, respect_retry_after_header=True,
        backoff_factor=settings.backoff_seconds, backoff_max=settings.backoff_max_seconds,
        backoff_jitter=settings.backoff_jitter_seconds, retry_after_max=RETRY_AFTER_MAX_SECONDS,
    )


def build_session(settings: ConnectionSettings,
                  on_rate_limited: Callable[[float | None], None] | None = None) -> requests.Session:
    """A session with the retry policy mounted and a pool sized for the configured concurrency (no auth yet);
    `on_rate_limited(retry_after_seconds)` is called on every 429 before it is retried."""
    session = requests.Session()
    retry = build_retry(settings)
    retry.on_rate_limited = on_rate_limited
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=max(settings.max_concurrency, 2))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
    return session


def send(session: requests.Session, method: str, url: str, timeout: float, **kwargs) -> requests.Response:
    """One request through the retrying session; unreachable provider -> `OneRosterConnectionError`."""
    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.exceptions.RetryError:  # a redirect loop (status retries return the last response)
        raise OneRosterConnectionError(f"too many redirects or retries for {redact_url(url)}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        if getattr(_local, "surface", False) and (isinstance(error, requests.exceptions.ReadTimeout) or
                                                  isinstance(_cause(error), urllib3.exceptions.ReadTimeoutError)):
            raise connection_error(error, url, timeout, method, OneRosterReadTimeout) from None
        # what happened (DNS, refused, TLS, connect / read timeout, reset), naming the host and the redacted URL
        raise connection_error(error, url, timeout, method) from None


def _cause(error: Exception) -> Exception:
    """The underlying urllib3 error (requests wraps a read timeout after the last retry as a ConnectionError)."""
    inner = error.args[0] if error.args and isinstance(error.args[0], Exception) else error
    return getattr(inner, "reason", None) or inner


def get_ok(session: requests.Session, url: str, params: dict, timeout: float) -> requests.Response:
    """GET `url`, body read; a non-2xx answer (after the retries) raises `OneRosterHTTPError`."""
    response = send(session, "GET", url, timeout, params=params)
    if not response.ok:
        raise http_error(response)
    return response


def parse_json(response: requests.Response, offset: int | None = None) -> object:
    """The JSON body of a 2xx answer; `OneRosterDataError` (URL, offset, what came instead) when it is not JSON."""
    try:
        return loads(response.content)
    except ValueError as error:
        kind = response.headers.get("Content-Type") or "no Content-Type"
        reason = "an empty body" if not response.content else f"{kind}, {type(error).__name__} at char " \
                                                                f"{getattr(error, 'pos', '?')}"
        raise OneRosterDataError(response.url, f"HTTP {response.status_code} answer is not JSON ({reason})",
                                 offset) from None


def loads(body: bytes) -> object:
    """`json.loads(body)`, ~1.5x faster on a page of records: msgspec decodes what it accepts into the same objects
    (big integers exact, the last of duplicate keys, the same floats); what it refuses (NaN / Infinity, 1e400, lone
    surrogates, a BOM or UTF-16 body, malformed JSON) is left to json.loads, which returns or raises as it always did."""
    if _fast_decode is not None:
        try:
            return _fast_decode(body)
        except _FastDecodeError:
            pass
    return json.loads(body)
