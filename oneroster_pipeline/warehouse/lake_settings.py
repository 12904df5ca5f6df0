"""Which warehouse a district writes (`ONEROSTER_WAREHOUSE`) and, for DuckLake, the lake's catalog and data path.
Framework-free; read by `backends.Warehouse.from_env`, never by the sync logic.

- `ONEROSTER_WAREHOUSE`: `duckdb` (the default: the district's DuckDB file, as before) or `ducklake`.
- `ONEROSTER_DUCKLAKE_CATALOG`: where the lake's catalog lives. `postgres:dbname=... host=... port=... user=...`
  (a libpq connection string; the password from `PGPASSWORD`, or `password_env=<VARIABLE>` names the variable that
  holds it; a literal `password=` works but shows in the configuration) or the path of a local `.ducklake` file
  (one writing process at a time: DuckDB locks the file).
- `ONEROSTER_DUCKLAKE_DATA_PATH`: the folder the Parquet data files go to (shared by every machine that writes the
  lake), or an `s3://bucket/prefix` URL (AWS S3, or any S3-compatible store) reached through the httpfs extension
  with the AWS SDKs' own variables (`S3Access`).

The extensions load from their PyPI wheels' files (`duckdb-extension-ducklake`, `duckdb-extension-postgres-scanner`,
the `[lake]` extra), built for one DuckDB version: `extension_file` says what to install when they do not match.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from oneroster_pipeline.client.redaction import REDACTOR
from oneroster_pipeline.client.settings import SettingsError

from .sql_text import sql_string

WAREHOUSE_VAR = "ONEROSTER_WAREHOUSE"
CATALOG_VAR = "ONEROSTER_DUCKLAKE_CATALOG"
DATA_PATH_VAR = "ONEROSTER_DUCKLAKE_DATA_PATH"
# the lake maintenance job's: snapshots older than this many days are expired (time travel reaches back that far);
# one value for the deployment (a lake is shared by its districts), not a key of a district
SNAPSHOT_DAYS_VAR = "ONEROSTER_DUCKLAKE_SNAPSHOT_DAYS"
DEFAULT_SNAPSHOT_DAYS = 30.0
BACKENDS = ("duckdb", "ducklake")
DEFAULT_BACKEND = "duckdb"
# the DuckDB version the extension wheels of the [lake] extra are built for (pyproject.toml pins both)
LAKE_DUCKDB_VERSION = "1.5.5"
INSTALL_HINT = (f"install the lake extra: pip install -e '.[lake]' (duckdb=={LAKE_DUCKDB_VERSION} with "
                f"duckdb-extension-ducklake, duckdb-extension-postgres-scanner and duckdb-extension-httpfs, each "
                f"=={LAKE_DUCKDB_VERSION})")
# an s3:// data path's access: the AWS SDKs' own variables (S3Access)
S3_KEY_ID_VAR, S3_SECRET_VAR, S3_TOKEN_VAR = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"
S3_REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
S3_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_OBJECT_STORE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_DSN_PAIR = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


class LakeUnavailable(RuntimeError):
    """The DuckLake backend cannot run in this environment: an extension wheel is missing or built for another
    DuckDB version. The message says what to install."""


def backend_of(env: Mapping[str, str]) -> str:
    """`ONEROSTER_WAREHOUSE` of `env`: 'duckdb' (unset or blank) or 'ducklake'; anything else is a SettingsError."""
    backend = (env.get(WAREHOUSE_VAR) or "").strip().lower() or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise SettingsError(WAREHOUSE_VAR, f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _first(env: Mapping[str, str], names: Iterable[str]) -> tuple[str, str] | None:
    """(name, value) of the first of `names` set (not blank) in `env`."""
    return next(((n, v.strip()) for n in names if (v := env.get(n) or "").strip()), None)


@dataclass(frozen=True)
class S3Access:
    """How DuckDB's httpfs reaches an s3:// data path, from the AWS SDKs' own variables: `AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` for temporary credentials; neither: anonymous access),
    `AWS_REGION` (or `AWS_DEFAULT_REGION`), and for a store other than AWS (MinIO, Ceph, ...)
    `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`): `http(s)://host[:port]`, reached with path-style URLs. The secret
    and the token are registered with the one redactor and never in the repr."""

    key_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Access:
        key_id, secret = _first(env, [S3_KEY_ID_VAR]), _first(env, [S3_SECRET_VAR])
        token, region = _first(env, [S3_TOKEN_VAR]), _first(env, S3_REGION_VARS)
        if bool(key_id) != bool(secret):
            raise SettingsError(S3_SECRET_VAR if key_id else S3_KEY_ID_VAR, f"is required with {DATA_PATH_VAR}=s3://"
                                f"... when {S3_KEY_ID_VAR if key_id else S3_SECRET_VAR} is set (both, or neither "
                                "for anonymous access)")
        endpoint = _first(env, S3_ENDPOINT_VARS)
        if endpoint:
            url = urlsplit(endpoint[1])
            if (url.scheme not in ("http", "https") or not url.hostname or url.username or url.path.strip("/")
                    or url.query):
                raise SettingsError(endpoint[0], "must be http://host[:port] or https://host[:port] of an "
                                    f"S3-compatible store, got {endpoint[1]!r}")
        REDACTOR.register(secret and secret[1], token and token[1])
        return cls(key_id and key_id[1], secret and secret[1], token and token[1], region and region[1],
                   endpoint and endpoint[1])

    def secret_sql(self, name: str, scope: str) -> str:
        """The `CREATE SECRET` statement giving httpfs this access to `scope` (holds the secret: never logged)."""
        options = {"SCOPE": scope, "KEY_ID": self.key_id, "SECRET": self.secret, "SESSION_TOKEN": self.session_token,
                   "REGION": self.region}
        if self.endpoint_url:
            url = urlsplit(self.endpoint_url)
            options.update(ENDPOINT=url.netloc, URL_STYLE="path", USE_SSL=url.scheme == "https")
        listed = ", ".join(f"{k} {str(v).lower() if isinstance(v, bool) else sql_string(v)}"
                           for k, v in options.items() if v is not None)
        return f"CREATE OR REPLACE SECRET {name} (TYPE s3, {listed})"


@dataclass(frozen=True)
class LakeSettings:
    """One lake: its catalog (as configured, `postgres:...` or a `.ducklake` path) and its data path. The password
    and an s3:// data path's access (resolved from the environment) are kept apart, never in `describe()` or the
    repr."""

    catalog: str
    data_path: str
    password: str | None = field(default=None, repr=False, compare=False)
    s3: S3Access | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LakeSettings:
        """The lake `env` configures (`ONEROSTER_DUCKLAKE_CATALOG`, `ONEROSTER_DUCKLAKE_DATA_PATH`); a missing or
        malformed value is a SettingsError naming its variable."""
        catalog = (env.get(CATALOG_VAR) or "").strip().removeprefix("ducklake:").strip()
        data_path = (env.get(DATA_PATH_VAR) or "").strip()
        if not catalog:
            raise SettingsError(CATALOG_VAR, "is required with ONEROSTER_WAREHOUSE=ducklake: a PostgreSQL catalog "
                                "(postgres:dbname=... host=... port=... user=...) or a local .ducklake file path")
        if not data_path:
            raise SettingsError(DATA_PATH_VAR, "is required with ONEROSTER_WAREHOUSE=ducklake: the folder (or "
                                "s3:// URL) the lake's Parquet data files go to")
        s3 = None
        if _OBJECT_STORE.match(data_path) and not data_path.startswith("file://"):
            scheme = data_path.split("://", 1)[0]
            if scheme.lower() != "s3":
                raise SettingsError(DATA_PATH_VAR, f"{scheme}:// is not supported: a folder, or s3://bucket/prefix "
                                    "(AWS S3, or an S3-compatible store named by AWS_ENDPOINT_URL_S3)")
            s3 = S3Access.from_env(env)
        password = None
        if catalog.startswith("postgres:"):
            pairs = dict(_DSN_PAIR.findall(catalog.removeprefix("postgres:")))
            unknown = catalog.removeprefix("postgres:").strip()
            if not pairs or _DSN_PAIR.sub("", unknown).strip():
                raise SettingsError(CATALOG_VAR, "a PostgreSQL catalog is postgres: followed by key=value pairs "
                                    "(dbname=... host=... port=... user=...)")
            if "dbname" not in pairs:
                raise SettingsError(CATALOG_VAR, "name the catalog's database: postgres:dbname=<database> ...")
            if pairs.get("password_env"):
                variable = password_var(catalog)
                password = (env.get(variable) or "").strip() or None
                if password is None:
                    raise SettingsError(CATALOG_VAR, f"password_env names {variable}, which is not set")
            elif "password" not in pairs:
                password = (env.get("PGPASSWORD") or "").strip() or None  # libpq reads it too, from os.environ
            REDACTOR.register(password, _unquote(pairs.get("password")))
        elif catalog.split(":", 1)[0] in ("sqlite", "mysql", "md", "motherduck"):
            raise SettingsError(CATALOG_VAR, f"{catalog.split(':', 1)[0]}: catalogs are not supported here: use "
                                "postgres:... or a local .ducklake file path")
        elif not catalog.endswith(".ducklake"):
            raise SettingsError(CATALOG_VAR, f"{catalog!r} is neither postgres:... nor a .ducklake file path")
        return cls(catalog, data_path, password, s3)

    @property
    def is_postgres(self) -> bool:
        return self.catalog.startswith("postgres:")

    @property
    def is_object_store(self) -> bool:
        return self.s3 is not None

    @property
    def dsn(self) -> str:
        """The PostgreSQL connection string with the password, without `password_env` (never logged)."""
        kept = [f"{k}={v}" for k, v in _DSN_PAIR.findall(self.catalog.removeprefix("postgres:")) if k != "password_env"]
        if self.password:
            kept.append(f"password='{_escape(self.password)}'")
        return " ".join(kept)

    @property
    def attach_target(self) -> str:
        """What follows `ducklake:` in the ATTACH statement (holds the password: never logged)."""
        return f"postgres:{self.dsn}" if self.is_postgres else str(Path(self.catalog).expanduser().absolute())

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the lake in this process (no password)."""
        return self.catalog, self.data_path

    def describe(self) -> str:
        """The catalog and data path, with any password masked."""
        shown = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", self.catalog)
        return f"DuckLake catalog {shown}, data path {self.data_path}"


def password_var(catalog: str) -> str:
    """The variable holding a PostgreSQL catalog's password: its `password_env=<VARIABLE>`, else PGPASSWORD."""
    named = dict(_DSN_PAIR.findall(catalog.removeprefix("postgres:"))).get("password_env")
    return named.strip("'") if named else "PGPASSWORD"


def _unquote(value: str | None) -> str | None:
    return value[1:-1].replace("\\'", "'") if value and value.startswith("'") else value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def snapshot_days_of(env: Mapping[str, str]) -> float:
    """`ONEROSTER_DUCKLAKE_SNAPSHOT_DAYS` of `env` (default 30): a number of days, 0 or more; else a SettingsError."""
    raw = (env.get(SNAPSHOT_DAYS_VAR) or "").strip()
    if not raw:
        return DEFAULT_SNAPSHOT_DAYS
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise SettingsError(SNAPSHOT_DAYS_VAR, f"must be a number of days, 0 or more, got {raw!r}")
    return days


def lakes_of(envs: Iterable[Mapping[str, str]]) -> list[LakeSettings]:
    """The lakes the environments `envs` (the districts', or the one district's) write, each once, in order: those
    with ONEROSTER_WAREHOUSE=ducklake. A bad lake setting is a SettingsError."""
    lakes: dict[tuple[str, str], LakeSettings] = {}
    for env in envs:
        if backend_of(env) == "ducklake":
            settings = LakeSettings.from_env(env)
            lakes.setdefault(settings.key, settings)
    return list(lakes.values())


def extension_file(name: str) -> Path:
    """The `name` extension's file in its wheel (`duckdb_extension_<name>`), built for this process's DuckDB.
    LakeUnavailable (saying what to install) when the wheel is missing or built for another DuckDB version."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise LakeUnavailable(f"the DuckDB extension {name} is not installed: {INSTALL_HINT}") from None
    folder = Path(module.__path__[0]) / "extensions"
    wanted = folder / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not wanted.is_file():
        built = sorted(p.parent.name.removeprefix("v") for p in folder.glob(f"*/{name}.duckdb_extension"))
        raise LakeUnavailable(f"the DuckDB extension {name} installed here is built for DuckDB "
                              f"{', '.join(built) or '(none)'}, this process runs DuckDB {duckdb.__version__}: "
                              f"{INSTALL_HINT}")
    return wanted


def unavailable_reason(postgres: bool = True) -> str | None:
    """Why the DuckLake backend cannot run here (None: it can): the ducklake extension, and postgres_scanner for a
    PostgreSQL catalog."""
    try:
        extension_file("ducklake")
        if postgres:
            extension_file("postgres_scanner")
    except LakeUnavailable as error:
        return str(error)
    return None
