"""The Dagster code location: `dagster job execute -m oneroster_pipeline.definitions -j full_sync`."""


import dagster as dg

from oneroster_pipeline.defs.alerts.sensors import failed_check_alert, sync_failure_alert
from oneroster_pipeline.defs.provider_switch.assets import SwitchPolicyResource, id_crosswalk, provider_connections
from oneroster_pipeline.defs.provider_switch.partitions import student_tables_by_connection
from oneroster_pipeline.defs.resources import AlertsResource, OneRosterResource, SyncPolicyResource, WarehouseResource
from oneroster_pipeline.defs.sync.assets import (
    buildings,
    oneroster_orgs,
    provider_connection_test,
    student_sync_assets,
    student_sync_preview,
)
from oneroster_pipeline.defs.sync.checks import (
    building_sis_matches_schools,
    fetched_count_matches_provider_total,
    orgs_pull_complete,
    orgs_rejections_within_tolerance,
    students_buildings_exist,
    students_ids_unique,
    students_landed,
    students_pull_complete,
    users_rejections_within_tolerance,
)
from oneroster_pipeline.defs.sync.jobs import PROVIDER_SWITCH_JOBS, SYNC_JOBS, test_connection
from oneroster_pipeline.defs.sync.schedules import daily_student_sync_schedule


def default_resources() -> dict:
    """Resources bound from the environment (see README); tests pass their own to `build_definitions`."""
    return {
        "oneroster": OneRosterResource.from_environment(),
        "duckdb": WarehouseResource.from_environment(),
        "sync_policy": SyncPolicyResource.from_environment(),
        "alerts": AlertsResource.from_environment(),
    }


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[oneroster_orgs, buildings, student_sync_assets, student_sync_preview, provider_connection_test,
                id_crosswalk, provider_connections, student_tables_by_connection],
        asset_checks=[
            building_sis_matches_schools, students_ids_unique, students_buildings_exist,
            fetched_count_matches_provider_total, orgs_pull_complete, students_pull_complete,
            orgs_rejections_within_tolerance, users_rejections_within_tolerance, students_landed,
        ],
        jobs=[*SYNC_JOBS, *PROVIDER_SWITCH_JOBS, test_connection],
        schedules=[daily_student_sync_schedule()],
        sensors=[sync_failure_alert, failed_check_alert],
        resources={"switch_policy": SwitchPolicyResource.from_environment(),
                   **(resources if resources is not None else default_resources())},
    )


defs = build_definitions()
