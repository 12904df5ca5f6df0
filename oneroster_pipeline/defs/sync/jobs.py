"""Sync jobs: building sync (run once when a district connects), student sync (daily), both together, and the
dry run; each runs its steps in one process, so a run holds the DuckDB file in one place."""

import dagster as dg

from oneroster_pipeline.defs.alerts.hooks import RUN_HOOKS  # every run records its failure and failed checks itself
from oneroster_pipeline.defs.districts import job_partitioning

BUILDING_ASSETS = dg.AssetSelection.assets("oneroster_orgs", "buildings")
STUDENT_ASSETS = dg.AssetSelection.assets(
    "oneroster_orgs", "oneroster_users", "students", "student_buildings", "ignored_students"
)
# student sync re-checks buildings against today's schools without touching the registry
BUILDING_MATCH_CHECK = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("buildings"), "building_sis_matches_schools"))

building_sync = dg.define_asset_job(
    "building_sync", selection=BUILDING_ASSETS, hooks=RUN_HOOKS, executor_def=dg.in_process_executor, **job_partitioning(),
    description="OneRoster orgs -> buildings. Run when a district connects and again when schools change.",
)
student_sync = dg.define_asset_job(
    "student_sync", selection=STUDENT_ASSETS | BUILDING_MATCH_CHECK, hooks=RUN_HOOKS,
    executor_def=dg.in_process_executor, **job_partitioning(),
    description="OneRoster students -> students and ignored_students. Runs daily and on demand.",
)
full_sync = dg.define_asset_job(
    "full_sync", selection=BUILDING_ASSETS | STUDENT_ASSETS, hooks=RUN_HOOKS, executor_def=dg.in_process_executor, **job_partitioning(),
    description="Building sync then student sync: the first connection of a district.",
)
preview_student_sync = dg.define_asset_job(
    "preview_student_sync", selection=dg.AssetSelection.assets("oneroster_orgs", "student_sync_preview"),
    hooks=RUN_HOOKS, executor_def=dg.in_process_executor, **job_partitioning(),
    description=("Dry run: refreshes the raw orgs, then records the record-level diff the next student sync would "
                 "apply in sync_diffs; buildings and the student tables are not touched."),
)

SYNC_JOBS = [building_sync, student_sync, full_sync, preview_student_sync]
