"""Helpers for the warehouse unit tests: an in-memory DuckDB store, and staged pulls written as small Parquet files
with the client's Arrow schemas (no Dagster, no HTTP)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from oneroster_pipeline.client.normalize import Rejection
from oneroster_pipeline.client.paging import PullReport
from oneroster_pipeline.client.schemas import ORG_SCHEMA, USER_SCHEMA
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.buildings import sync_buildings
from oneroster_pipeline.warehouse.policy import HoldPolicy
from oneroster_pipeline.warehouse.pulls import (
    StagedPull,
    StudentSyncOutcome,
    apply_org_pull,
    apply_student_pull,
    last_org_pull_complete,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
# no hold in the way of the plain sync tests (the hold tests pass their own policy)
LENIENT = HoldPolicy(max_deactivate_pct=100.0, max_deactivate=10**6, building_max_deactivate_pct=100.0,
                     building_max_deactivate=10**6, max_update_pct=100.0)
DISTRICT = "district-1"


def memory_store() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    store.ensure_schema(con)
    return con


def org(sourced_id: str, name: str | None = None, type: str = "school", status: str = "active",
        identifier: str | None = None, legacy: str | None = None) -> dict:
    return {"sourced_id": sourced_id, "status": status, "date_last_modified": T0, "name": name or sourced_id.title(),
            "type": type, "identifier": identifier, "parent_sourced_id": None if type == "district" else DISTRICT,
            "legacy_sourced_id": legacy}


def district_org() -> dict:
    return org(DISTRICT, "Unified District", type="district")


def student(sourced_id: str, *orgs: str, primary: str | None = None, status: str = "active", **fields) -> dict:
    row = {"sourced_id": sourced_id, "status": status, "date_last_modified": T0, "username": f"{sourced_id}.user",
           "given_name": f"Given {sourced_id}", "family_name": "Family", "middle_name": None,
           "email": f"{sourced_id}@students.example.org", "identifier": f"ID-{sourced_id}", "enabled_user": True,
           "roles": ["student"], "org_sourced_ids": list(orgs), "primary_org_sourced_id": primary,
           "grades": ["05"], "legacy_sourced_id": None}
    row.update(fields)
    return row


_files = itertools.count()


def stage(folder: Path, collection: str, rows: list[dict], *, mode: str = "full", complete: bool = True,
          reported_total: int | None = None, rejections: list[Rejection] = (), duplicates: int = 0,
          started_at: datetime = T0) -> StagedPull:
    """A pull of `collection` ('orgs' | 'students') staged as Parquet, with the report the client would give."""
    schema = ORG_SCHEMA if collection == "orgs" else USER_SCHEMA
    path = Path(folder) / f"{collection}-{next(_files)}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    received = len(rows) + len(rejections) + duplicates
    report = PullReport(collection=collection, endpoint=f"/{collection}", page_size=100,
                        reported_total=received if reported_total is None else reported_total,
                        first_reported_total=received if reported_total is None else reported_total,
                        received=received, duplicates=duplicates, duplicate_sample=["dup"] * duplicates,
                        rejected=len(rejections), rows=len(rows), pages=1, complete=complete,
                        incomplete_reason=None if complete else "the server stopped answering")
    return StagedPull(collection, path, len(rows), report, list(rejections), "test provider", mode,
                      started_at if mode == "delta" else None, started_at)


def sync_orgs(con, folder: Path, orgs: list[dict], now: datetime = T0, **kw):
    """Apply an org pull then building sync, as the building_sync job does."""
    apply_org_pull(con, stage(folder, "orgs", [district_org(), *orgs], **kw), "run", now)
    with store.transaction(con):
        return sync_buildings(con, now, flag_missing=last_org_pull_complete(con))


def sync_students(con, folder: Path, users: list[dict], now: datetime = T0, policy: HoldPolicy = LENIENT,
                  approved_hash: str | None = None, **kw) -> StudentSyncOutcome:
    return apply_student_pull(con, stage(folder, "students", users, **kw), "run", now, policy, approved_hash)


def rows(con, sql: str, params: list | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def later(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)
