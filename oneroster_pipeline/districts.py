"""Many districts: the `ONEROSTER_DISTRICTS_FILE` YAML file, read and validated into `District`s.

Each entry names a district (`id`, `name`) and any `ONEROSTER_<NAME>` setting as `<name>` in lower case; secrets only
by the name of the environment variable that holds them (`client_secret_env: NORTH_OR_SECRET`). Every problem fails
at load as a `DistrictsFileError` naming the file, the district and the key, and never shows a secret's value.
A district's effective environment (`District.env`) is the process environment overridden by its settings.
Framework-free (no dagster import): the Dagster layer turns the districts into partitions.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml

from .builtin_demo import DEMO_ENV_VARS, DemoShape
from .client.settings import CONNECTION_VARS, ENV_VARS, FALLBACK_ENV_VARS, ConnectionSettings, SettingsError
from .warehouse import store
from .warehouse.alerts import SECRET_ENV_VARS
from .warehouse.lake_settings import CATALOG_VAR, DATA_PATH_VAR, SNAPSHOT_DAYS_VAR, WAREHOUSE_VAR
from .warehouse.policy import POLICY_VARS, SyncPolicy
from .warehouse.snapshots import SNAPSHOT_DIR_VAR

DISTRICTS_FILE_VAR = "ONEROSTER_DISTRICTS_FILE"
DISTRICTS_PER_RUN_VAR = "ONEROSTER_DISTRICTS_PER_RUN"  # how many districts a backfill run syncs (default 1)
# the deployment's own variables, the same for every district: not keys of a district
DEPLOYMENT_VARS = (DISTRICTS_FILE_VAR, DISTRICTS_PER_RUN_VAR, SNAPSHOT_DIR_VAR, SNAPSHOT_DAYS_VAR)
DISTRICT_ID = re.compile(r"^[a-z0-9_-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_DUCKDB_DIR = "data/districts"  # a district's DuckDB file: <dir>/<id>.duckdb unless duckdb_path is given
_PREFIX = "ONEROSTER_"


def _known_vars() -> dict[str, str]:
    """Every ONEROSTER_* variable the code reads, by its key in the districts file (the name in lower case)."""
    names = (*ENV_VARS.values(), *FALLBACK_ENV_VARS.values(), *POLICY_VARS, *DEMO_ENV_VARS.values(),
             store.PATH_VAR, store.MEMORY_LIMIT_VAR, WAREHOUSE_VAR, CATALOG_VAR, DATA_PATH_VAR, *SECRET_ENV_VARS)
    return {var.removeprefix(_PREFIX).lower(): var for var in dict.fromkeys(names) if var not in DEPLOYMENT_VARS}


KNOWN_VARS: Mapping[str, str] = MappingProxyType(_known_vars())  # key -> ONEROSTER_* variable
SECRET_KEYS = tuple(var.removeprefix(_PREFIX).lower() for var in SECRET_ENV_VARS)  # given only as <key>_env
SETTING_KEYS = tuple(key for key in KNOWN_VARS if key not in SECRET_KEYS)
ALLOWED_KEYS = ("id", "name", *SETTING_KEYS, *(f"{key}_env" for key in SECRET_KEYS))
_TIMEZONE_KEYS = ("timezone", "district_timezone")


class DistrictsFileError(ValueError):
    """The districts file cannot be used; the message names the file, and the district and key when they apply."""

    def __init__(self, path: str | Path, message: str, district: str | None = None, key: str | None = None) -> None:
        self.path, self.district, self.key = str(path), district, key
        where = "".join([f", district {district}" if district else "", f", key {key!r}" if key else ""])
        super().__init__(f"{DISTRICTS_FILE_VAR}={self.path}{where}: {message}")


@dataclass(frozen=True)
class District:
    """One district of the file: its partition key `id`, display `name`, the `ONEROSTER_*` settings it gives
    (always `ONEROSTER_DUCKDB_PATH`), and its secrets as `ONEROSTER_*` variable -> name of the env var holding it."""

    id: str
    name: str
    settings: Mapping[str, str]
    secret_vars: Mapping[str, str]

    def __hash__(self) -> int:
        return hash((self.id, tuple(sorted(self.settings.items())), tuple(sorted(self.secret_vars.items()))))

    @property
    def label(self) -> str:
        """How logs and alerts name the district: `north (North Unified)`, or the id alone when it has no name."""
        return self.id if self.name == self.id else f"{self.id} ({self.name})"

    @property
    def duckdb_path(self) -> str:
        return self.settings[store.PATH_VAR]

    @property
    def timezone(self) -> str:
        """The district's schedule timezone: its `timezone`, else UTC (see `timezone_or` for the env fallback)."""
        return self.timezone_or({})

    def timezone_or(self, env: Mapping[str, str]) -> str:
        """Its `timezone`, else `env`'s ONEROSTER_TIMEZONE, else UTC."""
        var = KNOWN_VARS["timezone"]
        return (self.settings.get(var) or "").strip() or (env.get(var) or "").strip() or "UTC"

    @property
    def provider_host(self) -> str:
        """What politeness limits are keyed on, from the district's own settings (see `provider_host_in`)."""
        return self.provider_host_in({})

    def provider_host_in(self, base: Mapping[str, str]) -> str:
        """The provider host of the district (its connection is its own entry's: `base` is not read): host[:port]
        of the base URL in lower case for a REST provider, `csv` for a CSV export, `demo` for the built-in demo
        without a base URL (any other provider without a base URL: its name)."""
        env = dict(self.settings)  # a district's connection is its own entry's (never the environment's)
        provider = (env.get(ENV_VARS["provider"]) or "").strip().lower() or "demo"
        if provider == "csv":
            return "csv"
        url = (env.get(ENV_VARS["base_url"]) or "").strip()
        if not url:
            return provider
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        return f"{host}:{port}" if port else host or provider

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The district's effective environment: `base` (e.g. os.environ) without any connection value
        (CONNECTION_VARS: a district never inherits another provider), overridden by its settings, each secret
        read from `base[<its env var>]`. A secret whose env var is unset or blank is left unset (never `base`'s
        own value of that ONEROSTER_* variable), so the client's usual error names the variable. Without a
        `provider` of its own, a district is the built-in demo district."""
        env = {**{k: v for k, v in base.items() if k not in CONNECTION_VARS}, **self.settings}
        env.pop(DISTRICTS_FILE_VAR, None)
        for var, source in self.secret_vars.items():
            value = base.get(source) or ""
            if value.strip():
                env[var] = value
            else:
                env.pop(var, None)
        return env

    def missing_secrets(self, base: Mapping[str, str]) -> list[str]:
        """The secrets whose env var is unset or blank in `base`, as `<key>_env: <ENV VAR> is not set`."""
        return [f"{var.removeprefix(_PREFIX).lower()}_env: {source} is not set"
                for var, source in self.secret_vars.items() if not (base.get(source) or "").strip()]


def districts_from_env(env: Mapping[str, str]) -> list[District] | None:
    """The districts of the file ONEROSTER_DISTRICTS_FILE names; None when it is unset or blank (one district,
    configured by the ONEROSTER_* variables, as without the file)."""
    path = (env.get(DISTRICTS_FILE_VAR) or "").strip()
    return load_districts(path) if path else None


def load_districts(path: str | Path) -> list[District]:
    """The districts of the YAML file at `path`, in file order; DistrictsFileError on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DistrictsFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DistrictsFileError(path, f"cannot be read: {type(error).__name__}: {error}") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except (yaml.YAMLError, ValueError) as error:  # a constructor's ValueError, e.g. an integer YAML cannot read
        raise DistrictsFileError(path, f"is not valid YAML: {_yaml_problem(error)}") from None
    entries = _entries(path, document)
    districts = [_district(path, number, entry) for number, entry in enumerate(entries, start=1)]
    _check_unique(path, districts)
    return districts


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key written twice in one mapping is an error instead of the last one winning,
    and dates stay text (`2026-12-24` is the string a variable would hold, never a `date`)."""

    yaml_implicit_resolvers: ClassVar[dict] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # SafeLoader rejects an unhashable key itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def _entries(path: str | Path, document: object) -> list:
    if not isinstance(document, dict) or "districts" not in document:
        raise DistrictsFileError(path, "needs a top-level 'districts:' list of districts (each with an id)")
    extra = [str(key) for key in document if key != "districts"]
    if extra:
        raise DistrictsFileError(path, f"unknown top-level key(s) {', '.join(extra)}; only 'districts:' is read")
    entries = document["districts"]
    if not isinstance(entries, list):
        raise DistrictsFileError(path, "'districts:' must be a list of districts ('- id: ...' entries)",
                                 key="districts")
    if not entries:
        raise DistrictsFileError(path, "'districts:' is empty; list at least one district", key="districts")
    return entries


def _district(path: str | Path, number: int, entry: object) -> District:
    label = f"entry {number}"
    if not isinstance(entry, dict):
        raise DistrictsFileError(path, f"must be a mapping of keys (id, name, settings), got {_kind(entry)}", label)
    raw_id = entry.get("id")
    if raw_id is None:
        raise DistrictsFileError(path, "has no id (the district's partition key, e.g. id: north)", label, "id")
    if not isinstance(raw_id, str) or not DISTRICT_ID.match(raw_id):
        raise DistrictsFileError(path, f"id {raw_id!r} is not a valid district key: lower-case letters, digits, "
                                       "'_' and '-' only" + ("" if isinstance(raw_id, str) else " (quote it)"),
                                 label, "id")
    label = raw_id
    settings: dict[str, str] = {}
    secret_vars: dict[str, str] = {}
    name = raw_id
    for key, value in entry.items():
        if key == "id":
            continue
        key_text = str(key)
        if key_text in SECRET_KEYS:  # never echo the value
            raise DistrictsFileError(path, f"secret written inline; use {key_text}_env: <ENV VAR NAME> (the name of "
                                           "the environment variable that holds it)", label, key_text)
        if key_text not in ALLOWED_KEYS:
            raise DistrictsFileError(path, f"unknown key{_suggestion(key_text)}", label, key_text)
        if key_text.endswith("_env") and key_text.removesuffix("_env") in SECRET_KEYS:
            if not isinstance(value, str) or not ENV_NAME.match(value.strip()):
                raise DistrictsFileError(path, "must be the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*)"
                                               ", not the secret itself", label, key_text)
            secret_vars[KNOWN_VARS[key_text.removesuffix("_env")]] = value.strip()
            continue
        text = _scalar(path, label, key_text, value)
        if key_text == "name":
            name = text.strip() or raw_id
        else:
            settings[KNOWN_VARS[key_text]] = text
    duckdb_var = store.PATH_VAR
    if not (settings.get(duckdb_var) or "").strip():
        if duckdb_var in settings:
            raise DistrictsFileError(path, f"is blank; leave it out for {DEFAULT_DUCKDB_DIR}/{raw_id}.duckdb",
                                     label, "duckdb_path")
        settings[duckdb_var] = f"{DEFAULT_DUCKDB_DIR}/{raw_id}.duckdb"
    _check_values(path, label, settings)
    _check_connection(path, label, settings, secret_vars)
    return District(raw_id, name, MappingProxyType(settings), MappingProxyType(secret_vars))


def _scalar(path: str | Path, label: str, key: str, value: object) -> str:
    """A YAML scalar as the string its variable would hold (booleans as true/false)."""
    if value is None:
        raise DistrictsFileError(path, 'has no value (write "" to leave the variable unset for this district)',
                                 label, key)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise DistrictsFileError(path, f"must be a single value (text or a number), got {_kind(value)}", label, key)


def _check_values(path: str | Path, label: str, settings: Mapping[str, str]) -> None:
    """The values that can be checked without the rest of the environment: timezones, the policy, the demo's
    shape (connection settings are checked by the client when the district's run starts, with its env)."""
    by_var = {var: key for key, var in KNOWN_VARS.items()}
    for key in _TIMEZONE_KEYS:
        zone = (settings.get(KNOWN_VARS[key]) or "").strip()
        if zone:
            try:
                ZoneInfo(zone)
            except (ValueError, KeyError, OSError):
                raise DistrictsFileError(path, f"unknown timezone {zone!r}; an IANA name such as America/Chicago",
                                         label, key) from None
    try:
        SyncPolicy.from_env(settings)
        DemoShape.from_env(settings)
    except SettingsError as error:
        raise DistrictsFileError(path, str(error), label, by_var.get(error.variable)) from None
    except ValueError as error:
        named = max((var for var in POLICY_VARS if str(error).startswith(var)), key=len, default=None)
        raise DistrictsFileError(path, str(error), label, by_var.get(named)) from None


def _check_connection(path: str | Path, label: str, settings: Mapping[str, str], secret_vars: Mapping[str, str]
                      ) -> None:
    """The district's connection, from its own entry only (the environment never fills one in): what its provider
    and auth mode need must be there, e.g. a base_url and token_url for OAuth 2.0 (a secret by the name of its
    variable: whether that variable is set is checked when a run starts, with the run's environment)."""
    connection = {var: value for var, value in settings.items() if var in CONNECTION_VARS}
    connection.update({var: "(set by " + source + ")" for var, source in secret_vars.items()})
    try:
        ConnectionSettings.from_env(connection)
    except SettingsError as error:
        key = error.variable.removeprefix(_PREFIX).lower()
        key = f"{key}_env" if key in SECRET_KEYS else key
        message = str(error).removeprefix(f"{error.variable}: ")
        raise DistrictsFileError(path, f"{message} (a district's connection comes from its own entry only, never "
                                       "from the environment or .env)", label, key) from None


def _check_unique(path: str | Path, districts: list[District]) -> None:
    ids: set[str] = set()
    files: dict[str, str] = {}
    for district in districts:
        if district.id in ids:
            raise DistrictsFileError(path, f"duplicate id {district.id!r}: each district needs its own id",
                                     district.id, "id")
        ids.add(district.id)
        where = os.path.abspath(district.duckdb_path)
        if where in files:
            raise DistrictsFileError(path, f"districts {files[where]} and {district.id} share the DuckDB file "
                                           f"{where}; each district writes its own", district.id, "duckdb_path")
        files[where] = district.id


def _suggestion(key: str) -> str:
    if key.upper().startswith(_PREFIX):
        short = key.upper().removeprefix(_PREFIX).lower()
        if short in ALLOWED_KEYS or short in SECRET_KEYS:
            return f"; write {short}{'_env' if short in SECRET_KEYS else ''}: (the variable without ONEROSTER_, " \
                   "in lower case)"
    close = difflib.get_close_matches(key.lower(), ALLOWED_KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known keys: id, name and any ONEROSTER_<NAME> setting as <name> in lower case)"


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)
