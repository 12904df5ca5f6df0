"""Helpers for running the Dagster jobs against a demo provider over HTTP, with a temporary DuckDB file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb

from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.resources import AlertsResource, OneRosterResource, WarehouseResource
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings
from oneroster_pipeline.warehouse.policy import HoldPolicy, SyncPolicy

CLIENT_ID, CLIENT_SECRET = "district-client", "district-secret-value"

# columns that identify a sync's content, without the timestamps of when it ran
STUDENT_CONTENT = (
    "student_id, sourced_id, building_id, building_sis, given_name, family_name, middle_name, username, email, "
    "identifier, grade, enabled_user, status"
)


def demo_provider(shape: DistrictShape) -> DemoProvider:
    """A demo provider of `shape` with OAuth2 and the harness's credentials (not started: use `with`)."""
    return DemoProvider(shape, DemoSettings(auth="oauth2", client_id=CLIENT_ID, client_secret=CLIENT_SECRET))


def oneroster_for(provider, version: str = "1.2", **overrides) -> OneRosterResource:
    """A OneRoster resource pointing at a running DemoProvider with OAuth2 client credentials."""
    fields = dict(
        provider="oneroster", base_url=provider.base_url(version), auth="oauth2",
        token_url=provider.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, max_retries=2,
    )
    fields.update(overrides)
    return OneRosterResource(**fields)


class SyncHarness:
    """One district's Dagster definitions bound to a demo provider and a DuckDB file under tmp_path."""

    def __init__(self, tmp_path: Path, oneroster: OneRosterResource, buildings_csv: str | None = None,
                 webhook_url: str | None = None, **policy):
        self.database = str(tmp_path / "warehouse" / "oneroster.duckdb")
        self.instance = dg.DagsterInstance.ephemeral()
        self.resources = {
            "oneroster": oneroster,
            "warehouse": WarehouseResource(database=self.database),
            "sync_policy": sync_policy(buildings_csv=buildings_csv, **policy),  # hold thresholds etc.
            "alerts": AlertsResource(webhook_url=webhook_url),
        }
        self.defs = build_definitions(self.resources)

    def run(self, job_name: str, raise_on_error: bool = True, tags: dict | None = None) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(job_name)
        return job.execute_in_process(instance=self.instance, raise_on_error=raise_on_error, tags=tags)

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(self.database, read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: list | None = None):
        return self.rows(sql, params)[0][0]


def sync_policy(**settings) -> SyncPolicy:
    """The core SyncPolicy from flat settings: HoldPolicy's fields (max_deactivate_pct, approval_hours...) and
    SyncPolicy's own (buildings_csv, blackout_dates...)."""
    hold = {name: settings.pop(name) for name in list(settings) if name in HoldPolicy.__dataclass_fields__}
    return SyncPolicy(hold=HoldPolicy(**hold), **settings)


def check_evaluation(result: dg.ExecuteInProcessResult, check_name: str):
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == check_name]
    assert evaluations, f"check {check_name} did not run"
    return evaluations[-1]
