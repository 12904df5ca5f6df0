"""Failed runs: a failed first sync pins no connection, and every failed run records itself without the daemon.

Issue 13 items 5 and 6: a first `full_sync` that fails (nothing listening, missing CSV folder) used to record its
connection as `active`, so the corrected settings were refused as a provider change; and only the daemon's sensors
recorded failures, so a run started from the CLI (cron) left no `sync_runs` row and no alert.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.alerts.sensors import WatchedRuns
from oneroster_pipeline.defs.provider_switch.partitions import PROVIDER_CONNECTIONS
from oneroster_pipeline.defs.resources import AlertsResource, OneRosterResource, WarehouseResource
from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline_tests.loopback import free_port

from .sync_harness import CLIENT_ID, CLIENT_SECRET, SyncHarness, demo_provider, oneroster_for
from .test_automation import _evaluate, webhook  # noqa: F401  (the webhook receiver fixture)

ROOT = Path(__file__).resolve().parents[2]
SHAPE = DistrictShape(schools=3, students=60, seed=13)


@pytest.fixture
def provider():
    with demo_provider(SHAPE) as running:
        yield running



def dead_oneroster(port: int) -> OneRosterResource:
    return OneRosterResource(
        provider="oneroster", base_url=f"http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2", auth="oauth2",
        token_url=f"http://127.0.0.1:{port}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        max_retries="0", backoff_seconds="0")


def connections(harness: SyncHarness) -> dict[str, str]:
    return dict(harness.rows("SELECT connection_id, status FROM provider_connections"))


def test_failed_first_sync_against_a_dead_url_pins_nothing(provider, tmp_path):
    harness = SyncHarness(tmp_path, dead_oneroster(free_port()))
    failed = harness.run("full_sync", raise_on_error=False)
    assert not failed.success
    [failed_connection] = connections(harness)
    assert harness.instance.get_dynamic_partitions(PROVIDER_CONNECTIONS.name) == []

    corrected = SyncHarness(tmp_path, oneroster_for(provider))  # same warehouse, the right settings
    corrected.instance = harness.instance
    assert corrected.run("full_sync").success  # no provider_switch needed (it was refused before the fix)
    assert connections(corrected)[failed_connection] == "candidate"  # seen, never active
    assert corrected.scalar("SELECT count(*) FROM students") > 0
    statuses = connections(corrected)
    active = [cid for cid, status in statuses.items() if status == "active"]
    assert len(active) == 1 and sorted(statuses.values()) == ["active", "candidate"]
    assert corrected.scalar("SELECT label FROM provider_connections WHERE status = 'active'").startswith(
        f"oneroster {provider.base_url('1.2')}")
    assert harness.instance.get_dynamic_partitions(PROVIDER_CONNECTIONS.name) == active
    assert corrected.run("student_sync").success  # the daily sync keeps running


def test_failed_first_sync_of_a_missing_csv_folder_pins_nothing(tmp_path):
    missing = tmp_path / "typo-exports" / "district.zip"
    harness = SyncHarness(tmp_path, OneRosterResource(provider="csv", csv_path=str(missing)))
    assert not harness.run("full_sync", raise_on_error=False).success
    [failed_connection] = connections(harness)

    export = export_csv(District(SHAPE), tmp_path / "exports" / "district.zip", "1.1")
    corrected = SyncHarness(tmp_path, OneRosterResource(provider="csv", csv_path=str(export)))
    corrected.instance = harness.instance
    assert corrected.run("full_sync").success
    assert connections(corrected)[failed_connection] == "candidate"
    assert corrected.scalar("SELECT count(*) FROM students") > 0
    assert corrected.scalar("SELECT label FROM provider_connections WHERE status = 'active'") == \
        f"csv {export.parent.resolve()}"


def _sensor_resources(database: str, webhook_url: str) -> dict:
    return {"oneroster": OneRosterResource(), "warehouse": WarehouseResource(database=database),
            "sync_policy": SyncPolicy(), "alerts": AlertsResource(webhook_url=webhook_url)}


def test_a_failed_cli_run_records_itself_without_the_daemon(webhook, tmp_path):  # noqa: F811
    url, received = webhook
    home, database = tmp_path / "dagster_home", tmp_path / "warehouse" / "oneroster.duckdb"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")},
           "DAGSTER_HOME": str(home), "ONEROSTER_DUCKDB_PATH": str(database),
           "ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": f"http://127.0.0.1:{port}/ims/oneroster/v1p1",
           "ONEROSTER_AUTH": "oauth2", "ONEROSTER_TOKEN_URL": f"http://127.0.0.1:{port}/token",
           "ONEROSTER_CLIENT_ID": CLIENT_ID, "ONEROSTER_CLIENT_SECRET": "cron-secret-4242",
           "ONEROSTER_MAX_RETRIES": "0", "ONEROSTER_BACKOFF_SECONDS": "0", "ONEROSTER_ALERT_WEBHOOK_URL": url}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "oneroster_pipeline.definitions",
         "-j", "full_sync"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0, done.stdout + done.stderr
    # the command's last line says the cause and what to fix (issue 26 item 4), after Dagster's "Error: Run ..."
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("oneroster_pipeline: full_sync failed in oneroster_orgs: connection refused"), last
    assert last.endswith("(fix: the host and port in ONEROSTER_BASE_URL / ONEROSTER_TOKEN_URL)"), last

    instance = dg.DagsterInstance.from_config(str(home))
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.FAILURE
    with duckdb.connect(str(database), read_only=True) as con:
        runs = con.execute("SELECT run_id, job_name, trigger, outcome, message, finished_at FROM sync_runs").fetchall()
        alerts = con.execute("SELECT run_id, kind, message FROM sync_alerts").fetchall()
    assert len(runs) == 1 and runs[0][:4] == (run.run_id, "full_sync", "manual", "failed"), runs
    assert "127.0.0.1" in runs[0][4] and "oneroster_orgs" in runs[0][4] and runs[0][5] is not None
    assert len(alerts) == 1 and alerts[0][:2] == (run.run_id, "run_failure")
    assert len(received) == 1 and run.run_id in received[0]["text"]
    for text in (runs[0][4], alerts[0][2], received[0]["text"]):
        assert "cron-secret-4242" not in text

    # the daemon's sensor sees the same run later: it adds nothing
    defs = build_definitions(_sensor_resources(str(database), url))
    event = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].dagster_event
    context = dg.build_run_status_sensor_context(
        sensor_name="sync_failure_alert", dagster_instance=instance, dagster_run=run, dagster_event=event,
        resources=_sensor_resources(str(database), url))
    defs.get_sensor_def("sync_failure_alert")(context.for_run_failure())
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT count(*), any_value(outcome) FROM sync_runs").fetchall() == [(1, "failed")]
        assert con.execute("SELECT count(*) FROM sync_alerts").fetchall() == [(1,)]
    assert len(received) == 1
    instance.dispose()


def test_a_failed_in_process_run_records_itself_and_the_sensor_adds_no_duplicate(provider, webhook, tmp_path):  # noqa: F811
    url, received = webhook
    harness = SyncHarness(tmp_path, oneroster_for(provider, client_secret="wrong-secret-123"), webhook_url=url)
    failed = harness.run("student_sync", raise_on_error=False)
    assert not failed.success
    rows = harness.rows("SELECT run_id, outcome, message FROM sync_runs")
    assert len(rows) == 1 and rows[0][:2] == (failed.run_id, "failed") and "401" in rows[0][2]
    assert harness.rows("SELECT run_id, kind FROM sync_alerts") == [(failed.run_id, "run_failure")]
    assert len(received) == 1

    _evaluate(harness, "sync_failure_alert", failed, failure=True)
    assert harness.rows("SELECT count(*) FROM sync_runs") == [(1,)]
    assert harness.rows("SELECT count(*) FROM sync_alerts") == [(1,)]
    assert len(received) == 1
    for (text,) in harness.rows("SELECT message FROM sync_alerts UNION ALL SELECT message FROM sync_runs"):
        assert "wrong-secret-123" not in text and CLIENT_SECRET not in text


def test_a_failed_materialization_from_the_asset_graph_records_itself(provider, webhook, tmp_path):  # noqa: F811
    """The UI's Materialize and asset backfills run Dagster's implicit asset job, which has no job hooks: the hooks
    ride on the assets, so such a run records its failure and alert like a named job's."""
    url, received = webhook
    harness = SyncHarness(tmp_path, oneroster_for(provider, client_secret="wrong-secret-123"), webhook_url=url)
    implicit = harness.defs.resolve_implicit_global_asset_job_def()
    failed = implicit.execute_in_process(instance=harness.instance, raise_on_error=False,
                                         asset_selection=[dg.AssetKey("oneroster_orgs"), dg.AssetKey("buildings")])
    assert not failed.success and failed.dagster_run.job_name.startswith("__ASSET_JOB")
    rows = harness.rows("SELECT run_id, outcome, message FROM sync_runs")
    assert len(rows) == 1 and rows[0][:2] == (failed.run_id, "failed") and "401" in rows[0][2], rows
    assert harness.rows("SELECT run_id, kind FROM sync_alerts") == [(failed.run_id, "run_failure")]
    assert len(received) == 1 and "wrong-secret-123" not in received[0]["text"]
    # the daemon's failure sensor watches such runs too (monitored), and adds nothing to what the run recorded
    assert WatchedRuns.of(harness.defs.get_sensor_def("sync_failure_alert"))(failed.dagster_run)
    _evaluate(harness, "sync_failure_alert", failed, failure=True)
    assert harness.rows("SELECT count(*) FROM sync_alerts") == [(1,)] and len(received) == 1


def test_a_failed_error_check_in_a_successful_run_alerts_in_run_once(provider, webhook, tmp_path):  # noqa: F811
    url, received = webhook
    harness = SyncHarness(tmp_path, oneroster_for(provider), webhook_url=url)
    assert harness.run("full_sync").success
    assert harness.rows("SELECT count(*) FROM sync_alerts") == [(0,)]
    provider.district.add_school("Hillcrest Middle")  # a school without a building: the ERROR check fails
    result = harness.run("student_sync")
    assert result.success

    alerts = harness.rows("SELECT run_id, kind, message FROM sync_alerts")
    assert len(alerts) == 1 and alerts[0][:2] == (result.run_id, "check_failure")
    assert "building_sis_matches_schools" in alerts[0][2]
    assert len(received) == 1 and "building_sis_matches_schools" in received[0]["text"]

    _evaluate(harness, "failed_check_alert", result, failure=False)
    assert harness.rows("SELECT count(*) FROM sync_alerts") == [(1,)]
    assert len(received) == 1


def test_a_settings_error_is_recorded_by_the_run(tmp_path):
    """A settings error fails the first step before any request: the run still records itself."""
    harness = SyncHarness(tmp_path, OneRosterResource(provider="oneroster", auth="oauth2"))  # no base URL
    failed = harness.run("building_sync", raise_on_error=False)
    assert not failed.success
    [(outcome, message)] = harness.rows("SELECT outcome, message FROM sync_runs WHERE run_id = ?", [failed.run_id])
    assert outcome == "failed" and "ONEROSTER_BASE_URL" in message
    [(kind, alert)] = harness.rows("SELECT kind, message FROM sync_alerts WHERE run_id = ?", [failed.run_id])
    assert kind == "run_failure" and "ONEROSTER_BASE_URL" in alert
    assert harness.rows("SELECT count(*) FROM provider_connections") == [(0,)]


class _NoRunRecords:
    """An instance without the run's record (start and end times unknown): enough for `_record_failure`."""

    def get_run_record_by_id(self, run_id):
        return None


def test_a_failed_runs_row_refused_by_a_lake_conflict_is_written_again(tmp_path, monkeypatch):
    """On a lake, the failure hook's sync_runs row can be refused because another run of the district committed
    meanwhile (LakeConflictError, seen when two runs of one district start at once): it is written again
    (`backends.write_bookkeeping`), at most BOOKKEEPING_ATTEMPTS times in all, instead of leaving the failed run
    without its outcome."""
    import logging

    from oneroster_pipeline.defs.alerts import hooks
    from oneroster_pipeline.warehouse import backends
    from oneroster_pipeline.warehouse.lake import LakeConflictError

    real_write, attempts = hooks.write_run_row, []

    def refused_first(con, *args, **kwargs):
        attempts.append(1)
        if len(attempts) < refusals:
            raise LakeConflictError("main", "the other run committed first")
        real_write(con, *args, **kwargs)

    monkeypatch.setattr(hooks, "write_run_row", refused_first)
    monkeypatch.setattr(backends.time, "sleep", lambda seconds: None)
    warehouse = WarehouseResource(database=str(tmp_path / "oneroster.duckdb"))
    for run_id, refusals in (("refused-once", 2), ("refused-always", backends.BOOKKEEPING_ATTEMPTS + 1)):
        attempts.clear()
        run = dg.DagsterRun(job_name="student_sync", run_id=run_id)
        hooks._record_failure(_NoRunRecords(), run, warehouse, AlertsResource(), logging.getLogger("test"),
                              "student_sync_assets: boom", None, [])
        assert len(attempts) == min(refusals, backends.BOOKKEEPING_ATTEMPTS)
    with duckdb.connect(str(tmp_path / "oneroster.duckdb"), read_only=True) as con:
        assert con.execute("SELECT run_id, outcome FROM sync_runs").fetchall() == [("refused-once", "failed")]
