"""Dagster resources: the OneRoster connection, the DuckDB warehouse and alert delivery, and `default_resources`,
which binds them (and the core `SyncPolicy`) from the configuration's `ONEROSTER_*` variables (`config.Config`, the
one reader of the environment)."""

# Secrets are bound as `EnvVar`s (shown by name in the UI, never by value). With no provider configured, the built-in
# demo district is started in-process and the log says so.

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource

from oneroster_pipeline.builtin_demo import DEMO_ENV_VARS as DEMO_SHAPE_VARS
from oneroster_pipeline.builtin_demo import DemoShape, start_demo_district
from oneroster_pipeline.client.settings import ENV_VARS, FALLBACK_ENV_VARS, ConnectionSettings, Secret, SettingsError
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.config import Config, duckdb_path_of
from oneroster_pipeline.districts import District
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.alerts import Alert, send_alert
from oneroster_pipeline.warehouse.backends import Warehouse
from oneroster_pipeline.warehouse.lake_settings import (
    CATALOG_VAR,
    DATA_PATH_VAR,
    S3_KEY_ID_VAR,
    S3_SECRET_VAR,
    S3_TOKEN_VAR,
    WAREHOUSE_VAR,
    LakeSettings,
    backend_of,
    password_var,
)
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline.warehouse.snapshots import DEFAULT_SNAPSHOT_DIR, SNAPSHOT_DIR_VAR

# the built-in demo district's shape: one definition (builtin_demo.py) for the sync and the connection test
DEMO_ENV_VARS = {f"demo_{name}": var for name, var in DEMO_SHAPE_VARS.items()}
SECRET_FIELDS = ("client_secret", "access_token")
LOWERCASE_FIELDS = ("provider", "auth")  # read case-insensitively, as the client reads them


class OneRosterResource(dg.ConfigurableResource):
    """The district's OneRoster provider (REST 1.1/1.2 or a CSV export); see README for every variable."""

    provider: str = "demo"
    base_url: Optional[str] = None
    version: Optional[str] = None
    auth: Optional[str] = None
    token_url: Optional[str] = None
    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    access_token: Optional[str] = None
    page_size: Optional[int] = None
    csv_path: Optional[str] = None
    oauth1_signature_method: Optional[str] = None
    max_retries: Optional[int] = None
    timeout_seconds: Optional[float] = None
    max_concurrency: Optional[int] = None
    backoff_seconds: Optional[float] = None
    peak_concurrency: Optional[int] = None
    peak_hours: Optional[str] = None
    district_timezone: Optional[str] = None
    request_deadline_seconds: Optional[float] = None
    max_page_mb: Optional[int] = None
    max_records: Optional[int] = None
    max_records_beyond_total: Optional[int] = None
    max_pages_without_progress: Optional[int] = None
    max_revision_restarts: Optional[int] = None
    person_key: Optional[str] = None
    demo_schools: int = DemoShape.schools
    demo_students: int = DemoShape.students
    demo_seed: int = DemoShape.seed
    # what the configuration was read from (config.Config.describe(): names, never values), logged by every step
    config_sources: Optional[str] = None

    def settings(self) -> ConnectionSettings:
        """Validated connection settings (raises SettingsError naming the variable, before any request)."""
        values: dict[str, object] = {}
        for name in ENV_VARS:
            value = getattr(self, name)
            if isinstance(value, str):
                value = value.strip() or None  # blank counts as unset, as in the environment
                value = value.lower() if value and name in LOWERCASE_FIELDS else value
            if value is not None:
                values[name] = Secret(value) if name in SECRET_FIELDS else value
        return ConnectionSettings(**values)

    @contextmanager
    def open(self, log) -> Iterator:
        """An open source for one step; starts the in-process demo district when no provider is configured."""
        settings = self.settings()
        if self.config_sources:
            log.info(self.config_sources)
        if settings.needs_demo_provider:
            with start_demo_district(settings, self.demo_shape()) as (demo_settings, message):
                log.info(message)
                with open_source(demo_settings) as source:
                    yield source
            return
        log.info(f"OneRoster connection: {settings.connection_label()}")
        with open_source(settings) as source:
            yield source

    def demo_shape(self) -> DemoShape:
        """The built-in demo district's shape (ONEROSTER_DEMO_SCHOOLS/STUDENTS/SEED): the connection test's too.
        Its range checks (a SettingsError naming the variable) live in `DemoShape.from_env`."""
        return DemoShape.from_env({var: str(getattr(self, name)) for name, var in DEMO_ENV_VARS.items()})

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, secrets_as_values: bool = False,
                         config_sources: str | None = None) -> "OneRosterResource":
        """Bind every set variable with its type; secrets as EnvVar so their values never show in the UI or run
        config (Dagster reads them from the process environment when the resource initialises). A number that is
        not one fails here, naming its variable. `secrets_as_values`: a resource built inside a step for one
        district (never shown in the UI) takes the secrets' values from `env` (default: `Config.load()`'s)."""
        env = Config.load().env if env is None else env
        kwargs: dict = {}
        for name, var in [*ENV_VARS.items(), *DEMO_ENV_VARS.items()]:  # the client's own table: none forgotten
            var = var if (env.get(var) or "").strip() else FALLBACK_ENV_VARS.get(name, var)
            raw = (env.get(var) or "").strip()
            if not raw:
                continue
            if name in SECRET_FIELDS:
                kwargs[name] = raw if secrets_as_values else dg.EnvVar(var)
            else:
                kwargs[name] = _typed(cls, name, var, raw)
        if config_sources:  # a constructor argument: Dagster keeps only the fields given there in the run's config
            kwargs["config_sources"] = config_sources
        return cls(**kwargs)


def _typed(resource: type[dg.ConfigurableResource], name: str, var: str, raw: str):
    """`raw` as the field's type (int, float or str); SettingsError naming `var` when it is not a number."""
    kinds = [t for t in typing.get_args(resource.model_fields[name].annotation) or
             (resource.model_fields[name].annotation,) if t is not type(None)]
    kind = kinds[0]
    if kind is str:
        return raw
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(var, f"must be {'a whole number' if kind is int else 'a number'}, got {raw!r}") from None


AWS_FIELDS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region", "aws_endpoint_url_s3")


class WarehouseResource(DuckDBResource):
    """Where a district's tables land (`backends.Warehouse`): the DuckDB file (`ONEROSTER_DUCKDB_PATH`, the default
    backend) or, with `ONEROSTER_WAREHOUSE=ducklake`, the district's schema of one lake (`ONEROSTER_DUCKLAKE_CATALOG`,
    `ONEROSTER_DUCKLAKE_DATA_PATH`); its memory cap (`ONEROSTER_DUCKDB_MEMORY_LIMIT`) and its Parquet staging folder.
    `database` is the DuckDB file's path (not used by a lake)."""

    memory_limit: Optional[str] = None  # e.g. "512MB"; None: store.DEFAULT_MEMORY_LIMIT
    district_id: Optional[str] = None  # set when bound to one district of ONEROSTER_DISTRICTS_FILE
    snapshot_dir: Optional[str] = None  # a district's: where its snapshots go (ONEROSTER_SNAPSHOT_DIR)
    backend: Optional[str] = None  # ONEROSTER_WAREHOUSE: None or 'duckdb' (the file), 'ducklake'
    lake_catalog: Optional[str] = None  # ONEROSTER_DUCKLAKE_CATALOG (its password, if any, apart)
    lake_data_path: Optional[str] = None  # ONEROSTER_DUCKLAKE_DATA_PATH
    lake_password: Optional[str] = None  # the catalog's password (an EnvVar in the UI; PGPASSWORD or password_env)
    # an s3:// data path's access (lake_settings.S3Access), by the AWS SDKs' variable names; key, secret and token
    # as EnvVars in the UI
    aws_access_key_id: Optional[str] = None
    aws_secret_access_key: Optional[str] = None
    aws_session_token: Optional[str] = None
    aws_region: Optional[str] = None
    aws_endpoint_url_s3: Optional[str] = None

    @property
    def is_lake(self) -> bool:
        return (self.backend or "duckdb") == "ducklake"

    def warehouse(self) -> Warehouse:
        """The framework-free warehouse this resource describes (`backends.Warehouse`)."""
        env = {WAREHOUSE_VAR: self.backend or "duckdb", store.MEMORY_LIMIT_VAR: self.memory_limit or ""}
        if self.is_lake:
            env.update({CATALOG_VAR: self.lake_catalog or "", DATA_PATH_VAR: self.lake_data_path or ""})
            if self.lake_password:
                env[password_var(self.lake_catalog or "")] = self.lake_password
            env.update({name.upper(): value for name in AWS_FIELDS if (value := getattr(self, name))})
        return Warehouse.from_env(env, duckdb_path=self.database, district_id=self.district_id)

    @contextmanager
    def connect(self) -> Iterator:
        """A short write connection with every table created and memory capped. A DuckDB file is opened like
        `store.connect` (not DuckDBResource's get_connection, which retries every IO error for minutes): waits
        store.LOCK_WAIT_SECONDS for another process's lock, and any path problem fails at once with a
        `store.DuckDBPathError` naming ONEROSTER_DUCKDB_PATH. store.prepared closes it even on failure. A lake:
        the district's schema (`lake.connect`: a refused commit is a `LakeConflictError`)."""
        if self.is_lake:
            with self.warehouse().connect() as con:
                yield con
            return
        with store.connect(self.database, memory_limit=self.memory_limit or store.DEFAULT_MEMORY_LIMIT,
                           config=self.connection_config) as con:
            yield con

    @contextmanager
    def get_connection(self) -> Iterator:
        """DuckDBResource's plain connection, opened the same way as `connect` (no schema, no memory cap); on a
        lake, the district's connection (`connect`)."""
        if self.is_lake:
            with self.connect() as con:
                yield con
            return
        con = store.open_duckdb(self.database, config=self.connection_config)
        try:
            yield con
        finally:
            con.close()

    def staging_dir(self, run_id: str, step: str) -> Path:
        """Where a step stages its pull (`backends.Warehouse.staging_dir`: beside the file, or a lake's temp folder)."""
        return self.warehouse().staging_dir(run_id, step)

    def alerts_target(self):
        """What `AlertsResource.send` writes `sync_alerts` to: the DuckDB file's path, or the lake's `Warehouse`."""
        return self.warehouse() if self.is_lake else self.database

    def describe(self) -> str:
        """Where the tables are, without secrets."""
        return self.warehouse().describe()

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, district_id: str | None = None,
                         secrets_as_values: bool = False) -> "WarehouseResource":
        """Bound from `env`; a bad ONEROSTER_WAREHOUSE / ONEROSTER_DUCKLAKE_* value fails here (SettingsError naming
        it). The catalog's password is an EnvVar (never shown in the UI), or its value with `secrets_as_values`."""
        env = Config.load().env if env is None else env
        snapshots = ((env.get(SNAPSHOT_DIR_VAR) or "").strip() or DEFAULT_SNAPSHOT_DIR) if district_id else None
        lake: dict = {}
        if backend_of(env) == "ducklake":
            settings = LakeSettings.from_env(env)  # validated now
            lake = {"backend": "ducklake", "lake_catalog": settings.catalog, "lake_data_path": settings.data_path}
            var = password_var(settings.catalog)
            if settings.password and (env.get(var) or "").strip():
                lake["lake_password"] = settings.password if secrets_as_values else dg.EnvVar(var)
            if settings.s3 is not None:
                s3 = settings.s3
                for value, var in ((s3.key_id, S3_KEY_ID_VAR), (s3.secret, S3_SECRET_VAR),
                                   (s3.session_token, S3_TOKEN_VAR)):
                    if value:
                        lake[var.lower()] = value if secrets_as_values else dg.EnvVar(var)
                lake.update(aws_region=s3.region, aws_endpoint_url_s3=s3.endpoint_url)
        return cls(database=duckdb_path_of(env), memory_limit=(env.get(store.MEMORY_LIMIT_VAR) or "").strip() or None,
                   district_id=district_id, snapshot_dir=snapshots, **lake)


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go besides the log and `sync_alerts`: an optional Slack-compatible webhook; with many districts,
    the district an alert is about (named in every alert)."""

    webhook_url: Optional[str] = None
    district: Optional[str] = None  # "north (North Unified)" when bound to one district of ONEROSTER_DISTRICTS_FILE

    def send(self, alert: Alert, database, logger) -> None:
        """Deliver `alert` (log, `sync_alerts` in `database`: a DuckDB file's path or a lake's `Warehouse`, as
        `WarehouseResource.alerts_target()` gives it; webhook) naming this resource's district, with every
        secret masked: the webhook URL, and every secret the configuration held (`Config.load` registered them with
        the one redactor) or the client used."""
        if self.district:
            alert = dataclasses.replace(alert, subject=f"[district {self.district}] {alert.subject}")
        send_alert(alert, database=database, webhook_url=self.webhook_url, logger=logger, secrets=[self.webhook_url])

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, secrets_as_values: bool = False,
                         district: str | None = None) -> "AlertsResource":
        env = Config.load().env if env is None else env
        webhook = (env.get("ONEROSTER_ALERT_WEBHOOK_URL") or "").strip()
        if webhook:
            return cls(webhook_url=webhook if secrets_as_values else dg.EnvVar("ONEROSTER_ALERT_WEBHOOK_URL"),
                       district=district)
        return cls(district=district)


def for_district(resource, district: District, env: Mapping[str, str]):
    """`resource` bound to one district: its settings, DuckDB file, policy and alert label from the district's
    environment `env` (`District.env`); built inside a step, so secrets are plain values never shown in the UI."""
    if isinstance(resource, OneRosterResource):
        return OneRosterResource.from_environment(env, secrets_as_values=True)
    if isinstance(resource, WarehouseResource):
        return WarehouseResource.from_environment(env, district_id=district.id, secrets_as_values=True)
    if isinstance(resource, AlertsResource):
        return AlertsResource.from_environment(env, secrets_as_values=True, district=district.label)
    if isinstance(resource, SyncPolicy):
        return SyncPolicy.from_env(env)
    return resource


def default_resources(config: Config | Mapping[str, str] | None = None) -> dict:
    """Every resource, bound from the configuration read once (config.py: the environment, then .env; see README);
    tests pass their own to `build_definitions`. A bad value fails here with a message naming its variable."""
    config = config if isinstance(config, Config) else Config.load() if config is None else Config.of(config)
    env = dict(config.env)
    return {
        "oneroster": OneRosterResource.from_environment(env, config_sources=config.describe()),
        "warehouse": WarehouseResource.from_environment(env),
        "sync_policy": SyncPolicy.from_env(env),
        "alerts": AlertsResource.from_environment(env),
    }
