"""The `lake_maintenance` job and its weekly schedule: built only when a district writes a lake; run in process after two
districts synced twice into a lake (a local `.ducklake` catalog), it flushes, merges, expires the old snapshots and
deletes the files nothing needs, its counts in the op's metadata, and the districts' tables read the same after it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from oneroster_pipeline.config import Config
from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.lake.maintenance import JOB, SCHEDULE
from oneroster_pipeline.defs.resources import default_resources
from oneroster_pipeline.warehouse import lake
from oneroster_pipeline.warehouse.lake_settings import LakeSettings

from .conftest import lake_env, needs_lake

DISTRICTS = """
districts:
  - id: north
    demo_schools: 3
    demo_students: 60
    demo_seed: 11
  - id: south
    demo_schools: 2
    demo_students: 40
    demo_seed: 12
"""


def config_of(folder: Path, **env: str) -> Config:
    (folder / "districts.yaml").write_text(DISTRICTS)
    return Config.of({"ONEROSTER_DISTRICTS_FILE": str(folder / "districts.yaml"), **env})


def test_no_lake_no_maintenance_job(tmp_path):
    defs = build_definitions(default_resources(config_of(tmp_path)), config=config_of(tmp_path))
    assert JOB not in {job.name for job in defs.resolve_all_job_defs()}
    assert SCHEDULE not in {s.name for s in defs.schedules or ()}


@needs_lake
def test_the_maintenance_job_on_a_lake_synced_twice(tmp_path):
    env = lake_env(str(tmp_path / "catalog.ducklake"), tmp_path / "lake-data")
    config = config_of(tmp_path, **env, ONEROSTER_TIMEZONE="America/Chicago")
    defs = build_definitions(default_resources(config), config=config)
    schedule = defs.resolve_schedule_def(SCHEDULE)
    assert (schedule.job_name, schedule.cron_schedule, schedule.execution_timezone) == (
        JOB, "0 3 * * 0", "America/Chicago")
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        for key in ("north", "south"):
            assert defs.resolve_job_def("full_sync").execute_in_process(partition_key=key, instance=instance).success
    settings = LakeSettings.from_env(env)

    def students() -> dict[str, list]:
        with lake.reader(settings) as con:
            return {d: con.execute(f"SELECT * FROM {d}.students ORDER BY student_id").fetchall()
                    for d in ("north", "south")}
    before = students()
    result = defs.resolve_job_def(JOB).execute_in_process(instance=instance, run_config={"ops": {"maintain_lake": {
        "config": {"snapshot_days": 0, "cleanup_after_days": 0}}}})
    assert result.success
    (output,) = [e for e in result.events_for_node("maintain_lake") if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["lakes"] == 1 and metadata["snapshot_days"] == 0 and metadata["refused"] == 0
    assert metadata["snapshots_expired"] > 0 and metadata["snapshots_after"] == 1
    assert metadata["snapshots_before"] > metadata["snapshots_after"]  # (flushing adds one snapshot)
    assert metadata["rows_flushed"] > 0 and metadata["files_deleted"] > 0 and metadata["files_to_clean_up_after"] == 0
    assert {"tables_merged", "files_merged", "files_written", "data_files_before", "data_bytes_after"} <= set(metadata)
    assert students() == before  # the tables are unchanged; only their history and files were tidied
    # a sync after maintenance still applies (and reads the merged files)
    assert defs.resolve_job_def("full_sync").execute_in_process(partition_key="north", instance=instance).success
