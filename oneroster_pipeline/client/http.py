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
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .deadline import POOL_CLASSES, request_deadline
from .deadline import current as current_deadline
from .errors import (
    OneRosterConnectionError,
    OneRosterDataError,
    OneRosterReadTimeout,
    OneRosterRedirectRefused,
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
MAX_REDIRECTS = 5  # same-origin redirects followed for one request
ERROR_BODY_BYTES = 64 << 10  # of an error answer's body, only this much is read (its start is all ever shown)
BODY_CHUNK = 256 << 10


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
        deadline = current_deadline()
        if error is not None and deadline is not None and deadline.expired:
            raise error  # the request's deadline passed: no retry
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


@dataclass(frozen=True)
class RequestLimits:
    """What one request may cost: its time (headers and body, per attempt), its body (counted after
    decompression) and its redirects (same origin only)."""

    deadline_seconds: float = 300.0  # ONEROSTER_REQUEST_DEADLINE_SECONDS
    max_body_bytes: int = 64 << 20  # ONEROSTER_MAX_PAGE_MB
    max_redirects: int = MAX_REDIRECTS
    error_body_bytes: int = ERROR_BODY_BYTES


class OneRosterSession(requests.Session):
    """A `requests.Session` that carries its `RequestLimits` (every `send` through it honours them)."""

    limits = RequestLimits()


def build_session(settings: ConnectionSettings,
                  on_rate_limited: Callable[[float | None], None] | None = None) -> requests.Session:
    """A session with the retry policy mounted and a pool sized for the configured concurrency (no auth yet);
    `on_rate_limited(retry_after_seconds)` is called on every 429 before it is retried."""
    session = OneRosterSession()
    session.limits = RequestLimits(settings.request_deadline_seconds, settings.max_page_mb << 20)
    session.max_redirects = MAX_REDIRECTS
    retry = build_retry(settings)
    retry.on_rate_limited = on_rate_limited
    adapter = _WatchedAdapter(max_retries=retry, pool_maxsize=max(settings.max_concurrency, 2))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
    return session


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections register with the request deadline (deadline.py)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(POOL_CLASSES)


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port made explicit: what credentials are bound to."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _shown(origin_: tuple[str, str, int | None]) -> str:
    scheme, host, port = origin_
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def send(session: requests.Session, method: str, url: str, timeout: float, **kwargs) -> requests.Response:
    """One request through the retrying session, its body read (bounded) before it returns. Redirects are followed
    only within the request's origin (scheme, host, port): one to another origin is refused
    (`OneRosterRedirectRefused`) before anything is sent there, so no credential leaves its host. Unreachable
    provider, deadline passed -> `OneRosterConnectionError`; a body over the limit -> `OneRosterDataError`."""
    limits = getattr(session, "limits", RequestLimits())
    start = origin(url)
    for hop in range(limits.max_redirects + 1):
        response = _attempt(session, method, url, timeout, limits, kwargs)
        target = session.get_redirect_target(response) if response.is_redirect else None
        if target is None:
            return response
        response.close()
        target = urljoin(response.url, target)
        if origin(target) != start:
            raise OneRosterRedirectRefused(
                f"refused to follow a redirect (HTTP {response.status_code}) from {_shown(start)} to "
                f"{_shown(origin(target))}: credentials are only ever sent to the configured host. If the provider "
                f"really moved, set the new address in ONEROSTER_BASE_URL / ONEROSTER_TOKEN_URL. {method} "
                f"{redact_url(url)}", "redirect", _shown(start))
        if response.status_code == 303 or (response.status_code in (301, 302) and method != "HEAD"):
            method = "GET" if method != "HEAD" else method
            kwargs = {k: v for k, v in kwargs.items() if k not in ("data", "json", "files")}
        kwargs.pop("params", None)  # the target carries its own query
        url = target
    raise OneRosterConnectionError(f"more than {limits.max_redirects} redirects for {redact_url(url)}", "redirect",
                                   _shown(start))


def _attempt(session: requests.Session, method: str, url: str, timeout: float, limits: RequestLimits,
             kwargs: dict) -> requests.Response:
    """One request (urllib3 retries included) without following redirects, its body read within the limits."""
    with request_deadline(limits.deadline_seconds) as deadline:
        try:
            response = session.request(method, url, timeout=timeout, allow_redirects=False, stream=True, **kwargs)
            if not response.is_redirect:
                _read_body(response, limits.max_body_bytes if response.ok else limits.error_body_bytes,
                           truncate=not response.ok)
            return response
        except requests.exceptions.RetryError:  # status retries return the last response; this is the rest
            raise OneRosterConnectionError(f"too many retries for {redact_url(url)}") from None
        except requests.exceptions.ContentDecodingError:
            raise OneRosterDataError(url, "the answer's body could not be decompressed (its Content-Encoding "
                                     "does not match what was sent)") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError) as error:
            if deadline.expired:
                raise OneRosterConnectionError(
                    f"no complete answer within {limits.deadline_seconds:g}s (ONEROSTER_REQUEST_DEADLINE_SECONDS): "
                    f"the server answers too slowly, or never finishes its body. {method} {redact_url(url)}",
                    "deadline", _shown(origin(url))) from None
            if getattr(_local, "surface", False) and (isinstance(error, requests.exceptions.ReadTimeout) or
                                                      isinstance(_cause(error), urllib3.exceptions.ReadTimeoutError)):
                raise connection_error(error, url, timeout, method, OneRosterReadTimeout) from None
            # what happened (DNS, refused, TLS, connect / read timeout, reset), naming the host and the redacted URL
            raise connection_error(error, url, timeout, method) from None
        except ValueError as error:  # requests refusing to send a header value (a token with CR/LF)
            raise OneRosterConnectionError(f"the request could not be sent ({type(error).__name__}: {error}). "
                                           f"{method} {redact_url(url)}", "other", _shown(origin(url))) from None


def _read_body(response: requests.Response, limit: int, truncate: bool = False) -> None:
    """Read the (decompressed) body into `response.content`, at most `limit` bytes: more is an error for a page,
    and cut off for an error answer (`truncate`, only its start is ever shown)."""
    chunks, size = [], 0
    for chunk in response.iter_content(BODY_CHUNK):
        size += len(chunk)
        if size > limit:
            response.close()
            if truncate:
                chunks.append(chunk[:len(chunk) - (size - limit)])
                break
            raise OneRosterDataError(response.url, f"the answer's body is larger than {limit >> 20} MB once "
                                     "decompressed (ONEROSTER_MAX_PAGE_MB): refusing to read more (lower "
                                     "ONEROSTER_PAGE_SIZE if the provider's pages are really that large)")
        chunks.append(chunk)
    response._content = b"".join(chunks)
    response._content_consumed = True


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
    except (ValueError, RecursionError) as error:
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
