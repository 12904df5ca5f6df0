"""The one redactor: every text that leaves the process (log lines, exception messages, `sync_runs`, `sync_alerts`,
the alert webhook, Dagster metadata) passes through `redact`.

It hides two kinds of thing:
- the values registered with `register` (the configured client secret, access token and webhook URL, every token a
  provider issued, the HTTP Basic value of id:secret), in every form a server may echo them: as they are,
  URL-encoded (form bodies, query strings), JSON- or HTML-escaped, and any fragment of 8 or more characters (a page
  `<title>` cut in the middle of a token);
- whatever looks like a credential whatever its value: an `Authorization` header, `Bearer`/`Basic` credentials, and
  `client_secret`, `access_token`, `refresh_token`, `password`, `oauth_signature` values in a form, query, JSON or
  header form.

Framework-free and process-wide (several districts in one process register all their secrets: hiding more is safe).
`install_log_redaction()` makes every `logging` record of the process pass through it.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit

MASK = "***"
MIN_SECRET = 4  # shorter values are not registered (they would mask ordinary words)
MIN_FRAGMENT = 8  # a run of this many characters of a secret is masked wherever it appears...
ORDINARY_WORD = 12  # ...unless it is a lower-case word shorter than this (a word of prose, not token material)

# credential-shaped text, whatever its value (the value is group "value")
_SHAPES = [
    re.compile(r"(?i)(?P<key>\bauthorization\b[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\r\n\"',;&<]+)"),
    # a credential after the scheme: 8+ characters with a digit or a token punctuation ("Bearer token" is prose)
    re.compile(r"(?i)(?P<key>\b(?:bearer|basic)\s+)(?P<value>(?=[A-Za-z0-9\-._~+/%]*[0-9\-._~+/%])"
               r"[A-Za-z0-9\-._~+/%]{8,}=*)"),
    re.compile(r"(?i)(?P<key>\b(?:client_secret|access_token|refresh_token|id_token|password|oauth_signature|"
               r"api_key|apikey)\b[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"'&,;<>}]+)"),
]
_WORD = re.compile(r"[A-Za-z0-9\-._~+/=%]{" + str(MIN_FRAGMENT) + ",}")


class Redactor:
    """A registry of secret values and the function that masks them (and credential-shaped text) in a text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()  # every registered value in every form, longest first
        self._fragmentable: tuple[str, ...] = ()  # the forms whose fragments are masked too

    def register(self, *values: str | None) -> None:
        """Hide `values` (and their encoded forms) from now on; None, blank and short values are ignored. A URL
        (a webhook's) is hidden whole, and by fragments only in its path and query, where its secret is: its host
        is no secret, and shows in every error about the provider."""
        values = [v for v in values if v and len(v.strip()) >= MIN_SECRET]
        new = {form for value in values for form in _forms(value)}
        fragmentable = {form for value in values for form in _forms(_secret_part(value))}
        with self._lock:
            if not new <= set(self._forms) or not fragmentable <= set(self._fragmentable):
                self._forms = tuple(sorted(set(self._forms) | new, key=len, reverse=True))
                self._fragmentable = tuple(set(self._fragmentable) | fragmentable)

    def register_basic(self, user: str | None, password: str | None) -> None:
        """Hide the HTTP Basic credential of `user:password` (what an echoed Authorization header would show)."""
        if password:
            self.register(password, base64.b64encode(f"{user or ''}:{password}".encode()).decode())

    def redact(self, text: object) -> str:
        """`text` (str() of it) with every registered value, fragment and credential-shaped value masked."""
        text = text if isinstance(text, str) else str(text)
        forms = self._forms
        for form in forms:
            if form in text:
                text = text.replace(form, MASK)
        for shape in _SHAPES:
            text = shape.sub(lambda m: m.group("key") + MASK, text)
        fragmentable = self._fragmentable
        if fragmentable:
            text = _WORD.sub(lambda m: MASK if _is_fragment(m.group(0), fragmentable) else m.group(0), text)
        return text

    def clear(self) -> None:  # for tests
        with self._lock:
            self._forms = self._fragmentable = ()


def _secret_part(value: str) -> str:
    """A URL's path and query (its secret, in a webhook URL); any other value as it is."""
    parts = urlsplit(value.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return value


def _forms(value: str) -> set[str]:
    """The value as a server could echo it: plain, URL-encoded (both ways), JSON- and HTML-escaped, stripped."""
    forms = {value, value.strip(), quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
             html.escape(value), unquote_plus(value)}
    return {f for f in forms if len(f) >= MIN_SECRET}


def _is_fragment(word: str, forms: tuple[str, ...]) -> bool:
    """Whether `word` (8+ characters), or its tail from one of its '/' (a URL's path), is part of a secret, or holds
    one once URL-decoded (a value as it is was replaced before)."""
    if len(word) < ORDINARY_WORD and word.isalpha() and word.islower():
        return False  # an ordinary word ("district") that a human-chosen secret happens to contain
    decoded = unquote_plus(word) if "%" in word or "+" in word else word
    tails = [word[i:] for i, char in enumerate(word) if char == "/" and len(word) - i >= MIN_FRAGMENT]
    for form in forms:
        if len(form) < MIN_FRAGMENT:
            continue
        if word in form or decoded in form or form in decoded or any(tail in form for tail in tails):
            return True
    return False


REDACTOR = Redactor()


def redact(text: object) -> str:
    """The process-wide redactor's `redact` (see the module docstring)."""
    return REDACTOR.redact(text)


def one_line(error: object) -> str:
    """`error`'s text on one line (each run of whitespace one space), redacted: for a message built from an error."""
    return redact(" ".join(str(error).split()))


def register(*values: str | None) -> None:
    REDACTOR.register(*values)


def redact_all(texts: Iterable[str]) -> list[str]:
    return [redact(t) for t in texts]


def redacted_exception(error: BaseException) -> BaseException | None:
    """None when no text of `error` or of the exceptions it wraps shows a secret; else an exception of the same
    name whose message is the redacted one (the chain is not kept: it is where the secret was)."""
    chain, seen, current = [], set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    texts = [str(e) for e in chain]
    if all(redact(t) == t for t in texts):
        return None
    cls = type(error.__class__.__name__, (RedactedError,), {"__module__": error.__class__.__module__})
    return cls(redact(texts[0]))


class RedactedError(Exception):
    """An error whose message showed a secret: the same message, masked (see `redacted_exception`)."""


class _RedactingFactory:
    """A `logging` record factory: the record's message is formatted and redacted when it is made."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed %-format: leave the record as logging would show it
            return record
        masked = redact(message)
        if masked != message or record.args:
            record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[1] is not None:
            replaced = redacted_exception(record.exc_info[1])
            if replaced is not None:
                record.exc_info = (type(replaced), replaced, record.exc_info[2])
        return record


def install_log_redaction() -> None:
    """Make every `logging` record of this process pass through `redact` (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(factory))
