"""The `provider_connection_test` asset: a diagnostic of the configured OneRoster connection, shown as a table in
the run's metadata; it syncs nothing."""

import dagster as dg

from oneroster_pipeline.client.diagnostics import connection_test
from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.resources import OneRosterResource, WarehouseResource
from oneroster_pipeline.defs.runs import OWNERS, markdown_table
from oneroster_pipeline.warehouse.buildings import active_building_sis

DESCRIPTION = (
    "A diagnostic test of the configured OneRoster connection, run before the first sync and after any change: "
    "version path, auth mode, envelope keys, paging headers and whether they agree, sort / dateLastModified "
    "filter / fields support, schools visible vs buildings, and hints (e.g. too few students per school). "
    "Writes nothing to the warehouse tables; the report is this materialization's metadata."
)


def provider_connection_test(
    context: dg.AssetExecutionContext, oneroster: OneRosterResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        known = active_building_sis(con)
    with oneroster.open(context.log) as source:
        report = connection_test(source, building_sis=known or None)
    table = markdown_table([{"check": c, "result": r, "detail": d} for c, r, d in report.rows()], 100)
    # a failure's error is said once in the log: by the Failure below
    context.log.info("connection test:\n" + report.as_table(failure_detail="failed: see the step failure"))
    metadata = {"connection": report.connection, "ok": report.ok, "warnings": len(report.warnings),
                "report": dg.MetadataValue.md(table)}
    if not report.ok:
        raise dg.Failure(description=f"the connection test failed: {report.error}", metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


def build_assets(layout: DistrictLayout) -> list[dg.AssetsDefinition]:
    return [dg.asset(name="provider_connection_test", partitions_def=layout.partitions, group_name="oneroster_setup",
                     owners=OWNERS, kinds={"python"}, description=DESCRIPTION)(
        layout.per_district(provider_connection_test))]
