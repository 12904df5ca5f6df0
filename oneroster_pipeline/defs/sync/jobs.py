"""Jobs: building sync (run once when a district connects), student sync (daily), and both together."""


import dagster as dg

from oneroster_pipeline.defs.alerts.hooks import RUN_HOOKS  # every run records its failure and failed checks itself

BUILDING_ASSETS = dg.AssetSelection.assets("oneroster_orgs", "buildings")
STUDENT_ASSETS = dg.AssetSelection.assets(
    "oneroster_orgs", "oneroster_users", "students", "student_buildings", "ignored_students"
)
# student sync re-checks buildings against today's schools without touching the registry
BUILDING_MATCH_CHECK = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("buildings"), "building_sis_matches_schools"))

building_sync = dg.define_asset_job(
    "building_sync", selection=BUILDING_ASSETS, hooks=RUN_HOOKS,
    description="OneRoster orgs -> buildings. Run when a district connects and again when schools change.",
)
student_sync = dg.define_asset_job(
    "student_sync", selection=STUDENT_ASSETS | BUILDING_MATCH_CHECK, hooks=RUN_HOOKS,
    description="OneRoster students -> students and ignored_students. Runs daily and on demand.",
)
full_sync = dg.define_asset_job(
    "full_sync", selection=BUILDING_ASSETS | STUDENT_ASSETS, hooks=RUN_HOOKS,
    description="Building sync then student sync: the first connection of a district.",
)

preview_student_sync = dg.define_asset_job(
    "preview_student_sync", selection=dg.AssetSelection.assets("oneroster_orgs", "student_sync_preview"),
    hooks=RUN_HOOKS,
    description=("Dry run: refreshes the raw orgs, then records the record-level diff the next student sync would "
                 "apply in sync_diffs; buildings and the student tables are not touched."),
)

SYNC_JOBS = [building_sync, student_sync, full_sync, preview_student_sync]

test_connection = dg.define_asset_job(
    "test_connection", selection=dg.AssetSelection.assets("provider_connection_test"),
    description="Diagnose the configured OneRoster connection (a table in the run's metadata); syncs nothing.",
)

# provider change (provider_switch_assets.py) and the per-connection backfill (partitions.py)
from oneroster_pipeline.defs.provider_switch.assets import provider_switch_job, provider_switch_preview_job  # noqa: E402
from oneroster_pipeline.defs.provider_switch.partitions import rebuild_student_tables_job  # noqa: E402

PROVIDER_SWITCH_JOBS = [provider_switch_job, provider_switch_preview_job, rebuild_student_tables_job]
