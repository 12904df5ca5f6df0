"""Connection settings from `ONEROSTER_*` environment variables, validated before any request is sent.

Every problem raises `SettingsError` naming the variable to fix. Secrets are held in `Secret`, whose repr and str
are redacted, so settings can be logged, printed or put in an exception message safely.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timezone
from urllib.parse import parse_qs, urlsplit

from .errors import redact_url
from .profiles import AUTH_MODES, PROFILES, profile_for

# settings field -> environment variable
ENV_VARS = {
    "provider": "ONEROSTER_PROVIDER",
    "base_url": "ONEROSTER_BASE_URL",
    "version": "ONEROSTER_VERSION",
    "auth": "ONEROSTER_AUTH",
    "token_url": "ONEROSTER_TOKEN_URL",
    "client_id": "ONEROSTER_CLIENT_ID",
    "client_secret": "ONEROSTER_CLIENT_SECRET",
    "access_token": "ONEROSTER_ACCESS_TOKEN",
    "page_size": "ONEROSTER_PAGE_SIZE",
    "csv_path": "ONEROSTER_CSV_PATH",
    "oauth1_signature_method": "ONEROSTER_OAUTH1_SIGNATURE_METHOD",
    "timeout_seconds": "ONEROSTER_TIMEOUT_SECONDS",
    "max_retries": "ONEROSTER_MAX_RETRIES",
    "max_concurrency": "ONEROSTER_MAX_CONCURRENCY",
    "backoff_seconds": "ONEROSTER_BACKOFF_SECONDS",
    "peak_concurrency": "ONEROSTER_PEAK_CONCURRENCY",
    "peak_hours": "ONEROSTER_PEAK_HOURS",
    "district_timezone": "ONEROSTER_DISTRICT_TIMEZONE",
    # the bounds of a pull: defaults no real district reaches; each is named in the error when it stops a pull
    "request_deadline_seconds": "ONEROSTER_REQUEST_DEADLINE_SECONDS",
    "max_page_mb": "ONEROSTER_MAX_PAGE_MB",
    "max_records": "ONEROSTER_MAX_RECORDS",
    "max_records_beyond_total": "ONEROSTER_MAX_RECORDS_BEYOND_TOTAL",
    "max_pages_without_progress": "ONEROSTER_MAX_PAGES_WITHOUT_PROGRESS",
    "max_revision_restarts": "ONEROSTER_MAX_REVISION_RESTARTS",
    "person_key": "ONEROSTER_PERSON_KEY",
}
# what a connection is: in a districts file each district gives these itself (districts.py), never the environment
CONNECTION_VARS = frozenset(ENV_VARS[name] for name in (
    "provider", "base_url", "version", "auth", "token_url", "client_id", "client_secret", "access_token", "csv_path",
    "oauth1_signature_method", "person_key"))
# read when the settings' own variable is unset: the schedule's timezone is usually the district's
FALLBACK_ENV_VARS = {"district_timezone": "ONEROSTER_TIMEZONE"}
_SECRETS = ("client_secret", "access_token")
_INTS = ("page_size", "max_retries", "max_concurrency", "peak_concurrency", "max_page_mb", "max_records",
         "max_records_beyond_total", "max_pages_without_progress", "max_revision_restarts")
_FLOATS = ("timeout_seconds", "backoff_seconds", "request_deadline_seconds")
VERSIONS = {"1.1": "1.1", "v1p1": "1.1", "1.2": "1.2", "v1p2": "1.2"}
SIGNATURE_METHODS = ("HMAC-SHA256", "HMAC-SHA1")
_PATH_VERSION = re.compile(r"/v1p([12])(?=/|$)")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PEAK = re.compile(r"^(?:(?P<days>[a-z,\- ]+?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$")
NO_PEAK = ("none", "off", "never", "no")
# ONEROSTER_PERSON_KEY values -> the person key of warehouse/people.py PERSON_KEYS: `identifier` is a record's
# userMasterIdentifier, else its identifier; `user_master_identifier` its userMasterIdentifier only
PERSON_KEYS = {"identifier": "identifier", "usermasteridentifier": "user_master_identifier",
               "user_master_identifier": "user_master_identifier", "none": None}


class SettingsError(ValueError):
    """A missing, malformed or contradictory setting; `variable` is the environment variable to fix."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class Secret:
    """A secret string whose repr/str never show it; `reveal()` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ConnectionSettings:
    """One provider connection. Build with `from_env`; derive variants with `with_overrides`."""

    provider: str = "demo"
    base_url: str | None = None  # the service base including the version path, no trailing slash
    version: str | None = None  # "1.1" | "1.2" (inferred from base_url when unset)
    auth: str | None = None  # oauth2 | oauth1 | bearer | none (the provider profile's default when unset)
    token_url: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    access_token: Secret | None = None
    page_size: int | None = None  # the profile's default when unset
    csv_path: str | None = None
    oauth1_signature_method: str = "HMAC-SHA256"
    timeout_seconds: float = 30.0
    max_retries: int = 5
    max_concurrency: int | None = None  # concurrent page requests off-peak; the profile's default when unset
    peak_concurrency: int | None = None  # the limit during peak hours; the profile's when unset (IC: 1)
    peak_hours: str | None = None  # "mon-fri 07:00-16:00" (district time); the profile's when unset; "none": no peak
    district_timezone: str | None = None  # IANA name for peak hours (ONEROSTER_DISTRICT_TIMEZONE, else
                                          # ONEROSTER_TIMEZONE, else UTC)
    backoff_seconds: float = 1.0  # exponential backoff factor between retries (urllib3 Retry.backoff_factor)
    backoff_max_seconds: float = 60.0
    backoff_jitter_seconds: float = 1.0
    request_deadline_seconds: float = 300.0  # one request attempt, headers and body, however slowly it drips
    max_page_mb: int = 64  # one answer's body, counted after decompression
    max_records: int = 5_000_000  # records of one collection in one pull
    max_records_beyond_total: int = 10_000  # unique records past the X-Total-Count of the first page
    max_pages_without_progress: int = 10  # pages in a row that bring no sourcedId not seen before in the pull
    max_revision_restarts: int = 3  # pulls restarted from the first page after the data revision changed
    # the field naming one person across several student records (PERSON_KEYS); the profile's when unset, "none":
    # every record is its own student
    person_key: str | None = None
    # the constructor arguments before defaults were resolved: with_overrides re-resolves from these
    _given: dict = dataclasses.field(init=False, repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConnectionSettings:
        """Settings from `ONEROSTER_*` variables (blank counts as unset); SettingsError names a bad variable."""
        values: dict[str, object] = {}
        for name, var in ENV_VARS.items():
            raw = (env.get(var) or "").strip() or (env.get(FALLBACK_ENV_VARS.get(name, "")) or "").strip()
            if raw:
                values[name] = _parse(name, var, raw)
        return cls(**values)

    def with_overrides(self, **changes: object) -> ConnectionSettings:
        """A validated copy with some fields replaced (plain strings are accepted for secrets); what was inferred
        (version, auth, page size) is inferred again unless given."""
        for name in _SECRETS:
            if isinstance(changes.get(name), str):
                changes[name] = Secret(changes[name])
        return type(self)(**{**self._given, **changes})

    @property
    def profile(self):
        return profile_for(self.provider)

    @property
    def is_rest(self) -> bool:
        return self.provider != "csv"

    @property
    def needs_demo_provider(self) -> bool:
        """The demo provider with no base URL yet: whoever runs it must fill base URL and credentials in."""
        return self.provider == "demo" and not self.base_url

    def connection_label(self) -> str:
        """Which connection produced a sync: provider, base URL without credentials, OneRoster version."""
        if not self.is_rest:
            return f"csv {self.csv_path}"
        where = redact_url(self.base_url) if self.base_url else "(built-in demo, not started)"
        return f"{self.provider} {where} (OneRoster {self.version or '?'})"

    # ---- validation --------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self._set("_given", {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init})
        if self.provider not in PROFILES:
            _fail("provider", f"unknown provider {self.provider!r}; one of {', '.join(PROFILES)}")
        profile = self.profile
        self._set("page_size", profile.default_page_size if self.page_size is None else self.page_size)
        _check_range("page_size", self.page_size, 1, profile.max_page_size, f"{profile.title} allows")
        _check_range("max_retries", self.max_retries, 0, 20)
        if self.max_concurrency is None:
            self._set("max_concurrency", min(profile.default_concurrency, profile.max_concurrency))
        _check_range("max_concurrency", self.max_concurrency, 1, profile.max_concurrency, f"{profile.title} allows")
        self._resolve_peak(profile)
        if not self.timeout_seconds > 0:
            _fail("timeout_seconds", "must be greater than 0")
        if self.backoff_seconds < 0:
            _fail("backoff_seconds", "must not be negative")
        if not self.request_deadline_seconds >= self.timeout_seconds:
            _fail("request_deadline_seconds", f"must be at least ONEROSTER_TIMEOUT_SECONDS ({self.timeout_seconds:g})")
        _check_range("max_page_mb", self.max_page_mb, 1, 4096)
        _check_range("max_records", self.max_records, 1, 1_000_000_000)
        _check_range("max_records_beyond_total", self.max_records_beyond_total, 0, 1_000_000_000)
        _check_range("max_pages_without_progress", self.max_pages_without_progress, 1, 1_000_000)
        _check_range("max_revision_restarts", self.max_revision_restarts, 0, 100)
        key = profile.person_key if self.person_key is None else self.person_key.strip().lower()
        if key is not None and key not in PERSON_KEYS:
            _fail("person_key", "must be identifier, userMasterIdentifier or none, got " + repr(self.person_key))
        self._set("person_key", PERSON_KEYS[key] if key else None)
        method = self.oauth1_signature_method.upper()
        if method not in SIGNATURE_METHODS:
            _fail("oauth1_signature_method", f"must be one of {', '.join(SIGNATURE_METHODS)}")
        self._set("oauth1_signature_method", method)
        if not self.is_rest:
            if not self.csv_path:
                _fail("csv_path", "required for ONEROSTER_PROVIDER=csv (the folder or zip of the CSV export)")
            self._set("auth", "none")
            return
        self._validate_rest(profile)

    # ---- politeness: concurrency by time of day ----------------------------------------------------------------
    @property
    def peak_window(self) -> tuple[frozenset[int], time, time] | None:
        """(weekdays 0=Mon.., start, end) of peak hours in `district_timezone`, or None when there is none."""
        return _parse_peak(self.peak_hours) if self.peak_hours else None

    def in_peak_hours(self, when: datetime | None = None) -> bool:
        """Whether `when` (default now; naive = UTC) falls in the provider's peak hours, in the district's time."""
        window = self.peak_window
        if window is None or self.peak_concurrency is None:
            return False
        from zoneinfo import ZoneInfo  # noqa: PLC0415

        when = when or datetime.now(timezone.utc)
        when = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(ZoneInfo(self.district_timezone))
        days, start, end = window
        clock = when.time().replace(tzinfo=None)
        if start <= end:
            return when.weekday() in days and start <= clock < end
        # a window across midnight belongs to the day it starts on
        return (when.weekday() in days and clock >= start) or ((when.weekday() - 1) % 7 in days and clock < end)

    def concurrency_at(self, when: datetime | None = None) -> int:
        """Concurrent page requests allowed at `when` (default now): the peak limit in peak hours, else
        `max_concurrency`."""
        if self.in_peak_hours(when):
            return max(1, min(self.peak_concurrency, self.max_concurrency))
        return self.max_concurrency

    def _resolve_peak(self, profile) -> None:
        if self.peak_concurrency is None:
            self._set("peak_concurrency", profile.peak_concurrency)
        if self.peak_concurrency is not None:
            _check_range("peak_concurrency", self.peak_concurrency, 1, self.max_concurrency,
                         "ONEROSTER_MAX_CONCURRENCY is")
        hours = profile.peak_hours if self.peak_hours is None else self.peak_hours.strip().lower()
        if hours in NO_PEAK or hours == "":
            hours = None
        if hours is not None and self.peak_concurrency is None:
            self._set("peak_concurrency", 1)  # peak hours given for a provider without a peak limit: serial
        if hours is not None:
            try:
                _parse_peak(hours)
            except ValueError as error:
                _fail("peak_hours", f"{error}; e.g. 'mon-fri 07:00-16:00', or 'none'")
        self._set("peak_hours", hours)
        zone = (self.district_timezone or "UTC").strip()
        try:
            from zoneinfo import ZoneInfo  # noqa: PLC0415

            ZoneInfo(zone)
        except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
            _fail("district_timezone", f"unknown timezone {zone!r}; an IANA name such as America/Chicago")
        self._set("district_timezone", zone)

    def _validate_rest(self, profile) -> None:
        if self.base_url:
            self._set("base_url", _check_url("base_url", self.base_url, allow_query=False).rstrip("/"))
        elif self.provider != "demo":
            _fail("base_url", f"required for {profile.title}: the service base URL including the version path, "
                              "e.g. https://host/ims/oneroster/rostering/v1p2")
        self._resolve_version()
        auth = self.auth or ("bearer" if self.access_token and profile.bearer_with_access_token
                             else profile.default_auth)
        if auth not in AUTH_MODES:
            _fail("auth", f"unknown auth mode {auth!r}; one of {', '.join(AUTH_MODES)}")
        if auth not in profile.auth_modes:
            _fail("auth", f"{profile.title} supports {', '.join(profile.auth_modes)}, not {auth}")
        self._set("auth", auth)
        if self.access_token and auth != "bearer":
            _fail("access_token", f"is set but ONEROSTER_AUTH is {auth}; unset one of them")
        if self.token_url and auth != "oauth2":
            _fail("token_url", f"is set but ONEROSTER_AUTH is {auth}; a token URL is only used with oauth2")
        if self.token_url:
            self._set("token_url", _check_url("token_url", self.token_url, allow_query=True))
        if self.needs_demo_provider:
            return  # credentials come with the demo provider
        required = {"oauth2": ("token_url", "client_id", "client_secret"), "oauth1": ("client_id", "client_secret"),
                    "bearer": ("access_token",), "none": ()}[auth]
        for name in required:
            if not getattr(self, name):
                _fail(name, f"required for ONEROSTER_AUTH={auth}" + self._token_url_hint(name))
        if profile.token_url_needs_app_name:
            self._check_app_name()

    def _resolve_version(self) -> None:
        version = self.version
        if version is not None:
            version = VERSIONS.get(str(version).strip().lower())
            if version is None:
                _fail("version", f"must be 1.1 or 1.2, not {self.version!r}")
        found = _PATH_VERSION.findall(urlsplit(self.base_url).path) if self.base_url else []
        inferred = f"1.{found[-1]}" if found else None
        if version and inferred and version != inferred:
            raise SettingsError(ENV_VARS["version"], f"is {version} but ONEROSTER_BASE_URL ends in the "
                                                     f"{inferred} path /v1p{inferred[-1]}; fix one of them")
        version = version or inferred
        if version is None and self.base_url:
            path = urlsplit(self.base_url).path or "/"
            _fail("base_url", f"has no OneRoster version path (its path is {path!r}): a OneRoster service URL ends in "
                              "/ims/oneroster/v1p1 (1.1) or /ims/oneroster/rostering/v1p2 (1.2), e.g. "
                              f"{self.base_url.rstrip('/')}/ims/oneroster/v1p1; if this provider's path really has "
                              "no version, set ONEROSTER_VERSION (1.1 or 1.2)")
        self._set("version", version)

    def _token_url_hint(self, name: str) -> str:
        if name != "token_url" or not self.profile.token_url_needs_app_name:
            return ""
        host = urlsplit(self.base_url).netloc or "<host>"
        return f", shaped https://{host}/campus/oauth2/token?appName=<appName> (copy it from Campus)"

    def _check_app_name(self) -> None:
        parts = urlsplit(self.token_url)
        app_name = parse_qs(parts.query).get("appName", [""])[0].strip()
        if not parts.path.rstrip("/").endswith("/oauth2/token") or not app_name:
            _fail("token_url", "an Infinite Campus token URL is shaped https://<host>/campus/oauth2/token"
                               "?appName=<appName>; " + ("appName is missing" if not app_name else
                                                         f"the path {parts.path!r} is not .../oauth2/token"))

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)


def _fail(name: str, message: str):
    raise SettingsError(ENV_VARS[name], message)


def _parse_peak(text: str) -> tuple[frozenset[int], time, time]:
    """'mon-fri 07:00-16:00' | '07:00-16:00' (Mon-Fri) | 'daily 22:00-02:00' | 'mon,wed 08:00-12:00'."""
    match = _PEAK.match(text.strip().lower())
    if not match:
        raise ValueError(f"cannot read peak hours {text!r}")
    try:
        start, end = (time.fromisoformat(match[k].zfill(5)) for k in ("start", "end"))
    except ValueError:
        raise ValueError(f"bad time in peak hours {text!r}") from None
    if start == end:
        raise ValueError(f"peak hours {text!r} start and end at the same time")
    spec = (match["days"] or "mon-fri").replace(" ", "")
    if spec in ("daily", "all", "every", "mon-sun"):
        return frozenset(range(7)), start, end
    days: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"unknown day in peak hours {text!r} (use mon..sun)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days), start, end


def _parse(name: str, var: str, raw: str) -> object:
    if name in _SECRETS:
        return Secret(raw)
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
    except ValueError:
        raise SettingsError(var, f"must be a number, got {raw!r}") from None
    return raw.lower() if name in ("provider", "auth") else raw


def _check_range(name: str, value: int, low: int, high: int, who: str = "") -> None:
    if not isinstance(value, int) or not low <= value <= high:
        _fail(name, f"must be a whole number from {low} to {high}" + (f" ({who} at most {high})" if who else "")
              + f", got {value!r}")


def _check_url(name: str, url: str, allow_query: bool) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        _fail(name, "is not a valid URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(name, f"must be an http(s) URL with a host, got {redact_url(url)!r}")
    if parts.username or parts.password:
        _fail(name, "must not contain credentials; use ONEROSTER_CLIENT_ID / ONEROSTER_CLIENT_SECRET")
    if (parts.query and not allow_query) or parts.fragment:
        _fail(name, "must not contain a query string or fragment")
    return url
