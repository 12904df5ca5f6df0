"""The provider change's jobs: build and apply the crosswalk, review it only, and the per-connection rebuild."""

import dagster as dg

from oneroster_pipeline.defs.alerts.hooks import RUN_HOOKS  # every run records its failure and failed checks itself
from oneroster_pipeline.defs.districts import job_partitioning
from oneroster_pipeline.defs.runs import APPROVE_SWITCH_TAG

provider_switch_job = dg.define_asset_job(
    "provider_switch", selection=dg.AssetSelection.assets("id_crosswalk", "provider_connections"), hooks=RUN_HOOKS,
    executor_def=dg.in_process_executor, **job_partitioning(),
    description=("Provider change: builds id_crosswalk from the configured (new) connection and applies it unless "
                 f"its checks block it ({APPROVE_SWITCH_TAG}=true applies a blocked crosswalk)."),
)
provider_switch_preview_job = dg.define_asset_job(
    "provider_switch_preview", selection=dg.AssetSelection.assets("id_crosswalk"), hooks=RUN_HOOKS,
    executor_def=dg.in_process_executor, **job_partitioning(),
    description="Provider change, review only: builds id_crosswalk from the configured connection, applies nothing.",
)
rebuild_student_tables_job = dg.define_asset_job(
    "rebuild_student_tables", selection=dg.AssetSelection.assets("student_tables_by_connection"), hooks=RUN_HOOKS,
    executor_def=dg.in_process_executor, **job_partitioning(),
    description=("After a provider switch: rebuild students, student_buildings and ignored_students from the stored "
                 "raw tables. Its only partition is the active provider connection (with many districts: the "
                 "district, whose active connection it rebuilds)."),
)

PROVIDER_SWITCH_JOBS = [provider_switch_job, provider_switch_preview_job, rebuild_student_tables_job]
