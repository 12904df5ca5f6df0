"""Many districts built in this process: `build_definitions(resources, config=Config.of({...}))` is the code location
of a districts file (two built-in demo districts), without any subprocess. A run of one partition syncs that
district into its own DuckDB file; a batched run over a range syncs each into its own; a district that fails in a
batched run is recorded in the run itself, so its later steps skip it and its last step fails naming it, whichever
process runs each step (the multiprocess executor runs each in its own)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oneroster_pipeline.config import Config
from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.batched import FAILED_DISTRICT
from oneroster_pipeline.defs.districts import DISTRICT_TAG
from oneroster_pipeline.defs.resources import default_resources
from oneroster_pipeline.defs.sync.jobs import BUILDING_ASSETS, STUDENT_ASSETS
from oneroster_pipeline_tests.loopback import free_port

DISTRICTS = """
districts:
  - id: north
    name: North Unified
    demo_schools: 3
    demo_students: 60
    demo_seed: 11
    duckdb_path: {folder}/north.duckdb
  - id: south
    demo_schools: 2
    demo_students: 40
    demo_seed: 12
    duckdb_path: {folder}/south.duckdb
"""
DEAD = """
  - id: dead
    name: Dead Valley
    provider: oneroster
    base_url: http://127.0.0.1:{port}/ims/oneroster/v1p2
    auth: oauth2
    token_url: http://127.0.0.1:{port}/oauth2/token
    client_id: nobody
    client_secret_env: DEAD_OR_SECRET
    max_retries: 0
    timeout_seconds: 2
    duckdb_path: {folder}/dead.duckdb
"""
RANGE = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def config_of(folder: Path, dead: bool = False, **env: str) -> Config:
    """The configuration of a districts file in `folder` (north and south, and `dead` whose provider is down)."""
    path = folder / "districts.yaml"
    path.write_text(DISTRICTS.format(folder=folder) + (DEAD.format(folder=folder, port=free_port()) if dead else ""))
    return Config.of({"ONEROSTER_DISTRICTS_FILE": str(path), "ONEROSTER_SNAPSHOT_DIR": str(folder / "snapshots"),
                      "ONEROSTER_BACKOFF_SECONDS": "0", "DEAD_OR_SECRET": "dead-secret-ZXCVBN", **env})


def code_location(config: Config) -> dg.Definitions:
    return build_definitions(default_resources(config), config=config)


def rows(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchall()


def students(database: Path) -> int:
    """How many of the demo district's students landed (in students, or in ignored_students with the reason)."""
    return rows(database, "SELECT count(*) FROM (SELECT sourced_id FROM students UNION ALL "
                          "SELECT sourced_id FROM ignored_students)")[0][0]


def test_a_run_of_one_partition_syncs_that_district_into_its_own_file(tmp_path):
    defs = code_location(config_of(tmp_path))
    assert defs.resolve_job_def("full_sync").partitions_def.get_partition_keys() == ["north", "south"]
    result = defs.resolve_job_def("full_sync").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key="north")
    assert result.success
    assert result.dagster_run.tags[DISTRICT_TAG] == "north"  # one district per run: the run names it
    assert students(tmp_path / "north.duckdb") == 60
    assert rows(tmp_path / "north.duckdb", "SELECT job_name, outcome FROM sync_runs") == [("full_sync", "applied")]
    assert not (tmp_path / "south.duckdb").exists()
    assert (tmp_path / "snapshots" / "students" / "district_id=north").is_dir()  # the district's own snapshot dir


def test_a_batched_run_over_a_range_syncs_each_district_into_its_own_file(tmp_path):
    defs = code_location(config_of(tmp_path, ONEROSTER_DISTRICTS_PER_RUN="2"))
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("full_sync").execute_in_process(
        instance=instance, tags=dict(zip(RANGE, ("north", "south"))))
    assert result.success
    assert {key: students(tmp_path / f"{key}.duckdb") for key in ("north", "south")} == {"north": 60, "south": 40}
    for key in ("north", "south"):
        assert rows(tmp_path / f"{key}.duckdb", "SELECT outcome FROM sync_runs") == [("applied",)]
    # one materialization per district, each with its own district's row count (the students it fetched)
    counts = {m.partition: m.metadata["dagster/row_count"].value
              for m in result.asset_materializations_for_node("student_sync_assets")
              if m.asset_key == dg.AssetKey("oneroster_users")}
    assert counts == {"north": 60, "south": 40}


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_district_failing_in_a_batched_run_is_recorded_in_the_run(tmp_path, monkeypatch, executor):
    config = config_of(tmp_path, dead=True, ONEROSTER_DISTRICTS_PER_RUN="3")
    tags = dict(zip(RANGE, ("north", "dead")))
    with dg.instance_for_test() as instance:
        if executor == "in_process":
            result = code_location(config).resolve_job_def("full_sync").execute_in_process(
                instance=instance, tags=tags, raise_on_error=False)
            run = result.dagster_run
        else:  # each step in its own process: what one step recorded is all the others know
            for name, value in config.env.items():
                monkeypatch.setenv(name, value)
            with dg.execute_job(dg.reconstructable(multiprocess_full_sync), instance, tags=tags) as result:
                run = result.dagster_run
        assert run.status == dg.DagsterRunStatus.FAILURE
        failures = [record.event_log_entry.dagster_event for record in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records]
        messages = [event.step_failure_data.user_failure_data.description for event in failures]
        assert messages and all(message.startswith("1 of 3 districts failed: dead (Dead Valley)")
                                for message in messages), messages
        # the others were synced in full, each in its own file
        assert {key: students(tmp_path / f"{key}.duckdb") for key in ("north", "south")} == {"north": 60, "south": 40}
        # the failure is an event of the run: the district, the step it failed in and its error
        observations = [record.event_log_entry.asset_observation for record in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION).records]
        (failed,) = [o for o in observations if FAILED_DISTRICT in o.metadata]
        assert (failed.partition, failed.metadata["step"].value) == ("dead", "oneroster_orgs")
        # every later step skipped it (a step's own process read it back from the run); the line's first word may
        # be masked: an earlier test of this process registered a secret "district-..." with the redactor
        skipped = {entry.step_key for entry in instance.all_logs(run.run_id)
                   if " dead (Dead Valley) skipped" in entry.user_message}
        assert skipped == {"buildings", "org_and_building_checks", "student_sync_assets", "student_checks"}
        students_events = instance.fetch_materializations(dg.AssetKey("students"), limit=10).records
        assert {r.asset_materialization.partition for r in students_events} >= {"north", "south"}
        for record in instance.get_records_for_run(run.run_id).records:
            assert "dead-secret-ZXCVBN" not in (record.event_log_entry.user_message or "")


def multiprocess_full_sync() -> dg.JobDefinition:
    """full_sync of the environment's districts file with each step in its own process (reconstructed in each), one
    step at a time (two processes would wait for each other's DuckDB lock)."""
    defs = build_definitions(config=Config.of(_environment()))
    job = dg.define_asset_job("full_sync", selection=BUILDING_ASSETS | STUDENT_ASSETS,
                              executor_def=dg.multiprocess_executor.configured({"max_concurrent": 1}))
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources,
                          jobs=[job]).resolve_job_def("full_sync")


def _environment() -> dict[str, str]:
    """A step's process: the test put the configuration in its environment."""
    return dict(os.environ)
