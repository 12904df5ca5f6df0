"""The public Dagster surface, as `workspace.yaml` loads it: asset keys, check names, jobs (with their executor and
hooks), the schedule, the sensors and the resource keys. A rename here breaks UI bookmarks, `dagster job execute -j`,
run history and deployments' resource config: change this snapshot only on purpose."""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg
import yaml
from dagster.components.definitions import LazyDefinitions

from oneroster_pipeline.defs.alerts.sensors import WatchedRuns
from oneroster_pipeline.defs.resources import AlertsResource, OneRosterResource, WarehouseResource
from oneroster_pipeline.defs.runs import RUN_TAGS
from oneroster_pipeline.warehouse.policy import SyncPolicy

ROOT = Path(__file__).resolve().parents[2]

ASSETS = {
    "oneroster_orgs", "buildings", "oneroster_users", "students", "student_buildings", "ignored_students",
    "student_sync_preview", "provider_connection_test", "id_crosswalk", "provider_connections",
    "student_tables_by_connection",
}
CHECKS = {
    "oneroster_orgs": {"schools_present_guard", "pull_complete", "rejections_within_tolerance"},
    "buildings": {"building_sis_matches_schools", "building_sis_unique"},
    "oneroster_users": {"fetched_count_matches_provider_total", "pull_complete", "rejections_within_tolerance"},
    "students": {"mass_change_guard", "students_ids_unique", "students_buildings_exist", "students_landed",
                 "one_student_per_person"},
    "id_crosswalk": {"crosswalk_ambiguous", "crosswalk_unmatched"},
}
SYNC_JOBS = {"building_sync", "student_sync", "full_sync", "preview_student_sync"}
SWITCH_JOBS = {"provider_switch", "provider_switch_preview", "rebuild_student_tables"}
JOBS = {name: "in_process" for name in SYNC_JOBS | SWITCH_JOBS | {"test_connection"}}
RESOURCES = {"oneroster": OneRosterResource, "warehouse": WarehouseResource, "sync_policy": SyncPolicy,
             "alerts": AlertsResource}


def workspace_definitions() -> dg.Definitions:
    """The Definitions of the one code location `workspace.yaml` names: its module's one `@dg.definitions` function
    (`defs`), called as Dagster calls it when it loads the code location."""
    locations = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert len(locations) == 1
    module = locations[0]["python_module"]
    assert (module["module_name"], module["location_name"]) == ("oneroster_pipeline.definitions", "oneroster_pipeline")
    found = [value for value in vars(importlib.import_module(module["module_name"])).values()
             if isinstance(value, (dg.Definitions, LazyDefinitions))]
    assert len(found) == 1, "Dagster loads a module with exactly one Definitions (or @dg.definitions) at module scope"
    assert isinstance(found[0], LazyDefinitions), "the code location is built when loaded, not when imported"
    return found[0]()


def test_assets_and_checks_keep_their_names():
    graph = workspace_definitions().resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == ASSETS
    checks: dict[str, set[str]] = {}
    for key in graph.asset_check_keys:
        checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    assert checks == CHECKS


def test_jobs_keep_their_names_run_in_one_process_and_record_their_failures():
    repository = workspace_definitions().get_repository_def()
    jobs = {job.name: job for job in repository.get_all_jobs() if not job.name.startswith("__")}
    assert {name: job.executor_def.name for name, job in jobs.items()} == JOBS
    for name in SYNC_JOBS | SWITCH_JOBS:  # every monitored job records its failure and failed checks from inside
        assert {hook.name for hook in jobs[name].hook_defs} == {"record_failed_run", "alert_failed_checks"}, name
    # a backfill or a materialization from the asset graph runs the implicit asset job: in one process too
    assert workspace_definitions().resolve_implicit_global_asset_job_def().executor_def.name == "in_process"


def test_schedule_sensors_and_resources_keep_their_names():
    defs = workspace_definitions()
    repository = defs.get_repository_def()
    assert [(s.name, s.job_name) for s in repository.schedule_defs] == [("daily_student_sync", "student_sync")]
    assert {s.name for s in repository.sensor_defs} == {"sync_failure_alert", "sync_canceled_alert",
                                                         "failed_check_alert"}
    assert {key: type(value) for key, value in defs.resources.items()} == RESOURCES
    for sensor in repository.sensor_defs:  # what the sensors watch: the jobs the code location gives them
        assert WatchedRuns.of(sensor).job_names == SYNC_JOBS | SWITCH_JOBS, sensor.name


def test_build_definitions_binds_the_resources_it_is_given(tmp_path):
    from oneroster_pipeline.definitions import build_definitions

    warehouse = WarehouseResource(database=str(tmp_path / "w.duckdb"), memory_limit="256MB")
    resources = {"oneroster": OneRosterResource(), "warehouse": warehouse, "sync_policy": SyncPolicy(),
                 "alerts": AlertsResource()}
    defs = build_definitions(resources)
    assert defs.resources["warehouse"] is warehouse
    with warehouse.connect() as con:  # the field reaches DuckDB, whatever the environment says
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] in ("256.0 MiB", "244.1 MiB")


def test_run_tags_keep_their_names():
    assert set(RUN_TAGS) == {"oneroster/approve_mass_change", "oneroster/approve_held_diff", "oneroster/sync_mode",
                             "oneroster/approve_provider_switch"}
