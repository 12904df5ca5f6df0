"""One short line for a failed run: what went wrong and which variable or setting to fix.

A run's log is long (Dagster's events, tracebacks); a person reading the end of it needs the cause and the fix.
`summary(error)` says it in one line from the error itself: a settings error names its variable, an HTTP error its
status and the credentials or URL to check, a connection error the host and ONEROSTER_BASE_URL, a bound its
variable, a DuckDB path or full disk the file. Framework-free; the Dagster layer prints it last.
"""

from __future__ import annotations

from .client.errors import (
    OneRosterConnectionError,
    OneRosterDataError,
    OneRosterHTTPError,
    OneRosterRedirectRefused,
)
from .client.redaction import redact
from .client.settings import SettingsError
from .districts import DistrictsFileError
from .warehouse.duckdb_files import DuckDBPathError, WarehouseWriteError
from .warehouse.provider_switch.errors import ConnectionChanged

SHOWN = 240  # characters of the cause shown

_HTTP_FIX = {
    400: "the provider refused a request parameter: run the connection test (python -m "
         "oneroster_pipeline.connection_test)",
    401: "ONEROSTER_CLIENT_ID / ONEROSTER_CLIENT_SECRET (or ONEROSTER_ACCESS_TOKEN) and ONEROSTER_TOKEN_URL",
    403: "the credentials' scopes at the provider (1.2 needs roster-core.readonly)",
    404: "ONEROSTER_BASE_URL (its version path) and ONEROSTER_VERSION",
    429: "ONEROSTER_MAX_CONCURRENCY / ONEROSTER_PEAK_HOURS, or run outside the provider's busy hours",
}
_CONNECTION_FIX = {
    "dns": "the host in ONEROSTER_BASE_URL / ONEROSTER_TOKEN_URL",
    "refused": "the host and port in ONEROSTER_BASE_URL / ONEROSTER_TOKEN_URL",
    "tls": "the https:// URL in ONEROSTER_BASE_URL, or the machine's trusted certificates",
    "connect_timeout": "ONEROSTER_BASE_URL, or ONEROSTER_TIMEOUT_SECONDS",
    "read_timeout": "ONEROSTER_TIMEOUT_SECONDS or a smaller ONEROSTER_PAGE_SIZE",
    "deadline": "ONEROSTER_REQUEST_DEADLINE_SECONDS, or tell the provider",
    "redirect": "ONEROSTER_BASE_URL / ONEROSTER_TOKEN_URL (set the address the provider moved to)",
}


def summary(error: BaseException, job: str | None = None, step: str | None = None) -> str:
    """One line: `<job> failed[ in <step>]: <cause> (fix: <what>)`, redacted, at most a few hundred characters."""
    cause, fix = _cause_and_fix(_innermost(error))
    cause = " ".join(redact(cause).split())
    cause = cause if len(cause) <= SHOWN else cause[:SHOWN - 3] + "..."
    where = f"{job or 'the run'} failed" + (f" in {step}" if step else "")
    return f"{where}: {cause}" + (f" (fix: {fix})" if fix else "")


def _innermost(error: BaseException) -> BaseException:
    """The error itself, or the project's error it wraps (Dagster wraps a step's error in its own)."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _KNOWN):
            return current
        current = current.__cause__ or current.__context__
    return error


def _cause_and_fix(error: BaseException) -> tuple[str, str | None]:
    text = str(error) or type(error).__name__
    if isinstance(error, SettingsError):
        return text, error.variable
    if isinstance(error, DistrictsFileError):
        return text, f"the districts file {error.path}" + (f", key {error.key}" if error.key else "")
    if isinstance(error, OneRosterHTTPError):
        said = error.description or error.code_minor or "no detail"
        return f"HTTP {error.status} from {error.url.split('?')[0]}: {said}", _HTTP_FIX.get(
            error.status, "the provider's status; re-run later" if error.status >= 500 else None)
    if isinstance(error, OneRosterRedirectRefused):
        return text.split(". ")[0], _CONNECTION_FIX["redirect"]
    if isinstance(error, OneRosterConnectionError):
        return text.split(". ")[0], _CONNECTION_FIX.get(error.kind)
    if isinstance(error, OneRosterDataError):
        bound = next((word.strip("().,;") for word in text.split() if word.strip("().,;").startswith("ONEROSTER_")),
                     None)
        return text, bound or "tell the provider (the pull's answers cannot be used)"
    if isinstance(error, DuckDBPathError):
        return text, "ONEROSTER_DUCKDB_PATH"
    if isinstance(error, WarehouseWriteError):
        return text, "free space on the DuckDB file's volume, then re-run"
    if isinstance(error, ConnectionChanged):
        return ("the configured provider connection is not the one this DuckDB file was synced from",
                "run provider_switch for a new provider, or set ONEROSTER_DUCKDB_PATH to a new file for "
                "another district")
    return f"{type(error).__name__}: {text}", None


_KNOWN = (SettingsError, DistrictsFileError, OneRosterHTTPError, OneRosterConnectionError, OneRosterDataError,
          DuckDBPathError, WarehouseWriteError, ConnectionChanged)
