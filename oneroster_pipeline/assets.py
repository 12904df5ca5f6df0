"""Dagster assets: OneRoster orgs -> buildings (building sync), OneRoster students -> students (student sync).

Each asset stages its pull to Parquet (no DuckDB lock held while the provider pages), then applies it in one
DuckDB transaction: a failed run leaves every table as it was.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import dagster as dg
import pyarrow as pa

from . import store
from .client.records import ORG_SCHEMA, USER_SCHEMA
from .resources import OneRosterResource, SyncPolicyResource, WarehouseResource
from .sync import seed_buildings_from_csv, sync_buildings, sync_students

GROUP = "oneroster"
OWNERS = ["team:data-engineering"]


def markdown_table(rows: list[dict], limit: int = 10) -> str:
    """A small markdown preview of the first rows (values escaped for table cells)."""
    if not rows:
        return "_no rows_"
    columns = list(rows[0])
    def cell(value) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows[:limit]]
    return "\n".join(lines)


def _pull(context, oneroster: OneRosterResource, warehouse: WarehouseResource, collection: str):
    """Fetch one collection into a Parquet staging file; returns (path, rows, report, rejections, label)."""
    staging = warehouse.staging_dir(context.run_id, collection)
    schema = ORG_SCHEMA if collection == "orgs" else USER_SCHEMA
    with oneroster.open(context.log) as source:
        batches = source.org_batches() if collection == "orgs" else source.student_batches()
        rows = store.stage_batches(batches, staging / f"{collection}.parquet", schema)
        report = source.reports[collection]
        rejections = list(source.rejections)
        label = source.settings.connection_label()
    context.log.info(f"fetched {rows} {collection} from {label}")
    return staging, rows, report, rejections, label


def _record_pull(con, context, collection: str, rows: int, report, rejections, label: str, now) -> None:
    store.insert_rows(con, "pull_reports", [{
        "run_id": context.run_id, "collection": collection, "provider": label, "endpoint": report.endpoint,
        "reported_total": report.reported_total, "received": rows, "duplicates": report.duplicates,
        "pages": report.pages, "rejected": len(rejections), "complete": report.complete,
        "incomplete_reason": report.incomplete_reason, "fetched_at": now,
    }])
    store.insert_rows(con, "rejected_records", [{
        "run_id": context.run_id, "collection": collection, "sourced_id": r.sourced_id,
        "location": r.location, "field": r.field, "reason": r.reason, "recorded_at": now,
    } for r in rejections])


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"duckdb", "python"}, pool="duckdb",
    description="Every org fetched from the OneRoster provider (GET /orgs, normalised), with provider and fetched_at.",
)
def oneroster_orgs(
    context: dg.AssetExecutionContext, oneroster: OneRosterResource, duckdb: WarehouseResource
) -> dg.MaterializeResult:
    started = time.monotonic()
    staging, rows, report, rejections, label = _pull(context, oneroster, duckdb, "orgs")
    now = datetime.now(timezone.utc)
    try:
        with duckdb.connect() as con, store.transaction(con):
            store.replace_from_parquet(con, "oneroster_orgs", staging / "orgs.parquet", label, now)
            _record_pull(con, context, "orgs", rows, report, rejections, label, now)
            by_type = store.query_dicts(
                con, "SELECT type, status, count(*) AS orgs FROM oneroster_orgs GROUP BY ALL ORDER BY ALL")
    finally:
        store.remove_staging(staging)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows, "provider": label, "reported_total": report.reported_total,
        "rejected": len(rejections), "orgs_by_type": dg.MetadataValue.md(markdown_table(by_type, 50)),
        "duration_seconds": round(time.monotonic() - started, 2),
    })


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"duckdb"}, pool="duckdb", deps=[oneroster_orgs],
    description=(
        "The building registry. Building sync creates a building per active OneRoster school org "
        "(building_sis = the org's sourcedId), renames matched ones, flags buildings whose school vanished, "
        "and never deletes one."
    ),
)
def buildings(
    context: dg.AssetExecutionContext, duckdb: WarehouseResource, sync_policy: SyncPolicyResource
) -> dg.MaterializeResult:
    now = datetime.now(timezone.utc)
    with duckdb.connect() as con, store.transaction(con):
        seeded = seed_buildings_from_csv(con, sync_policy.buildings_csv, now) if sync_policy.buildings_csv else 0
        result = sync_buildings(con, now)
        preview = store.query_dicts(
            con, "SELECT building_id, name, building_sis, status FROM buildings ORDER BY building_id LIMIT 20")
    if seeded:
        context.log.info(f"loaded {seeded} pre-existing buildings from {sync_policy.buildings_csv}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": result.total, "created": result.created, "renamed_or_reactivated": result.renamed,
        "school_missing": result.school_missing, "seeded_from_csv": seeded,
        "preview": dg.MetadataValue.md(markdown_table(preview, 20)),
    })


STUDENT_SPECS = [
    dg.AssetSpec(
        "oneroster_users", group_name=GROUP, owners=OWNERS, kinds={"duckdb", "python"},
        description="Every user with the student role fetched (GET /students, normalised), with provider and fetched_at.",
    ),
    dg.AssetSpec(
        "students", group_name=GROUP, owners=OWNERS, kinds={"duckdb"},
        deps=["oneroster_users", "buildings"],
        description=(
            "One row per student with at least one org that is a building; building_sis is the primary "
            "building. student_id is stable forever; students absent from the provider stay, inactive."
        ),
    ),
    dg.AssetSpec(
        "student_buildings", group_name=GROUP, owners=OWNERS, kinds={"duckdb"}, deps=["students"],
        description="Every (student, building) link, in provider order; is_primary marks students.building_id.",
    ),
    dg.AssetSpec(
        "ignored_students", group_name=GROUP, owners=OWNERS, kinds={"duckdb"},
        deps=["oneroster_users", "buildings", "oneroster_orgs"],
        description="Every fetched student not imported, with reason school_not_a_building or no_school_org.",
    ),
]


@dg.multi_asset(specs=STUDENT_SPECS, pool="duckdb", name="student_sync_assets")
def student_sync_assets(
    context: dg.AssetExecutionContext, oneroster: OneRosterResource, duckdb: WarehouseResource
):
    """Student sync: fetch students, then rebuild students / student_buildings / ignored_students in one transaction."""
    started = time.monotonic()
    staging, rows, report, rejections, label = _pull(context, oneroster, duckdb, "students")
    now = datetime.now(timezone.utc)
    try:
        with duckdb.connect() as con, store.transaction(con):
            store.replace_from_parquet(con, "oneroster_users", staging / "students.parquet", label, now)
            _record_pull(con, context, "students", rows, report, rejections, label, now)
            result = sync_students(con, now)
            preview = store.query_dicts(
                con, "SELECT student_id, sourced_id, building_sis, given_name, family_name, grade, status "
                     "FROM students ORDER BY student_id LIMIT 10")
            ignored_preview = store.query_dicts(
                con, "SELECT sourced_id, reason, detail FROM ignored_students ORDER BY reason, sourced_id LIMIT 10")
    finally:
        store.remove_staging(staging)
    duration = round(time.monotonic() - started, 2)
    yield dg.MaterializeResult(asset_key="oneroster_users", metadata={
        "dagster/row_count": rows, "provider": label, "reported_total": report.reported_total,
        "duplicates": report.duplicates, "rejected": len(rejections), "duration_seconds": duration,
    })
    yield dg.MaterializeResult(asset_key="students", metadata={
        "dagster/row_count": result.imported, "created": result.created, "updated": result.updated,
        "deactivated": result.deactivated, "reactivated": result.reactivated, "provider": label,
        "duration_seconds": duration, "preview": dg.MetadataValue.md(markdown_table(preview)),
    })
    yield dg.MaterializeResult(asset_key="student_buildings", metadata={
        "students_in_several_buildings": result.multi_building,
    })
    yield dg.MaterializeResult(asset_key="ignored_students", metadata={
        "dagster/row_count": result.ignored,
        **{f"ignored_{reason}": n for reason, n in result.ignored_by_reason.items()},
        "preview": dg.MetadataValue.md(markdown_table(ignored_preview)),
    })
