"""Many districts (ONEROSTER_DISTRICTS_FILE), end to end with the real CLI: districts on different providers and auth
modes synced by concurrent runs, each into its own DuckDB file; a district whose provider is down fails alone, with an
alert naming it; a batched run (ONEROSTER_DISTRICTS_PER_RUN) syncs the others in full and fails naming the one that
failed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline_tests.client.client_fixtures import serve
from oneroster_pipeline_tests.four_districts import DAGSTER, SECRETS, districts_yaml
from oneroster_pipeline_tests.loopback import free_port




@pytest.fixture(scope="module")
def three_providers(tmp_path_factory):
    """North: OneRoster 1.2 over OAuth2; south: 1.1 with a bearer token; west: a 1.1 CSV export; dead: nothing
    listens at its URL. Yields (districts file, folder, the providers' districts by id)."""
    folder = tmp_path_factory.mktemp("districts")
    north_shape, south_shape, west_shape = (DistrictShape(schools=3, students=120, seed=11),
                                            DistrictShape(schools=2, students=80, seed=12),
                                            DistrictShape(schools=2, students=60, seed=13))
    with serve(north_shape, client_secret=SECRETS["NORTH_OR_SECRET"]) as north, \
            serve(south_shape, auth="bearer", bearer_token=SECRETS["SOUTH_OR_TOKEN"]) as south:
        west = District(west_shape, id_namespace="west")
        export = export_csv(west, folder / "west.zip")
        port = free_port()
        districts = districts_yaml(north, south, export, port)
        path = folder / "districts.yaml"
        path.write_text(districts)
        yield path, folder, {"north": north.district, "south": south.district, "west": west}


# the daemon's sync_failure_alert sensor evaluated on the instance's one (failed) run, as its tick would
SENSOR_AFTERWARDS = """
import dagster as dg
from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.resources import default_resources
defs = build_definitions()
instance = dg.DagsterInstance.get()
(record,) = instance.get_run_records()
run = record.dagster_run
event = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].dagster_event
context = dg.build_run_status_sensor_context(sensor_name="sync_failure_alert", dagster_instance=instance,
                                             dagster_run=run, dagster_event=event, resources=default_resources())
defs.get_sensor_def("sync_failure_alert")(context.for_run_failure())
"""


def cli_env(folder: Path, districts_file: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")}
    env.update(SECRETS, DAGSTER_HOME=str(folder), ONEROSTER_DISTRICTS_FILE=str(districts_file),
               ONEROSTER_BACKOFF_SECONDS="0", **extra)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # a fresh SQLite instance creates its tables on first use: once, before runs start side by side
    subprocess.run([DAGSTER, "instance", "migrate"], env=env, cwd=folder, check=True, capture_output=True)
    return env


def launch(env: dict, job: str, tags: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [DAGSTER, "job", "execute", "-m", "oneroster_pipeline.definitions", "-j", job, "--tags", json.dumps(tags)],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rows(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchall()


def assert_landed(database: Path, district: District) -> None:
    """Every student of the provider's district is in students or ignored_students; nothing else is."""
    landed = {r[0] for r in rows(database, "SELECT sourced_id FROM students UNION ALL "
                                           "SELECT sourced_id FROM ignored_students")}
    assert landed == set(district.student_ids())
    assert rows(database, "SELECT count(*) FROM students")[0][0] > 0
    buildings = {r[0] for r in rows(database, "SELECT building_sis FROM buildings")}
    assert buildings == set(schools(district))


def schools(district: District) -> list[str]:
    return [o["sourcedId"] for o in district.orgs() if o["type"] == "school" and o["status"] == "active"]


def test_districts_on_three_providers_sync_concurrently_and_a_dead_one_fails_alone(three_providers):
    districts_file, folder, providers = three_providers
    work = folder / "concurrent"
    work.mkdir()
    env = cli_env(work, districts_file)
    runs = {key: launch(env, "full_sync", {"dagster/partition": key}, work)
            for key in ("north", "south", "west", "dead")}
    outputs = {key: run.communicate(timeout=300)[0] for key, run in runs.items()}
    for key in ("north", "south", "west"):
        assert runs[key].returncode == 0, outputs[key][-3000:]
        database = work / "data" / "districts" / f"{key}.duckdb"  # the default path, relative to the run's folder
        assert_landed(database, providers[key])
        assert rows(database, "SELECT job_name, outcome FROM sync_runs") == [("full_sync", "applied")]
        assert rows(database, "SELECT count(*) FROM sync_alerts")[0][0] == 0
    # the cross-district view: one query over every district that synced, with its district_id
    query = subprocess.run(
        [sys.executable, "-m", "oneroster_pipeline.warehouse.snapshots", "--csv",
         "SELECT district_id, count(*) AS students FROM students GROUP BY ALL ORDER BY ALL"],
        env=env, cwd=work, capture_output=True, text=True, check=True).stdout.split()
    assert query == ["district_id,students"] + [
        f"{key},{rows(work / 'data/districts' / f'{key}.duckdb', 'SELECT count(*) FROM students')[0][0]}"
        for key in ("north", "south", "west")]
    # each file holds its own district only
    north_ids = {r[0] for r in rows(work / "data/districts/north.duckdb", "SELECT sourced_id FROM students")}
    south_ids = {r[0] for r in rows(work / "data/districts/south.duckdb", "SELECT sourced_id FROM students")}
    assert north_ids and south_ids and not north_ids & south_ids
    # the dead district failed alone, recorded in its own file, its alert naming it; no secret anywhere
    assert runs["dead"].returncode != 0
    dead = work / "data" / "districts" / "dead.duckdb"
    alerts = rows(dead, "SELECT kind, subject, message FROM sync_alerts")
    assert [a[0] for a in alerts] == ["run_failure"]
    assert "district dead (Dead Valley)" in alerts[0][1]
    assert rows(dead, "SELECT outcome FROM sync_runs") == [("failed",)]
    for text in [*outputs.values(), *(str(a) for a in alerts)]:
        for secret in SECRETS.values():
            assert secret not in text


def test_a_batched_run_syncs_every_other_district_and_fails_naming_the_dead_one(three_providers):
    districts_file, folder, providers = three_providers
    work = folder / "batched"
    work.mkdir()
    env = cli_env(work, districts_file, ONEROSTER_DISTRICTS_PER_RUN="4")
    run = launch(env, "full_sync", {"dagster/asset_partition_range_start": "north",
                                    "dagster/asset_partition_range_end": "dead"}, work)
    output = run.communicate(timeout=300)[0]
    assert run.returncode != 0
    assert "1 of 4 districts failed: dead (Dead Valley)" in output, output[-3000:]
    # the three others were synced in full in that one run (the later steps skipped the dead district); the dead
    # district alone has the failure and its alert
    for key in ("north", "south", "west"):
        database = work / "data" / "districts" / f"{key}.duckdb"
        assert_landed(database, providers[key])
        assert rows(database, "SELECT count(*) FROM sync_alerts")[0][0] == 0
    alerts = rows(work / "data/districts/dead.duckdb", "SELECT subject FROM sync_alerts")
    assert len(alerts) == 1 and "district dead (Dead Valley)" in alerts[0][0]
    # the daemon's failure sensor sees that run later: it records nothing for the districts that were synced
    done = subprocess.run([sys.executable, "-c", SENSOR_AFTERWARDS], env=env, cwd=work, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for key in ("north", "south", "west"):
        database = work / "data" / "districts" / f"{key}.duckdb"
        assert rows(database, "SELECT count(*) FROM sync_alerts")[0][0] == 0
        assert rows(database, "SELECT outcome FROM sync_runs") == [("applied",)], key
    assert len(rows(work / "data/districts/dead.duckdb", "SELECT subject FROM sync_alerts")) == 1
    # each district's info lines of a batched step are one log event naming it (each line is an event-log write)
    with dg.DagsterInstance.from_config(str(work)) as instance:
        (record,) = instance.get_run_records()
        logs = [e for e in instance.all_logs(record.dagster_run.run_id) if not e.is_dagster_event]
        orgs = {r.asset_materialization.partition: r.asset_materialization.metadata
                for r in instance.fetch_materializations(dg.AssetKey("oneroster_orgs"), limit=100).records}
    # each district's materialization carries its own metadata; the dead one's says it failed in this run
    assert set(orgs) == {"north", "south", "west", "dead"}
    for key in ("north", "south", "west"):
        landed = rows(work / "data" / "districts" / f"{key}.duckdb", "SELECT count(*) FROM oneroster_orgs")[0][0]
        assert orgs[key]["dagster/row_count"].value == landed, (key, orgs[key])
        assert "district_failed_in_this_run" not in orgs[key]
    assert "not synced" in orgs["dead"]["district_failed_in_this_run"].value
    assert orgs["north"]["failed_districts"].value == ["dead"]
    org_infos = [e.user_message for e in logs if e.step_key == "oneroster_orgs" and e.level == logging.INFO]
    for key in ("north", "south", "west"):
        (line,) = [m for m in org_infos if m.startswith(f"district {key}")]
        assert "fetched" in line and "orgs" in line, line
    # a district that fails still gets its gathered lines (what it was connecting to), before the error
    dead = [(e.level, e.user_message) for e in logs if e.step_key == "oneroster_orgs"
            and e.user_message.startswith("district dead (Dead Valley)")]
    assert [level for level, _ in dead] == [logging.INFO, logging.ERROR], dead
    assert "OneRoster connection" in dead[0][1] and "failed" in dead[1][1]


def test_a_districts_file_with_an_inline_secret_fails_at_load_naming_file_district_and_key(tmp_path):
    bad = tmp_path / "districts.yaml"
    bad.write_text("districts:\n  - id: north\n    client_secret: hunter2-INLINE\n")
    env = cli_env(tmp_path, bad)
    run = launch(env, "full_sync", {"dagster/partition": "north"}, tmp_path)
    output = run.communicate(timeout=120)[0]
    assert run.returncode != 0
    assert str(bad) in output and "north" in output and "client_secret" in output
    assert "hunter2-INLINE" not in output
