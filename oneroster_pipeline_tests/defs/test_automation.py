"""The daily schedule, the alert sensors (sync_alerts + a local webhook receiver) and loading the code location."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from oneroster_pipeline.defs.sync.schedules import daily_student_sync_schedule
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings
from oneroster_pipeline.warehouse.policy import SyncPolicy

from .sync_harness import CLIENT_ID, CLIENT_SECRET, SyncHarness, demo_provider, oneroster_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def provider():
    with demo_provider(DistrictShape(schools=3, students=60, seed=5)) as running:
        yield running


@pytest.fixture
def webhook():
    """A Slack-compatible webhook receiver on loopback; collects the JSON bodies it is sent."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/alerts", received
    server.shutdown()


def _evaluate(harness: SyncHarness, sensor_name: str, result: dg.ExecuteInProcessResult, failure: bool):
    sensor = harness.defs.get_sensor_def(sensor_name)
    run = result.dagster_run
    events = result.all_events
    event = next(e for e in reversed(events) if e.event_type_value in ("PIPELINE_FAILURE", "PIPELINE_SUCCESS"))
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor_name, dagster_instance=harness.instance, dagster_run=run, dagster_event=event,
        resources=harness.resources,
    )
    return sensor(context.for_run_failure() if failure else context)


def test_provider_failure_fires_failure_sensor_alert_to_table_and_webhook(provider, webhook, tmp_path):
    url, received = webhook
    harness = SyncHarness(tmp_path, oneroster_for(provider, client_secret="wrong-secret-123"), webhook_url=url)
    result = harness.run("full_sync", raise_on_error=False)
    assert not result.success

    _evaluate(harness, "sync_failure_alert", result, failure=True)
    alerts = harness.rows("SELECT kind, job_name, run_id, message FROM sync_alerts")
    assert len(alerts) == 1
    kind, job, run_id, message = alerts[0]
    assert (kind, job, run_id) == ("run_failure", "full_sync", result.run_id)
    assert "401" in message
    assert len(received) == 1 and result.run_id in received[0]["text"]
    for text in (message, received[0]["text"]):
        assert "wrong-secret-123" not in text and CLIENT_SECRET not in text


def test_failed_error_check_raises_an_alert(provider, webhook, tmp_path):
    url, received = webhook
    harness = SyncHarness(tmp_path, oneroster_for(provider), webhook_url=url)
    assert harness.run("full_sync").success
    provider.district.add_school("Hillcrest Middle")
    result = harness.run("student_sync")
    assert result.success

    _evaluate(harness, "failed_check_alert", result, failure=False)
    alerts = harness.rows("SELECT kind, message FROM sync_alerts")
    assert [a[0] for a in alerts] == ["check_failure"]
    assert "building_sis_matches_schools" in alerts[0][1]
    assert "building_sis_matches_schools" in received[0]["text"]


def test_clean_sync_raises_no_alert(provider, webhook, tmp_path):
    url, received = webhook
    harness = SyncHarness(tmp_path, oneroster_for(provider), webhook_url=url)
    result = harness.run("full_sync")
    _evaluate(harness, "failed_check_alert", result, failure=False)
    assert harness.rows("SELECT count(*) FROM sync_alerts") == [(0,)]
    assert received == []


def test_daily_schedule_follows_environment():
    default = daily_student_sync_schedule({})
    assert (default.cron_schedule, default.execution_timezone) == ("0 5 * * *", "UTC")
    assert default.default_status == dg.DefaultScheduleStatus.STOPPED
    assert default.job_name == "student_sync"

    custom = daily_student_sync_schedule({
        "ONEROSTER_STUDENT_SYNC_CRON": "30 6 * * 1-5", "ONEROSTER_TIMEZONE": "America/Chicago",
        "ONEROSTER_STUDENT_SYNC_ENABLED": "true"})
    assert (custom.cron_schedule, custom.execution_timezone) == ("30 6 * * 1-5", "America/Chicago")
    assert custom.default_status == dg.DefaultScheduleStatus.RUNNING

    context = dg.build_schedule_context(scheduled_execution_time=None, resources={"sync_policy": SyncPolicy()})
    run_request = custom.evaluate_tick(context).run_requests[0]
    assert run_request.job_name in (None, "student_sync")


def test_definitions_load_from_workspace_yaml(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ONEROSTER_DUCKDB_PATH": str(tmp_path / "x.duckdb")}
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "oneroster_pipeline" in done.stdout + done.stderr


def test_jobs_select_the_right_assets():
    from oneroster_pipeline.definitions import build_definitions

    defs = build_definitions()
    def keys(job_name):
        job = defs.resolve_job_def(job_name)
        return {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert keys("building_sync") == {"oneroster_orgs", "buildings"}
    assert keys("student_sync") == {
        "oneroster_orgs", "oneroster_users", "students", "student_buildings", "ignored_students"}
    assert keys("full_sync") == keys("building_sync") | keys("student_sync")


def test_connection_test_job_reports_a_table_in_the_ui(tmp_path):
    settings = DemoSettings(auth="oauth2", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            quirks={"no_total_count", "reject_sort"})
    with DemoProvider(DistrictShape(schools=3, students=90, seed=2), settings) as provider:
        harness = SyncHarness(tmp_path, oneroster_for(provider))
        assert harness.run("full_sync").success
        result = harness.run("test_connection")
        broken = SyncHarness(tmp_path / "broken", oneroster_for(provider, client_secret="wrong-secret-123"))
        failed = broken.run("test_connection", raise_on_error=False)
    metadata = result.asset_materializations_for_node("provider_connection_test")[0].metadata
    table = metadata["report"].value
    assert metadata["ok"].value is True and table.startswith("| check | result | detail |")
    assert "X-Total-Count" in table and "sort" in table and "| result | ok |" in table
    assert not failed.success
