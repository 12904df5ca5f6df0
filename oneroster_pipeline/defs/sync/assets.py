"""Sync assets: OneRoster orgs -> buildings (building sync), OneRoster students -> students (student sync), and the
student sync's dry run."""

# Each asset stages its pull to Parquet (no DuckDB lock held while the provider pages), then applies it in one
# DuckDB transaction: a failed run leaves every table as it was. Every body is a `sync_step`: a terminated run
# records itself as canceled (its `alerts` resource sends that alert).

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import dagster as dg

from oneroster_pipeline.defs.alerts.canceled import sync_step
from oneroster_pipeline.defs.districts import DistrictLayout, publish_district_snapshot
from oneroster_pipeline.defs.provider_switch.connection_guard import activate_after_sync, guard_connection
from oneroster_pipeline.defs.resources import AlertsResource, OneRosterResource, WarehouseResource
from oneroster_pipeline.defs.runs import (
    APPROVE_HELD_DIFF_TAG,
    APPROVE_MASS_CHANGE_TAG,
    OWNERS,
    SYNC_MODE_TAG,
    markdown_table,
    record_run,
    tag_is_true,
)
from oneroster_pipeline.defs.tables import as_table, table_metadata
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.alerts import Alert
from oneroster_pipeline.warehouse.buildings import seed_buildings_from_csv, sync_buildings
from oneroster_pipeline.warehouse.people import shared_person_keys
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline.warehouse.pulls import (
    StagedPull,
    StudentSyncOutcome,
    SyncHeld,
    apply_org_pull,
    apply_student_pull,
    choose_student_pull,
    last_org_pull_complete,
    stage_pull,
)
from oneroster_pipeline.warehouse.reports import (
    diff_counts_by_change,
    first_buildings,
    first_diff_rows,
    first_ignored_students,
    first_students,
    org_counts_by_type_and_status,
    recent_sync_durations,
    run_diff_query,
)

from .freshness import BUILDINGS_FRESHNESS, BUILDINGS_FRESHNESS_NOTE, student_freshness

GROUP = "oneroster"


def approved_mass_change(context) -> bool:
    return tag_is_true(context.run.tags, APPROVE_MASS_CHANGE_TAG)


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
    approval = (f"{APPROVE_HELD_DIFF_TAG}={held.diff_hash} (the held diff is in sync_diffs)" if held.diff_hash
                else f"{APPROVE_MASS_CHANGE_TAG}=true")
    raise dg.Failure(
        description=(
            f"Sync held, nothing applied: {'; '.join(held.reasons)}. Would change: {held.plan}. "
            f"If this change is real, re-run with the run tag {approval}."
        ),
        metadata=held.plan,
    )


ORGS_SPEC = dg.AssetSpec(
    "oneroster_orgs", group_name=GROUP, owners=OWNERS, kinds={"duckdb", "python"},
    description="Every org fetched from the OneRoster provider (GET /orgs, normalised), with provider and fetched_at.",
)
SCHOOLS_PRESENT_GUARD = dg.AssetCheckSpec(
    "schools_present_guard", asset="oneroster_orgs", blocking=True,
    description="Refuses an org pull with no active school while buildings exist (a provider accident).",
)


def oneroster_orgs(context: dg.AssetExecutionContext, oneroster: OneRosterResource, warehouse: WarehouseResource,
                   alerts: AlertsResource):
    with warehouse.connect() as con:
        connection = guard_connection(context, oneroster, warehouse, con)  # refuses one that is not the active one
    started = time.monotonic()
    with staged(context, oneroster, warehouse, "orgs") as pull, warehouse.connect() as con:
        try:  # the sync_runs row commits with the pull it records (one commit: a lake's snapshot less a run)
            schools = apply_org_pull(
                con, pull, context.run.run_id, datetime.now(timezone.utc), approved_mass_change(context),
                before_commit=lambda: record_run(context, con, connection=pull.label, orgs_fetched=pull.rows,
                                                 orgs_complete=pull.verdict.complete,
                                                 incomplete_reason=pull.verdict.reason))
        except SyncHeld as held:
            yield from _held("oneroster_orgs", "schools_present_guard", held)
        activate_after_sync(context, warehouse, con, connection)  # applied: a candidate connection becomes active
        by_type = org_counts_by_type_and_status(con)
    yield dg.MaterializeResult(asset_key="oneroster_orgs", metadata={
        "dagster/row_count": pull.rows, "provider": pull.label, "reported_total": pull.report.reported_total,
        "active_schools": schools, "rejected": len(pull.rejections), "pull_complete": pull.verdict.complete,
        "incomplete_reason": pull.verdict.reason or "-",
        "orgs_by_type": dg.MetadataValue.md(markdown_table(by_type, 50)),
        "duration_seconds": round(time.monotonic() - started, 2),
    })
    yield dg.AssetCheckResult(
        asset_key="oneroster_orgs", check_name="schools_present_guard", passed=True,
        metadata={"active_schools": schools},
    )


BUILDINGS_DESCRIPTION = (
    "The building registry. Building sync creates a building per active OneRoster school org "
    "(building_sis = the org's sourcedId), renames matched ones, flags buildings whose school vanished, "
    "and never deletes one."
)


def buildings(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_policy: dg.ResourceParam[SyncPolicy],
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    now = datetime.now(timezone.utc)
    with warehouse.connect() as con, store.transaction(con):
        seeded = seed_buildings_from_csv(con, sync_policy.buildings_csv, now) if sync_policy.buildings_csv else 0
        complete = last_org_pull_complete(con)
        if not complete:
            context.log.warning("the last org pull was incomplete: no building is flagged school_missing today")
        result = sync_buildings(con, now, flag_missing=complete)
        record_run(context, con, buildings_created=result.created,
                   outcome="applied" if context.run.job_name == "building_sync" else None)
        preview = first_buildings(con, 20)
    if seeded:
        context.log.info(f"loaded {seeded} pre-existing buildings from {sync_policy.buildings_csv}")
    if context.run.job_name == "building_sync":  # student sync publishes after it, in the other jobs
        publish_district_snapshot(warehouse, context.log)
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
        description=("Every fetched student not imported, with reason school_not_a_building, school_tobedeleted "
                     "or no_school_org."),
    ),
]


GUARD_DESCRIPTION = (
    "The hold policy: deactivations above ONEROSTER_MAX_DEACTIVATE(_PCT) district-wide or "
    "ONEROSTER_BUILDING_MAX_DEACTIVATE(_PCT) in a building are held while additions and updates apply; more than "
    "ONEROSTER_MAX_UPDATE_PCT % updated, or zero students from a full pull, holds everything. Approve a held diff "
    f"by re-running with the run tag {APPROVE_HELD_DIFF_TAG}=<its hash> within ONEROSTER_APPROVAL_HOURS."
)


def _pull_students(context, oneroster, warehouse, sync_policy, con):
    """Stage today's student pull (delta or full, per the cadence and the run's sync-mode tag; `con` is open on the
    warehouse and is not used during the pull)."""
    modified_since = choose_student_pull(
        con, oneroster.settings().provider, (context.run.tags.get(SYNC_MODE_TAG) or "").strip().lower(),
        sync_policy.full_sync_every_days, sync_policy.delta_overlap_minutes)
    past = recent_sync_durations(con, context.run.job_name, 5)
    if past:
        estimate = sorted(past)[len(past) // 2]
        finish = datetime.now(timezone.utc).timestamp() + estimate
        context.log.info(f"the last {len(past)} runs of {context.run.job_name} took a median of {estimate:.0f} s: "
                         f"expected to finish around {datetime.fromtimestamp(finish, timezone.utc):%H:%M:%S} UTC")
    return staged(context, oneroster, warehouse, "students", modified_since), (sorted(past)[len(past) // 2] if past else None)


def _diff_preview(con, run_id: str, disposition: str | None = None) -> tuple[dict, str]:
    """Counts by change kind and a markdown preview of a run's recorded diff."""
    return (diff_counts_by_change(con, run_id, disposition),
            markdown_table(first_diff_rows(con, run_id, disposition, 25), 25))


MASS_CHANGE_GUARD = dg.AssetCheckSpec("mass_change_guard", asset="students", blocking=True,
                                      description=GUARD_DESCRIPTION)


def student_sync_assets(
    context: dg.AssetExecutionContext, oneroster: OneRosterResource, warehouse: WarehouseResource,
    sync_policy: dg.ResourceParam[SyncPolicy], alerts: AlertsResource,
):
    """Student sync: fetch students (delta or full), diff, apply what the hold policy lets through, one transaction."""
    started = time.monotonic()
    with warehouse.connect() as con:  # closed before the pull: no DuckDB lock is held while the provider pages
        connection = guard_connection(context, oneroster, warehouse, con)  # refuses one that is not the active one
        pulling, estimate = _pull_students(context, oneroster, warehouse, sync_policy, con)
    approved_hash = context.run.tags.get(APPROVE_HELD_DIFF_TAG)
    with pulling as pull, warehouse.connect() as con:
        try:  # the sync_runs row of an applied sync commits with the sync itself (a full disk fails both)
            done = apply_student_pull(
                con, pull, context.run.run_id, datetime.now(timezone.utc), sync_policy.hold, approved_hash,
                before_commit=lambda done: record_run(context, con, **_pull_columns(pull), **_outcome_columns(done)))
        except SyncHeld as held:
            record_run(context, con, **_pull_columns(pull), diff_hash=held.diff_hash,
                       outcome="held", message="; ".join(held.reasons))
            yield from _held("students", "mass_change_guard", held)
        activate_after_sync(context, warehouse, con, connection)  # applied: a candidate connection becomes active
        preview = first_students(con, 10)
        ignored_preview = first_ignored_students(con, 10)
        held_counts, held_preview = _diff_preview(con, context.run.run_id, "held")
        people, their_records, _ = shared_person_keys(con, listed=0)  # one person in several student records
        publish_district_snapshot(warehouse, context.log, con)  # applied (perhaps partly held): the cross-district view
    result, plan, decision = done.result, done.plan, done.decision
    duration = round(time.monotonic() - started, 2)
    yield dg.MaterializeResult(asset_key="oneroster_users", metadata={
        "dagster/row_count": pull.rows, "provider": pull.label, "pull_mode": pull.mode,
        "modified_since": str(pull.modified_since) if pull.modified_since else "-",
        "reported_total": pull.report.reported_total, "duplicates": pull.report.duplicates,
        "rejected": len(pull.rejections), "pull_complete": pull.verdict.complete,
        "incomplete_reason": pull.verdict.reason or "-", "duration_seconds": duration,
        "estimated_duration_seconds": estimate if estimate is not None else "-",
    })
    yield dg.MaterializeResult(asset_key="students", metadata={
        "dagster/row_count": result.imported, **plan.as_metadata(), "provider": pull.label,
        "outcome": done.outcome, "held_deactivations": held_counts.get("deactivate", 0),
        "people_in_several_records": people, "their_records": their_records, "merged_by": pull.person_key or "-",
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
    guard_metadata = {**plan.as_metadata(), "approved_held_diff": decision.approved,
                      "diff_hash": decision.diff_hash or "-", "held_preview": dg.MetadataValue.md(held_preview)}
    if done.outcome == "partially_held":
        message = (f"{'; '.join(decision.hold_deactivations)}. Held {decision.held_changes} deactivation(s); "
                   f"applied {plan.created} addition(s), {plan.updated} update(s), {plan.reactivated} "
                   f"reactivation(s). Review sync_diffs (disposition 'held'); if the deactivations are real, re-run "
                   f"with the run tag {APPROVE_HELD_DIFF_TAG}={decision.diff_hash} within "
                   f"{sync_policy.hold.approval_hours:g} h.")
        alerts.send(Alert("sync_held", context.run.job_name, context.run.run_id, "deactivations held", message),
                    database=warehouse.alerts_target(), logger=context.log)
        yield dg.AssetCheckResult(asset_key="students", check_name="mass_change_guard", passed=False,
                                  severity=dg.AssetCheckSeverity.WARN, description=message, metadata=guard_metadata)
    else:
        yield dg.AssetCheckResult(asset_key="students", check_name="mass_change_guard", passed=True,
                                  metadata=guard_metadata)


def _pull_columns(pull: StagedPull) -> dict:
    return {"connection": pull.label, "students_fetched": pull.rows, "students_complete": pull.verdict.complete,
            "pull_mode": pull.mode, "incomplete_reason": pull.verdict.reason}


def _outcome_columns(done: StudentSyncOutcome) -> dict:
    plan = done.plan
    return {"students_created": plan.created, "students_updated": plan.updated,
            "students_deactivated": plan.deactivated if done.outcome != "partially_held" else 0,
            "students_reactivated": plan.reactivated, "students_newly_ignored": plan.newly_ignored,
            "held_changes": done.decision.held_changes if done.outcome == "partially_held" else 0,
            "diff_hash": done.decision.diff_hash, "outcome": done.outcome}


PREVIEW_DESCRIPTION = (
    "A dry run of student sync: pulls students as the next sync would and records the record-level diff it "
    "would apply (insert, update field old -> new, deactivate, reactivate, ignore with reason) in sync_diffs "
    "(disposition 'preview'), without changing any other table."
)


def student_sync_preview(
    context: dg.AssetExecutionContext, oneroster: OneRosterResource, warehouse: WarehouseResource,
    sync_policy: dg.ResourceParam[SyncPolicy], alerts: AlertsResource,
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        pulling, _ = _pull_students(context, oneroster, warehouse, sync_policy, con)
    with pulling as pull, warehouse.connect() as con:
        done = apply_student_pull(con, pull, context.run.run_id, datetime.now(timezone.utc),
                                  sync_policy.hold, preview=True)
        record_run(context, con, **_pull_columns(pull), **{**_outcome_columns(done), "outcome": "preview"})
        counts, preview = _diff_preview(con, context.run.run_id)
    decision = done.decision
    return dg.MaterializeResult(metadata={
        **{f"would_{change}": counts.get(change, 0) for change in
           ("insert", "update", "deactivate", "reactivate", "ignore")},
        "would_hold": decision.scope or "nothing", "hold_reasons": "; ".join(decision.reasons) or "-",
        "diff_hash": decision.diff_hash or "-", "pull_mode": pull.mode, "pull_complete": pull.verdict.complete,
        "diff_preview": dg.MetadataValue.md(preview),
        "query": run_diff_query(context.run.run_id),
    })


def build_assets(layout: DistrictLayout, hooks) -> list[dg.AssetsDefinition]:
    """The sync assets over `layout`'s districts. `hooks` (the run's failure and check-alert hooks) ride on the
    assets too: a UI materialization or an asset backfill (the implicit asset job) records its failure itself, as
    the named jobs do. Each body is a `sync_step` run per district."""
    common = {"hooks": hooks, "pool": "duckdb", "partitions_def": layout.partitions,
              "backfill_policy": layout.backfill_policy}
    asset = {"group_name": GROUP, "owners": OWNERS, "kinds": {"duckdb"}, **common}

    def body(function):
        return layout.per_district(sync_step(function))
    students_freshness, freshness_note = student_freshness(layout)
    student_specs = [as_table(spec) if spec.key != dg.AssetKey("students") else as_table(spec).replace_attributes(
        freshness_policy=students_freshness, description=f"{spec.description} {freshness_note}")
        for spec in STUDENT_SPECS]
    return [
        dg.multi_asset(specs=[as_table(ORGS_SPEC)], check_specs=[SCHOOLS_PRESENT_GUARD], name="oneroster_orgs",
                       **common)(body(oneroster_orgs)),
        dg.asset(name="buildings", deps=["oneroster_orgs"], description=f"{BUILDINGS_DESCRIPTION} "
                 f"{BUILDINGS_FRESHNESS_NOTE}", freshness_policy=BUILDINGS_FRESHNESS,
                 metadata=table_metadata("buildings"), **asset)(body(buildings)),
        dg.multi_asset(specs=student_specs, check_specs=[MASS_CHANGE_GUARD], name="student_sync_assets",
                       **common)(body(student_sync_assets)),
        dg.asset(name="student_sync_preview", deps=["buildings", "oneroster_orgs"], description=PREVIEW_DESCRIPTION,
                 **asset)(body(student_sync_preview)),
    ]
