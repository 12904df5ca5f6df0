"""Dagster's production pieces against a real PostgreSQL server: a gRPC code server, `dagster-daemon run` and
`dagster-webserver` on deploy/dagster.yaml's Postgres storage and run queue. Runs are submitted to the queue (the
CLI and the webserver's GraphQL), the daemon dequeues and launches them, and they land DuckDB tables; the runs and
their events are rows in Postgres, not in files under DAGSTER_HOME.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import duckdb
import pytest
import yaml

from oneroster_pipeline_tests.deploy.dagster_processes import Deployment

DEMO = {"ONEROSTER_DEMO_STUDENTS": "300", "ONEROSTER_DEMO_SCHOOLS": "3"}
RUN_TIMEOUT = 60.0


@pytest.fixture
def deployment(tmp_path, postgres):
    started = []

    def start(extra_env: dict[str, str]) -> Deployment:
        dep = Deployment(tmp_path, postgres, extra_env={**DEMO, **extra_env})
        started.append(dep)
        dep.start()
        return dep

    yield start
    for dep in started:
        dep.stop()


def landed(path) -> tuple[int, int, int]:
    """(students pulled, student rows, ignored students) in a DuckDB file after a sync."""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("""SELECT (SELECT count(*) FROM oneroster_users), (SELECT count(*) FROM students),
                                     (SELECT count(*) FROM ignored_students)""").fetchone()


def student_count(path) -> int:
    """Students pulled from the provider, once the sync put each in `students` or `ignored_students`."""
    pulled, students, ignored = landed(path)
    assert students > 0 and students + ignored == pulled, (pulled, students, ignored)
    return pulled


def queue_events(postgres, run_id: str) -> set[str]:
    """The run-queue events Postgres holds for a run: proof it went through the queue and the daemon."""
    rows = postgres.query("SELECT dagster_event_type FROM event_logs WHERE run_id = %s", (run_id,))
    return {row[0] for row in rows} & {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"}


def test_runs_go_through_the_queue_and_land_in_postgres(deployment, postgres, tmp_path):
    duckdb_path = tmp_path / "oneroster.duckdb"
    dep = deployment({"ONEROSTER_DUCKDB_PATH": str(duckdb_path)})

    # 1. the CLI submits to the queue (`dagster job launch` -> QueuedRunCoordinator); the daemon launches it
    run_id = str(uuid.uuid4())
    dep.cli("job", "launch", "-w", str(dep.workspace), "-j", "full_sync", "--run-id", run_id)
    [first] = dep.wait_for_runs(1, RUN_TIMEOUT, job="full_sync")
    assert first["runId"] == run_id
    assert student_count(duckdb_path) == 300

    # 2. the webserver submits to the same queue (what the UI's Launch button does)
    run_id = dep.launch_run("student_sync")
    [second] = dep.wait_for_runs(1, RUN_TIMEOUT, job="student_sync")
    assert second["runId"] == run_id
    assert student_count(duckdb_path) == 300

    # Postgres holds the runs and their events (SQLite files would be under DAGSTER_HOME: there are none)
    for run in (first, second):
        assert queue_events(postgres, run["runId"]) == {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"}
    assert postgres.query("SELECT pipeline_name, status FROM runs ORDER BY create_timestamp") == [
        ("full_sync", "SUCCESS"), ("student_sync", "SUCCESS")]
    # the daemon writes its heartbeats to the same database
    assert postgres.query("SELECT count(*) FROM daemon_heartbeats")[0][0] > 0
    assert not list(dep.home.rglob("*.db")), "an instance store was written to SQLite under DAGSTER_HOME"


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def most_at_once(runs: list[dict]) -> int:
    """The largest number of runs that were in progress at the same moment (from their start and end times)."""
    # an end before a start at the same moment: a run that starts as another ends does not overlap it
    edges = sorted([(r["startTime"], 1) for r in runs] + [(r["endTime"], -1) for r in runs])
    return max(itertools.accumulate(change for _, change in edges))


DISTRICTS = {"north": (300, 3), "south": (200, 2), "east": (150, 2)}


def write_districts_file(folder: Path) -> tuple[dict[str, Path], Path]:
    """A districts file of DISTRICTS' demo districts (students, schools) in `folder`: (each one's DuckDB file, it)."""
    files = {d: folder / "districts" / f"{d}.duckdb" for d in DISTRICTS}
    districts_file = folder / "districts.yaml"
    districts_file.write_text(yaml.safe_dump({"districts": [
        {"id": d, "name": f"{d.title()} Demo District", "demo_students": students, "demo_schools": schools,
         "duckdb_path": str(files[d])}
        for d, (students, schools) in DISTRICTS.items()]}, sort_keys=False))
    return files, districts_file


def test_a_backfill_over_districts_completes_through_the_daemon(deployment, postgres, tmp_path):
    files, districts_file = write_districts_file(tmp_path)
    dep = deployment({"ONEROSTER_DISTRICTS_FILE": str(districts_file)})

    # the CLI creates one queued run per district; the daemon launches them (tag limits: one run per district)
    dep.cli("job", "backfill", "-w", str(dep.workspace), "-j", "full_sync", "--all", "--noprompt")
    runs = dep.wait_for_runs(len(DISTRICTS), RUN_TIMEOUT * 1.5, job="full_sync")
    partitions = sorted(tag(r, "dagster/partition") for r in runs)
    assert partitions == sorted(DISTRICTS)
    assert {d: student_count(path) for d, path in files.items()} == {d: n for d, (n, _) in DISTRICTS.items()}
    # different districts are not held back by each other, but the three share the provider host `demo`, and
    # deploy/dagster.yaml lets 2 runs at a time use one host: exactly two ran at once
    assert {tag(r, "oneroster/provider_host") for r in runs} == {"demo"}
    assert most_at_once(runs) == 2, [(r["startTime"], r["endTime"]) for r in runs]
    for run in runs:
        assert queue_events(postgres, run["runId"]) == {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"}


# full_sync's assets (defs/sync/jobs.py): what the asset graph's "Materialize" over the districts backfills
FULL_SYNC_ASSETS = ("oneroster_orgs", "buildings", "oneroster_users", "students", "student_buildings",
                    "ignored_students")
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on PartitionKeysNotFoundError { message } ... on UnauthorizedError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } ... on PythonError { message } } }"""


def test_an_asset_backfill_over_districts_completes_through_the_backfill_daemon(deployment, postgres, tmp_path):
    """What the UI's asset graph launches: an asset backfill, which only the daemon's backfill loop turns into runs
    (unlike `dagster job backfill` above, which creates its runs itself). Dagster gives such runs the backfill's own
    tags and no job tags, so a polite asset backfill is one per provider host tagged with it: its runs then carry
    `oneroster/provider_host` and the per-host limit holds them to 2 at a time."""
    files, districts_file = write_districts_file(tmp_path)
    dep = deployment({"ONEROSTER_DISTRICTS_FILE": str(districts_file)})

    result = dep.graphql(LAUNCH_BACKFILL, {"params": {
        "assetSelection": [{"path": [key]} for key in FULL_SYNC_ASSETS], "partitionNames": sorted(DISTRICTS),
        "title": "every district, host demo", "tags": [{"key": "oneroster/provider_host", "value": "demo"}]}})
    result = result["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["backfillId"]
    # nothing runs until the daemon's backfill loop (every 30 s) requests the runs
    runs = dep.wait_for_runs(len(DISTRICTS), RUN_TIMEOUT * 3, job="__ASSET_JOB")
    assert {tag(r, "dagster/backfill") for r in runs} == {backfill_id}
    # ONEROSTER_DISTRICTS_PER_RUN=1: one district per run, named by a one-key range (Dagster gives an asset
    # backfill's runs range tags, not `dagster/partition`: deploy/dagster.yaml's per-district limit does not count
    # them; the per-host tag and DuckDB's single writer are what hold them)
    ranges = sorted((tag(r, "dagster/asset_partition_range_start"), tag(r, "dagster/asset_partition_range_end"))
                    for r in runs)
    assert ranges == [(d, d) for d in sorted(DISTRICTS)], [r["tags"] for r in runs]
    assert [tag(r, "dagster/partition") for r in runs] == [None] * len(DISTRICTS)
    assert {d: student_count(path) for d, path in files.items()} == {d: n for d, (n, _) in DISTRICTS.items()}
    assert {tag(r, "oneroster/provider_host") for r in runs} == {"demo"}
    assert most_at_once(runs) == 2, [(r["startTime"], r["endTime"]) for r in runs]
    for run in runs:
        assert queue_events(postgres, run["runId"]) == {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"}

    # the daemon then marks the backfill done (on its next tick); Postgres holds it
    def status():
        found = dep.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert found["__typename"] == "PartitionBackfill", found
        return found["status"] if found["status"] != "REQUESTED" else None

    assert dep.wait_for(status, "the daemon marks the backfill done", RUN_TIMEOUT, interval=1.0) in (
        "COMPLETED", "COMPLETED_SUCCESS")
    assert postgres.query("SELECT key FROM bulk_actions") == [(backfill_id,)]
