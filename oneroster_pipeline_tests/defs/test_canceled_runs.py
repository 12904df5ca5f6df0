"""A terminated run records itself as `canceled` (issue 24, observation 10).

SIGTERM (what the Dagster UI's Terminate sends to a run's process, and what stopping a container sends) mid-paging
left the tables intact, but `sync_runs` kept the interrupted run with no outcome and no alert was recorded: Dagster
raises DagsterExecutionInterruptedError inside the step and runs no failure hook for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.resources import AlertsResource, OneRosterResource, WarehouseResource
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.policy import SyncPolicy

from .sync_harness import CLIENT_ID, CLIENT_SECRET, STUDENT_CONTENT, SyncHarness, demo_provider, oneroster_for
from .test_automation import webhook  # noqa: F401  (the webhook receiver fixture)

ROOT = Path(__file__).resolve().parents[2]
SHAPE = DistrictShape(schools=3, students=600, seed=41)
TABLES = {
    "students": f"SELECT {STUDENT_CONTENT} FROM students ORDER BY student_id",
    "oneroster_users": "SELECT sourced_id, given_name, family_name FROM oneroster_users ORDER BY sourced_id",
    "student_changes": "SELECT sourced_id, change, field, new_value FROM student_changes ORDER BY ALL",
}


def _student_requests(provider) -> int:
    return sum(1 for e in provider.request_log if e.path.endswith("/students"))


def _cli(job: str, env: dict, cwd: Path) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "oneroster_pipeline.definitions",
               "-j", job, "--tags", '{"oneroster/sync_mode": "full"}']
    # a session of its own, so that a signal meant for it never reaches the test runner
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _snapshot(database: Path) -> dict:
    with duckdb.connect(str(database), read_only=True) as con:
        return {name: con.execute(sql).fetchall() for name, sql in TABLES.items()}


def _sensor_resources(database: Path, url: str) -> dict:
    return {"oneroster": OneRosterResource(), "warehouse": WarehouseResource(database=str(database)),
            "sync_policy": SyncPolicy(), "alerts": AlertsResource(webhook_url=url)}


@pytest.mark.parametrize("job", ["student_sync", "full_sync"])
def test_sigterm_mid_paging_records_the_run_as_canceled_with_its_alert(job, webhook, tmp_path):  # noqa: F811
    url, received = webhook
    home, database = tmp_path / "dagster_home", tmp_path / "warehouse" / "oneroster.duckdb"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with demo_provider(SHAPE) as provider:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")},
               "DAGSTER_HOME": str(home), "ONEROSTER_DUCKDB_PATH": str(database),
               "ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": provider.base_url("1.2"),
               "ONEROSTER_AUTH": "oauth2", "ONEROSTER_TOKEN_URL": provider.token_url,
               "ONEROSTER_CLIENT_ID": CLIENT_ID, "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET,
               "ONEROSTER_PAGE_SIZE": "50", "ONEROSTER_MAX_CONCURRENCY": "1", "ONEROSTER_ALERT_WEBHOOK_URL": url}
        good = _cli("full_sync", env, tmp_path)
        output = good.communicate(timeout=300)[0]
        assert good.returncode == 0, output
        before = _snapshot(database)
        for sourced_id in provider.district.students_in_category("regular", limit=10):
            provider.district.update_student(sourced_id, givenName="Terminated-Mid-Sync")

        provider.settings.latency_ms = 150  # ~12 student pages take ~2 s: SIGTERM lands mid-paging
        provider.clear_request_log()
        process = _cli(job, env, tmp_path)
        deadline = time.monotonic() + 120
        while _student_requests(provider) < 3:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the sync never reached the student pages"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=120)[0]
        assert process.returncode != 0, output
        provider.settings.latency_ms = 0

    assert _snapshot(database) == before  # nothing of the interrupted sync landed
    instance = dg.DagsterInstance.from_config(str(home))
    terminated, _good = instance.get_runs()  # newest first
    assert terminated.job_name == job
    assert terminated.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute("SELECT outcome, message, finished_at FROM sync_runs WHERE run_id = ?",
                          [terminated.run_id]).fetchall()
        alerts = con.execute("SELECT kind, subject, message FROM sync_alerts WHERE run_id = ?",
                             [terminated.run_id]).fetchall()
    assert len(row) == 1 and row[0][0] == "canceled" and row[0][2] is not None, (row, output)
    assert "canceled" in row[0][1] and "student_sync_assets" in row[0][1], row
    assert len(alerts) == 1 and alerts[0][0] == "run_canceled" and "canceled" in alerts[0][1], alerts
    assert len(received) == 1 and terminated.run_id in received[0]["text"]
    assert CLIENT_SECRET not in row[0][1] + alerts[0][2]

    # the daemon's failure sensor sees the same run later (the CLI marks an interrupted run failed): it keeps the
    # outcome 'canceled' and adds no second alert
    if terminated.status == dg.DagsterRunStatus.FAILURE:
        defs = build_definitions(_sensor_resources(database, url))
        event = instance.all_logs(terminated.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].dagster_event
        context = dg.build_run_status_sensor_context(
            sensor_name="sync_failure_alert", dagster_instance=instance, dagster_run=terminated,
            dagster_event=event, resources=_sensor_resources(database, url))
        defs.get_sensor_def("sync_failure_alert")(context.for_run_failure())
        with duckdb.connect(str(database), read_only=True) as con:
            assert con.execute("SELECT outcome FROM sync_runs WHERE run_id = ?",
                               [terminated.run_id]).fetchall() == [("canceled",)]
            assert con.execute("SELECT count(*) FROM sync_alerts").fetchall() == [(1,)]
        assert len(received) == 1
    instance.dispose()


def test_the_sensors_record_a_canceled_run_that_recorded_nothing(webhook, tmp_path):  # noqa: F811
    """A run canceled where no step could record it (the UI's Terminate before or between steps, a run worker that
    could not write the warehouse): its row has no outcome. The daemon's sensors record it as canceled, once."""
    url, received = webhook
    with demo_provider(DistrictShape(schools=2, students=30, seed=3)) as provider:
        harness = SyncHarness(tmp_path, oneroster_for(provider), webhook_url=url)
        assert harness.run("full_sync").success
    job = harness.defs.resolve_job_def("student_sync")
    run = harness.instance.create_run_for_job(job_def=job)
    harness.instance.report_run_canceling(run)
    harness.instance.report_run_canceled(run)
    with store.connect(harness.database) as con:  # what the run's first step wrote before it was canceled
        store.upsert_sync_run(con, run.run_id, job_name="student_sync", trigger="manual")
    run = harness.instance.get_run_by_id(run.run_id)
    assert run.status == dg.DagsterRunStatus.CANCELED
    event = harness.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_CANCELED)[-1].dagster_event

    sensor = harness.defs.get_sensor_def("sync_canceled_alert")
    for _ in range(2):  # a second evaluation (the daemon restarted) adds nothing
        sensor(dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_instance=harness.instance, dagster_run=run, dagster_event=event,
            resources=harness.resources))
    [(outcome, message)] = harness.rows("SELECT outcome, message FROM sync_runs WHERE run_id = ?", [run.run_id])
    assert outcome == "canceled" and "canceled" in message
    assert harness.rows("SELECT kind FROM sync_alerts WHERE run_id = ?", [run.run_id]) == [("run_canceled",)]
    assert len(received) == 1
