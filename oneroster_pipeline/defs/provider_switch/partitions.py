"""Partitions: one per provider connection, and the partitioned rebuild of the student tables (the backfill).

Why per connection, not per day: a OneRoster API returns only today's roster, so daily partitions over API pulls
would stamp today's data with past dates. What changes the derived tables' ids is the connection, so a partition is
a connection (`provider_connections.connection_id`, e.g. `classlink-v1p2-3fa2b1c0`). A partition is added when a
connection becomes active (its first applied sync, or an applied provider switch). Rebuilding a partition recomputes
`students`, `student_buildings` and `ignored_students` from the stored raw `oneroster_users` / `oneroster_orgs`,
which always hold the active connection's snapshot: only the active connection's partition can be rebuilt, and a
retired one fails saying which partition to pick.
"""


from datetime import datetime, timezone

import dagster as dg

from oneroster_pipeline.defs.alerts.hooks import RUN_HOOKS
from oneroster_pipeline.defs.resources import SyncPolicyResource, WarehouseResource
from oneroster_pipeline.warehouse.provider_switch import (
    Connection,
    ConnectionChanged,
    SwitchBlocked,
    SwitchError,
    activate_connection,
    rebuild_student_tables,
    require_active_connection,
)

PROVIDER_CONNECTIONS = dg.DynamicPartitionsDefinition(name="provider_connection")
APPROVE_REBUILD_TAG = "oneroster/approve_mass_change"  # "true": apply a rebuild that deactivates above thresholds


def add_connection_partition(instance: dg.DagsterInstance, connection_id: str) -> None:
    if not instance.has_dynamic_partition(PROVIDER_CONNECTIONS.name, connection_id):
        instance.add_dynamic_partitions(PROVIDER_CONNECTIONS.name, [connection_id])


def guard_connection(context, oneroster, duckdb) -> Connection:
    """The sync guard for Dagster assets: refuse a connection that is not the active one (see provider_switch).

    With no active connection yet the configured one is a `candidate`: call `activate_after_sync` once the sync
    applied, so a failed first sync never pins its connection.
    """
    try:
        connection, active = require_active_connection(duckdb.connect, oneroster.settings())
    except ConnectionChanged as changed:
        raise dg.Failure(description=str(changed)) from None
    if active:
        add_connection_partition(context.instance, connection.connection_id)
    return connection


def activate_after_sync(context, con, connection: Connection) -> None:
    """The sync against `connection` applied: it becomes the active connection (and gets its partition)."""
    try:
        activated = activate_connection(con, connection)
    except ConnectionChanged as changed:
        raise dg.Failure(description=str(changed)) from None
    if activated:
        context.log.info(f"{connection.label} [{connection.connection_id}] is now the active connection")
    add_connection_partition(context.instance, connection.connection_id)


@dg.asset(
    partitions_def=PROVIDER_CONNECTIONS, group_name="provider_switch", owners=["team:data-engineering"],
    kinds={"duckdb"}, pool="duckdb", deps=["oneroster_users", "oneroster_orgs", "buildings"],
    description=(
        "Rebuilds students, student_buildings and ignored_students for a provider connection from the stored raw "
        "oneroster_users / oneroster_orgs (no provider request). Backfill the active connection's partition after a "
        "provider switch. Deactivations above ONEROSTER_MAX_DEACTIVATE(_PCT) need the run tag "
        f"{APPROVE_REBUILD_TAG}=true."
    ),
)
def student_tables_by_connection(
    context: dg.AssetExecutionContext, duckdb: WarehouseResource, sync_policy: SyncPolicyResource
) -> dg.MaterializeResult:
    approved = (context.run.tags.get(APPROVE_REBUILD_TAG) or "").strip().lower() == "true"
    with duckdb.connect() as con:
        try:
            done = rebuild_student_tables(
                con, context.partition_key, datetime.now(timezone.utc), context.run.run_id,
                sync_policy.max_deactivate_pct, sync_policy.max_deactivate, approved)
        except SwitchBlocked as blocked:
            raise dg.Failure(description=f"Rebuild held, nothing changed: {blocked}. If this is expected (students "
                                         f"the new provider does not have), re-run with {APPROVE_REBUILD_TAG}=true.")
        except SwitchError as error:
            raise dg.Failure(description=str(error)) from None
    result, plan = done.result, done.result.plan
    return dg.MaterializeResult(metadata={
        "connection": context.partition_key, "students_active": result.imported, "created": plan.created,
        "updated": plan.updated, "deactivated": plan.deactivated, "reactivated": plan.reactivated,
        "students_in_several_buildings": result.multi_building,
        **{f"ignored_{reason}": n for reason, n in result.ignored_by_reason.items()},
    })


rebuild_student_tables_job = dg.define_asset_job(
    "rebuild_student_tables", selection=dg.AssetSelection.assets("student_tables_by_connection"), hooks=RUN_HOOKS,
    description=("Backfill: rebuild students, student_buildings and ignored_students from the stored raw tables "
                 "for a provider connection (pick the active connection's partition)."),
)
