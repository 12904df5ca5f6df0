"""The provider change's jobs: build and apply the crosswalk, review it only, and the per-connection rebuild."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.runs import APPROVE_SWITCH_TAG

from .partitions import REBUILD_JOB


def build_jobs(layout: DistrictLayout, hooks) -> list:
    """The provider change's jobs over `layout`'s districts, each in one process; every run records its failure
    and failed checks itself (`hooks`)."""
    common = dict(hooks=hooks, executor_def=dg.in_process_executor, **layout.job_partitioning())
    return [
        dg.define_asset_job(
            "provider_switch", selection=dg.AssetSelection.assets("id_crosswalk", "provider_connections"),
            description=("Provider change: builds id_crosswalk from the configured (new) connection and applies it "
                         f"unless its checks block it ({APPROVE_SWITCH_TAG}=true applies a blocked crosswalk)."),
            **common),
        dg.define_asset_job(
            "provider_switch_preview", selection=dg.AssetSelection.assets("id_crosswalk"),
            description=("Provider change, review only: builds id_crosswalk from the configured connection, applies "
                         "nothing."),
            **common),
        dg.define_asset_job(
            REBUILD_JOB, selection=dg.AssetSelection.assets("student_tables_by_connection"),
            description=("After a provider switch: rebuild students, student_buildings and ignored_students from the "
                         "stored raw tables. Its only partition is the active provider connection (with many "
                         "districts: the district, whose active connection it rebuilds)."),
            **common),
    ]
