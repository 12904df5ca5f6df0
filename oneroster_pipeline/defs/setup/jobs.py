"""The setup domain's job: `test_connection`, run before the first sync and after any change of provider."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout


def build_jobs(layout: DistrictLayout) -> list:
    return [dg.define_asset_job(
        "test_connection", selection=dg.AssetSelection.assets("provider_connection_test"),
        executor_def=dg.in_process_executor, **layout.job_partitioning(),
        description="Diagnose the configured OneRoster connection (a table in the run's metadata); syncs nothing.",
    )]
