"""Sync jobs: building sync (run once when a district connects), student sync (daily), both together, and the
dry run; each runs its steps in one process, so a run holds the DuckDB file in one place."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout

BUILDING_ASSETS = dg.AssetSelection.assets("oneroster_orgs", "buildings")
STUDENT_ASSETS = dg.AssetSelection.assets(
    "oneroster_orgs", "oneroster_users", "students", "student_buildings", "ignored_students"
)
# student sync re-checks buildings against today's schools without touching the registry
BUILDING_MATCH_CHECK = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("buildings"), "building_sis_matches_schools"))
STUDENT_SYNC = "student_sync"  # the job the daily schedule runs


def build_jobs(layout: DistrictLayout, hooks) -> list:
    """The sync jobs over `layout`'s districts; every run records its failure and failed checks itself (`hooks`)."""
    common = dict(hooks=hooks, executor_def=dg.in_process_executor, **layout.job_partitioning())
    return [
        dg.define_asset_job(
            "building_sync", selection=BUILDING_ASSETS,
            description="OneRoster orgs -> buildings. Run when a district connects and again when schools change.",
            **common),
        dg.define_asset_job(
            STUDENT_SYNC, selection=STUDENT_ASSETS | BUILDING_MATCH_CHECK,
            description="OneRoster students -> students and ignored_students. Runs daily and on demand.", **common),
        dg.define_asset_job(
            "full_sync", selection=BUILDING_ASSETS | STUDENT_ASSETS,
            description="Building sync then student sync: the first connection of a district.", **common),
        dg.define_asset_job(
            "preview_student_sync", selection=dg.AssetSelection.assets("oneroster_orgs", "student_sync_preview"),
            description=("Dry run: refreshes the raw orgs, then records the record-level diff the next student sync "
                         "would apply in sync_diffs; buildings and the student tables are not touched."),
            **common),
    ]
