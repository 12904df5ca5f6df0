"""Dagster assets: OneRoster orgs -> buildings (building sync), OneRoster students -> students (student sync).

Each asset stages its pull to Parquet (no DuckDB lock held while the provider pages), then applies it in one
DuckDB transaction: a failed run leaves every table as it was.
"""


import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import dagster as dg

from . import store
from .pipeline import SyncHeld, StagedPull, apply_org_pull, apply_student_pull, choose_student_pull, stage_pull
from .resources import OneRosterResource, SyncPolicyResource, WarehouseResource
from .sync import seed_buildings_from_csv, sync_buildings

GROUP = "oneroster"
OWNERS = ["team:data-engineering"]
# run tags a person sets in the launchpad (or `dagster job execute --tags '{...}'`)
APPROVE_TAG = "oneroster/approve_mass_change"  # "true": apply a sync the mass-change guard held
SYNC_MODE_TAG = "oneroster/sync_mode"  # "full" or "delta": override the cadence for this run


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


def approved_mass_change(context) -> bool:
    return (context.run.tags.get(APPROVE_TAG) or "").strip().lower() == "true"


@contextmanager
def staged(context, oneroster: OneRosterResource, warehouse: WarehouseResource, collection: str,
           modified_since: datetime | None = None) -> Iterator[StagedPull]:
    """Pull one collection into this step's staging folder; the folder is removed afterwards, whatever happens."""
    staging = warehouse.staging_dir(context.run.run_id, collection)
    try:
        with oneroster.open(context.log) as source:
            pull = stage_pull(source, collection, staging, modified_since, context.log)
        yield pull
    finally:
        store.remove_staging(staging)


def _held(check_asset: str, check_name: str, held: SyncHeld):
    """Report a held sync: a failed blocking check, then a run failure that says how to approve it."""
    yield dg.AssetCheckResult(
        asset_key=check_asset, check_name=check_name, passed=False, severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(held.reasons), metadata=held.plan,
    )
    raise dg.Failure(
        description=(
            f"Sync held, nothing applied: {'; '.join(held.reasons)}. Would change: {held.plan}. "
            f"If this change is real, re-run with the run tag {APPROVE_TAG}=true."
        ),
        metadata=held.plan,
    )


@dg.multi_asset(
    specs=[dg.AssetSpec(
        "oneroster_orgs", group_name=GROUP, owners=OWNERS, kinds={"duckdb", "python"},
        description="Every org fetched from the OneRoster provider (GET /orgs, normalised), with provider and fetched_at.",
    )],
    check_specs=[dg.AssetCheckSpec(
        "schools_present_guard", asset="oneroster_orgs", blocking=True,
        description="Refuses an org pull with no active school while buildings exist (a provider accident).",
    )],
    pool="duckdb", name="oneroster_orgs",
)
def oneroster_orgs(context: dg.AssetExecutionContext, oneroster: OneRosterResource, duckdb: WarehouseResource):
    started = time.monotonic()
    with staged(context, oneroster, duckdb, "orgs") as pull, duckdb.connect() as con:
        try:
            schools = apply_org_pull(con, pull, context.run.run_id, datetime.now(timezone.utc),
                                     approved_mass_change(context))
        except SyncHeld as held:
            yield from _held("oneroster_orgs", "schools_present_guard", held)
        by_type = store.query_dicts(
            con, "SELECT type, status, count(*) AS orgs FROM oneroster_orgs GROUP BY ALL ORDER BY ALL")
    yield dg.MaterializeResult(asset_key="oneroster_orgs", metadata={
        "dagster/row_count": pull.rows, "provider": pull.label, "reported_total": pull.report.reported_total,
        "active_schools": schools, "rejected": len(pull.rejections),
        "orgs_by_type": dg.MetadataValue.md(markdown_table(by_type, 50)),
        "duration_seconds": round(time.monotonic() - started, 2),
    })
    yield dg.AssetCheckResult(
        asset_key="oneroster_orgs", check_name="schools_present_guard", passed=True,
        metadata={"active_schools": schools},
    )


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"duckdb"}, pool="duckdb", deps=["oneroster_orgs"],
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


@dg.multi_asset(
    specs=STUDENT_SPECS, pool="duckdb", name="student_sync_assets",
    check_specs=[dg.AssetCheckSpec(
        "mass_change_guard", asset="students", blocking=True,
        description=(
            "Refuses a sync that would deactivate more than ONEROSTER_MAX_DEACTIVATE_PCT % or "
            "ONEROSTER_MAX_DEACTIVATE of the active students, or that fetched zero students; nothing is applied "
            f"until a person re-runs with the run tag {APPROVE_TAG}=true."
        ),
    )],
)
def student_sync_assets(
    context: dg.AssetExecutionContext, oneroster: OneRosterResource, duckdb: WarehouseResource,
    sync_policy: SyncPolicyResource,
):
    """Student sync: fetch students (delta or full), plan, guard, then apply every student table in one transaction."""
    started = time.monotonic()
    with duckdb.connect() as con:
        modified_since = choose_student_pull(
            con, oneroster.settings().provider, (context.run.tags.get(SYNC_MODE_TAG) or "").strip().lower(),
            sync_policy.full_sync_every_days, sync_policy.delta_overlap_minutes)
    with staged(context, oneroster, duckdb, "students", modified_since) as pull, duckdb.connect() as con:
        try:
            result = apply_student_pull(con, pull, context.run.run_id, datetime.now(timezone.utc),
                                        sync_policy.mass_change_policy(), approved_mass_change(context))
        except SyncHeld as held:
            yield from _held("students", "mass_change_guard", held)
        preview = store.query_dicts(
            con, "SELECT student_id, sourced_id, building_sis, given_name, family_name, grade, status "
                 "FROM students ORDER BY student_id LIMIT 10")
        ignored_preview = store.query_dicts(
            con, "SELECT sourced_id, reason, detail FROM ignored_students ORDER BY reason, sourced_id LIMIT 10")
    plan = result.plan
    duration = round(time.monotonic() - started, 2)
    yield dg.MaterializeResult(asset_key="oneroster_users", metadata={
        "dagster/row_count": pull.rows, "provider": pull.label, "pull_mode": pull.mode,
        "modified_since": str(pull.modified_since) if pull.modified_since else "-",
        "reported_total": pull.report.reported_total, "duplicates": pull.report.duplicates,
        "rejected": len(pull.rejections), "duration_seconds": duration,
    })
    yield dg.MaterializeResult(asset_key="students", metadata={
        "dagster/row_count": result.imported, **plan.as_metadata(), "provider": pull.label,
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
    yield dg.AssetCheckResult(
        asset_key="students", check_name="mass_change_guard", passed=True,
        metadata={**plan.as_metadata(), "approved_by_tag": approved_mass_change(context)},
    )
