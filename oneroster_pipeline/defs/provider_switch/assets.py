"""The provider change's assets: `id_crosswalk` (with its blocking checks), `provider_connections` (applies the
switch) and `student_tables_by_connection` (the rebuild of the active connection's student tables)."""

# `id_crosswalk` pulls the configured (new) connection's orgs and students and matches them to the registry; its
# blocking checks `crosswalk_ambiguous` and `crosswalk_unmatched` fail when a threshold is exceeded, which stops the
# switch before `provider_connections` applies it. A person reviews `id_crosswalk` (the checks' metadata list the
# records) and re-runs the job with the run tag `oneroster/approve_provider_switch=true`.

from datetime import datetime, timezone

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.resources import OneRosterResource, WarehouseResource
from oneroster_pipeline.defs.runs import (
    APPROVE_MASS_CHANGE_TAG,
    APPROVE_SWITCH_TAG,
    OWNERS,
    markdown_table,
    tag_is_true,
)
from oneroster_pipeline.defs.tables import as_table, table_metadata
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline.warehouse.provider_switch import (
    COUNTS,
    NotActiveConnection,
    SwitchBlocked,
    SwitchError,
    active_connection,
    apply_switch,
    build_crosswalk,
    connection_of,
    connections_by_first_seen,
    crosswalk_query,
    rebuild_student_tables,
    rebuildable_connection,
    summary_line,
    switch_to_apply,
)
from oneroster_pipeline.warehouse.pulls import stage_pull

from .partitions import (
    REBUILD_JOB,
    offer_only,
    rebuild_command,
    rebuild_partition,
    rebuild_partitions,
    requested_connection,
)

GROUP = "provider_switch"


def _approved(context) -> bool:
    return tag_is_true(context.run.tags, APPROVE_SWITCH_TAG)


def _rows_md(rows: list[dict]) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(rows, 50))


CROSSWALK_SPEC = dg.AssetSpec(
    "id_crosswalk", group_name=GROUP, owners=OWNERS, kinds={"duckdb", "python"}, deps=["buildings", "students"],
    description=(
        "Matches the configured (new) provider connection's schools to buildings and students to students, "
        "rule by rule (ONEROSTER_SWITCH_SCHOOL_MATCH / ONEROSTER_SWITCH_STUDENT_MATCH), and records every "
        "record with the rule used, or ambiguous / unmatched, in id_crosswalk (one switch_id per build). Every "
        "existing record and every new one is counted once, as matched, ambiguous or unmatched (the run's log "
        "has the same counts in one line):\n\n"
        + "\n".join(f"- `{name}`: {meaning}" for name, meaning in COUNTS.items())
    ),
)
CROSSWALK_CHECKS = [
    dg.AssetCheckSpec("crosswalk_ambiguous", asset="id_crosswalk", blocking=True, description=(
        "Fails (and blocks the switch) when more buildings or students match ambiguously than "
        f"ONEROSTER_SWITCH_MAX_AMBIGUOUS; {APPROVE_SWITCH_TAG}=true applies anyway (ambiguous ones keep "
        "their old ids).")),
    dg.AssetCheckSpec("crosswalk_unmatched", asset="id_crosswalk", blocking=True, description=(
        "Fails (and blocks the switch) when more than ONEROSTER_SWITCH_MAX_UNMATCHED_PCT % of the buildings or "
        f"students match nothing in the new connection; {APPROVE_SWITCH_TAG}=true applies anyway. Unmatched "
        "new students are never merged onto old ones: they arrive as new students on the next sync.")),
]


def id_crosswalk(context: dg.AssetExecutionContext, oneroster: OneRosterResource, warehouse: WarehouseResource,
                 sync_policy: dg.ResourceParam[SyncPolicy]):
    policy = sync_policy.switch
    new = connection_of(oneroster.settings())
    staging = warehouse.staging_dir(context.run.run_id, "provider-switch")
    try:
        with oneroster.open(context.log) as source:
            orgs = stage_pull(source, "orgs", staging, None, context.log)
            students = stage_pull(source, "students", staging, None, context.log)
        with warehouse.connect() as con:
            try:
                report = build_crosswalk(con, context.run.run_id, new, orgs, students, policy,
                                         datetime.now(timezone.utc))
            except SwitchError as error:
                raise dg.Failure(description=f"No crosswalk built: {error}") from None
    finally:
        store.remove_staging(staging)
    c, approved = report.counts, _approved(context)
    context.log.info(summary_line(report))
    yield dg.MaterializeResult(asset_key="id_crosswalk", metadata={
        "switch_id": report.switch_id, "old_connection": f"{report.old['label']} [{report.old['connection_id']}]",
        "new_connection": f"{new.label} [{new.connection_id}]", "status": report.status,
        "blocked_because": "; ".join(report.reasons) or "-", **c,
        "building_rules": dg.MetadataValue.json(report.rules_used["building"]),
        "student_rules": dg.MetadataValue.json(report.rules_used["student"]),
        "ignored_rules": dg.MetadataValue.json(report.rules_used["ignored"]),
        "counts": _rows_md([{"count": name, "value": c[name], "what it counts": meaning}
                            for name, meaning in COUNTS.items()]),
        "query": crosswalk_query(report.switch_id),
    })
    for check, kind, rows in (("crosswalk_ambiguous", "ambiguous", report.ambiguous),
                              ("crosswalk_unmatched", "match no", report.unmatched)):
        reasons = [r for r in report.reasons if kind in r]
        severity = dg.AssetCheckSeverity.WARN if approved else dg.AssetCheckSeverity.ERROR
        description = ("; ".join(reasons) + (f" (approved by {APPROVE_SWITCH_TAG})" if approved else
                       f". Review id_crosswalk; to apply anyway re-run provider_switch with {APPROVE_SWITCH_TAG}=true")
                       ) if reasons else None
        yield dg.AssetCheckResult(
            asset_key="id_crosswalk", check_name=check, passed=not reasons, severity=severity,
            description=description, metadata={
                "switch_id": report.switch_id, "count": len(rows),
                "old_ids": list(dict.fromkeys(r["old_id"] for r in rows if r["old_id"])),
                "new_ids": list(dict.fromkeys(r["new_id"] for r in rows if r["new_id"] and not r["old_id"])),
                "records": _rows_md(rows),
            })


CONNECTIONS_DESCRIPTION = (
    "Applies the latest crosswalk in one transaction: every building_id and student_id is kept, building_sis "
    "and sourced_id take the new connection's ids (old ones in id_history), the raw tables take the new pull, "
    "the new connection becomes active and the old one retired. Nothing is deleted."
)


def provider_connections(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        switch_id = switch_to_apply(con, context.run.run_id)
        if switch_id is None:
            raise dg.Failure(description="No crosswalk to apply: run the job provider_switch (it builds id_crosswalk).")
        try:
            done = apply_switch(con, switch_id, context.run.run_id, datetime.now(timezone.utc), _approved(context))
        except SwitchBlocked as blocked:
            raise dg.Failure(description=(
                f"Switch blocked, nothing changed: {blocked}. Review id_crosswalk (switch_id {switch_id}); to apply "
                f"anyway re-run provider_switch with the run tag {APPROVE_SWITCH_TAG}=true.")) from None
        except SwitchError as error:
            raise dg.Failure(description=f"Switch not applied: {error}") from None
        connections = connections_by_first_seen(con)
    offer_only(context.instance, done.new_connection_id, warehouse.district_id, force=True)  # the retired one is no longer offered
    partition = rebuild_partition(warehouse.district_id, done.new_connection_id)
    next_step = (f"rebuild the student tables: {rebuild_command(warehouse.district_id, done.new_connection_id)} "
                 f"(UI: Jobs > {REBUILD_JOB} > Materialize…, partition {partition} > Launch 1 run)")
    context.log.info(f"provider switch applied: {done.old_connection_id} -> {done.new_connection_id}; now "
                     f"{next_step}")
    return dg.MaterializeResult(metadata={
        "switch_id": switch_id, "retired": done.old_connection_id, "active": done.new_connection_id,
        "buildings_rewritten": done.buildings_rewritten, "students_rewritten": done.students_rewritten,
        "ignored_rewritten": done.ignored_rewritten, "students_kept_unmatched": done.students_kept_unmatched,
        "rebuild_partition": partition, "next_step": next_step,
        "connections": _rows_md(connections),
    })


REBUILD_DESCRIPTION = (
    "Rebuilds students, student_buildings and ignored_students from the stored raw oneroster_users / "
    "oneroster_orgs (no provider request), after a provider switch. The raw tables hold the active provider "
    "connection's snapshot, so only the active connection is offered: its partition is its connection_id "
    "(with ONEROSTER_DISTRICTS_FILE, a district's partition rebuilds that district's active connection). A run "
    "for a connection that is no longer active does nothing and says so. Deactivations above "
    f"ONEROSTER_MAX_DEACTIVATE(_PCT) need the run tag {APPROVE_MASS_CHANGE_TAG}=true."
)


def student_tables_by_connection(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, sync_policy: dg.ResourceParam[SyncPolicy]
):
    approved = tag_is_true(context.run.tags, APPROVE_MASS_CHANGE_TAG)
    requested = requested_connection(context, warehouse.district_id)  # None: the district's active connection
    with warehouse.connect() as con:
        try:
            active = rebuildable_connection(con, requested)
        except NotActiveConnection as inactive:
            current = active_connection(con)
            hint = (f" Rebuild the active one: {rebuild_command(warehouse.district_id, current['connection_id'])}"
                    if current else "")
            if warehouse.district_id or context.has_partition_key:
                context.log.warning(f"Nothing rebuilt, nothing changed: {inactive}.{hint}")
                return  # a no-op, not a failure: the partition is simply not the active connection's
            raise dg.Failure(description=f"Nothing rebuilt: {inactive}.") from None
        connection_id = active["connection_id"]
        if not warehouse.district_id and not context.has_partition_key:
            raise dg.Failure(description=(
                f"{REBUILD_JOB} rebuilds one provider connection: name its partition, the active connection "
                f"{active['label']} [{connection_id}]: {rebuild_command(None, connection_id)}"))
        try:
            done = rebuild_student_tables(
                con, connection_id, datetime.now(timezone.utc), context.run.run_id,
                sync_policy.hold.max_deactivate_pct, sync_policy.hold.max_deactivate, approved)
        except SwitchBlocked as blocked:
            raise dg.Failure(description=(
                f"Rebuild held, nothing changed: {blocked}. If this is expected (students the new provider does not "
                f"have), re-run with {APPROVE_MASS_CHANGE_TAG}=true.")) from None
        except SwitchError as error:
            raise dg.Failure(description=str(error)) from None
    result, plan = done.result, done.result.plan
    context.log.info(f"rebuilt the student tables of {active['label']} [{connection_id}]: {result.imported} active "
                     f"students, {plan.created} created, {plan.updated} updated, {plan.deactivated} deactivated")
    yield dg.MaterializeResult(metadata={
        "connection": f"{active['label']} [{connection_id}]", "students_active": result.imported,
        "created": plan.created, "updated": plan.updated, "deactivated": plan.deactivated,
        "reactivated": plan.reactivated, "students_in_several_buildings": result.multi_building,
        **{f"ignored_{reason}": n for reason, n in result.ignored_by_reason.items()},
    })


def build_assets(layout: DistrictLayout, hooks) -> list[dg.AssetsDefinition]:
    """The provider change's assets over `layout`'s districts; `hooks` ride on them as on the sync assets."""
    common = {"hooks": hooks, "pool": "duckdb"}
    asset = {"group_name": GROUP, "owners": OWNERS, "kinds": {"duckdb"}, **common}
    return [
        dg.multi_asset(specs=[as_table(CROSSWALK_SPEC)], check_specs=CROSSWALK_CHECKS, name="id_crosswalk",
                       partitions_def=layout.partitions, **common)(layout.per_district(id_crosswalk)),
        dg.asset(name="provider_connections", deps=["id_crosswalk"], partitions_def=layout.partitions,
                 description=CONNECTIONS_DESCRIPTION, metadata=table_metadata("provider_connections"),
                 **asset)(layout.per_district(provider_connections)),
        dg.asset(name="student_tables_by_connection", deps=["oneroster_users", "oneroster_orgs", "buildings"],
                 partitions_def=rebuild_partitions(layout.partitions), backfill_policy=layout.backfill_policy,
                 output_required=False, description=REBUILD_DESCRIPTION,
                 **asset)(layout.per_district(student_tables_by_connection)),
    ]
