"""Dagster resources: the OneRoster connection, the DuckDB warehouse, and alert delivery.

Settings come from environment variables; secrets are bound as `EnvVar`s (shown by name in the UI, never by
value). With no provider configured, the built-in demo district is started in-process and the log says so.
"""


import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource

from oneroster_pipeline.client.builtin_demo import DEMO_ENV_VARS as DEMO_SHAPE_VARS
from oneroster_pipeline.client.builtin_demo import DemoShape, start_demo_district
from oneroster_pipeline.client.settings import ENV_VARS, FALLBACK_ENV_VARS, ConnectionSettings
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.policy import parse_blackout_dates

# the built-in demo district's shape: one definition (client/builtin_demo.py) for the sync and the connection test
DEMO_ENV_VARS = {f"demo_{name}": var for name, var in DEMO_SHAPE_VARS.items()}


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
    page_size: Optional[str] = None
    csv_path: Optional[str] = None
    oauth1_signature_method: Optional[str] = None
    max_retries: Optional[str] = None
    timeout_seconds: Optional[str] = None
    max_concurrency: Optional[str] = None
    backoff_seconds: Optional[str] = None
    peak_concurrency: Optional[str] = None
    peak_hours: Optional[str] = None
    district_timezone: Optional[str] = None
    demo_schools: int = DemoShape.schools
    demo_students: int = DemoShape.students
    demo_seed: int = DemoShape.seed

    def settings(self) -> ConnectionSettings:
        """Validated connection settings (raises SettingsError naming the variable, before any request)."""
        env = {var: str(getattr(self, name)) for name, var in ENV_VARS.items()
               if getattr(self, name) not in (None, "")}
        return ConnectionSettings.from_env(env)

    @contextmanager
    def open(self, log) -> Iterator:
        """An open source for one step; starts the in-process demo district when no provider is configured."""
        settings = self.settings()
        if settings.provider == "demo" and not settings.base_url:
            with self._demo_settings(settings, log) as demo_settings, open_source(demo_settings) as source:
                yield source
            return
        log.info(f"OneRoster connection: {settings.connection_label()}")
        with open_source(settings) as source:
            yield source

    def demo_shape(self) -> DemoShape:
        """The built-in demo district's shape (ONEROSTER_DEMO_SCHOOLS/STUDENTS/SEED): the connection test's too."""
        return DemoShape.from_env({var: str(getattr(self, f"demo_{name}")) for name, var in DEMO_SHAPE_VARS.items()})

    @contextmanager
    def _demo_settings(self, settings: ConnectionSettings, log) -> Iterator[ConnectionSettings]:
        with start_demo_district(settings, self.demo_shape()) as (demo_settings, message):
            log.info(message)
            yield demo_settings

    @classmethod
    def from_environment(cls) -> "OneRosterResource":
        """Bind every set variable; secrets as EnvVar so their values never show in the UI or run config."""
        kwargs: dict = {}
        for name, var in ENV_VARS.items():  # the client's own table: a new setting cannot be forgotten here
            var = var if os.environ.get(var) else FALLBACK_ENV_VARS.get(name, var)
            if os.environ.get(var):
                kwargs[name] = dg.EnvVar(var)
        for name, var in DEMO_ENV_VARS.items():
            if os.environ.get(var):
                kwargs[name] = dg.EnvVar.int(var)
        return cls(**kwargs)


class WarehouseResource(DuckDBResource):
    """The DuckDB file every table lands in (`ONEROSTER_DUCKDB_PATH`), with its Parquet staging folder."""

    @contextmanager
    def connect(self) -> Iterator:
        """A short write connection with every table created. Opened like `store.connect` (not DuckDBResource's
        get_connection, which retries every IO error for minutes): waits store.LOCK_WAIT_SECONDS for another
        process's lock, and any path problem fails at once with a `store.DuckDBPathError` naming
        ONEROSTER_DUCKDB_PATH. store.prepared closes it even on failure."""
        con = store.open_duckdb(self.database, config=self.connection_config)
        with store.prepared(con, os.environ.get(store.MEMORY_LIMIT_VAR)):
            yield con

    @contextmanager
    def get_connection(self) -> Iterator:
        """DuckDBResource's plain connection, opened the same way as `connect` (no schema, no memory cap)."""
        con = store.open_duckdb(self.database, config=self.connection_config)
        try:
            yield con
        finally:
            con.close()

    def staging_dir(self, run_id: str, step: str) -> Path:
        return Path(self.database).parent / "staging" / f"{run_id}-{step}"

    @classmethod
    def from_environment(cls) -> "WarehouseResource":
        return cls(database=os.environ.get("ONEROSTER_DUCKDB_PATH") or store.DEFAULT_DUCKDB_PATH)


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go besides the log and `sync_alerts`: an optional Slack-compatible webhook."""

    webhook_url: Optional[str] = None

    @classmethod
    def from_environment(cls) -> "AlertsResource":
        if os.environ.get("ONEROSTER_ALERT_WEBHOOK_URL"):
            return cls(webhook_url=dg.EnvVar("ONEROSTER_ALERT_WEBHOOK_URL"))
        return cls()


class SyncPolicyResource(dg.ConfigurableResource):
    """How syncs apply: pre-existing buildings, the hold policy, the delta/full cadence and blackout dates."""

    buildings_csv: Optional[str] = None
    max_deactivate_pct: float = 10.0
    max_deactivate: int = 500
    building_max_deactivate_pct: float = 25.0
    building_max_deactivate: int = 200
    max_update_pct: float = 75.0
    approval_hours: float = 24.0
    full_sync_every_days: int = 7
    delta_overlap_minutes: int = 60
    blackout_dates: Optional[str] = None  # e.g. "2026-06-15..2026-08-20, 2026-12-24..2027-01-01"
    max_rejected_pct: float = 1.0  # rejected records above this share of a pull (or of one CSV file) fail a check

    def hold_policy(self):
        from oneroster_pipeline.warehouse.policy import HoldPolicy

        return HoldPolicy(
            max_deactivate_pct=self.max_deactivate_pct, max_deactivate=self.max_deactivate,
            building_max_deactivate_pct=self.building_max_deactivate_pct,
            building_max_deactivate=self.building_max_deactivate, max_update_pct=self.max_update_pct,
            approval_hours=self.approval_hours)

    @classmethod
    def from_environment(cls) -> "SyncPolicyResource":
        kwargs: dict = {}
        for name, var in (("buildings_csv", "ONEROSTER_BUILDINGS_CSV"), ("blackout_dates", "ONEROSTER_BLACKOUT_DATES")):
            if os.environ.get(var):
                kwargs[name] = os.environ[var]
        for name, var, parse in (
            ("max_deactivate_pct", "ONEROSTER_MAX_DEACTIVATE_PCT", float),
            ("max_deactivate", "ONEROSTER_MAX_DEACTIVATE", int),
            ("building_max_deactivate_pct", "ONEROSTER_BUILDING_MAX_DEACTIVATE_PCT", float),
            ("building_max_deactivate", "ONEROSTER_BUILDING_MAX_DEACTIVATE", int),
            ("max_update_pct", "ONEROSTER_MAX_UPDATE_PCT", float),
            ("approval_hours", "ONEROSTER_APPROVAL_HOURS", float),
            ("full_sync_every_days", "ONEROSTER_FULL_SYNC_EVERY_DAYS", int),
            ("delta_overlap_minutes", "ONEROSTER_DELTA_OVERLAP_MINUTES", int),
            ("max_rejected_pct", "ONEROSTER_MAX_REJECTED_PCT", float),
        ):
            if os.environ.get(var):
                try:
                    kwargs[name] = parse(os.environ[var])
                except ValueError:
                    raise ValueError(f"{var} must be a number, got {os.environ[var]!r}") from None
        parse_blackout_dates(kwargs.get("blackout_dates"))  # a malformed range fails at load, naming the variable
        return cls(**kwargs)
