"""Alerts: a run-failure sensor over the sync jobs, and a sensor for failed ERROR-severity asset checks.

Each alert is logged, appended to DuckDB `sync_alerts`, and POSTed to ONEROSTER_ALERT_WEBHOOK_URL when set.
"""


from datetime import datetime, timezone

import dagster as dg

from . import store
from .alerts import Alert, redact, send_alert
from .assets import run_trigger
from .jobs import PROVIDER_SWITCH_JOBS, SYNC_JOBS
from .resources import AlertsResource, WarehouseResource

MONITORED_JOBS = [*SYNC_JOBS, *PROVIDER_SWITCH_JOBS]


def root_cause(error) -> str:
    """The innermost error of a serialized error chain, as `ExceptionName: message` (Dagster wraps user errors)."""
    while error.cause is not None:
        error = error.cause
    name, _, message = error.message.strip().partition(": ")
    return f"{name.rsplit('.', 1)[-1]}: {message}" if message else name


def failed_error_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """One line per ERROR-severity asset check that failed in the run: '<asset>.<check>: <description>'."""
    lines = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            lines.append(
                f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}: "
                f"{evaluation.description or 'failed'}"
            )
    return lines


@dg.run_failure_sensor(
    name="sync_failure_alert", monitored_jobs=MONITORED_JOBS, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when a sync, preview, provider switch or rebuild run fails.",
)
def sync_failure_alert(
    context: dg.RunFailureSensorContext, duckdb: WarehouseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "the run failed"
    step_errors = [
        f"{event.step_key}: {root_cause(event.event_specific_data.error)}"
        for event in context.get_step_failure_events()
        if event.event_specific_data and event.event_specific_data.error
    ]
    checks = failed_error_checks(context.instance, run.run_id)
    details = "; ".join(step_errors + checks) or message
    send_alert(
        Alert("run_failure", run.job_name, run.run_id, f"{run.job_name} failed", details),
        database=duckdb.database, webhook_url=alerts.webhook_url, logger=context.log,
    )
    held = any("Sync held" in line for line in step_errors)
    record = context.instance.get_run_record_by_id(run.run_id)
    started, ended = (record.start_time, record.end_time) if record else (None, None)
    with duckdb.connect() as con:  # the run's sync_runs row: steps that ran filled the rest
        store.upsert_sync_run(
            con, run.run_id, job_name=run.job_name, trigger=run_trigger(run.tags),
            started_at=datetime.fromtimestamp(started, timezone.utc) if started else None,
            finished_at=datetime.fromtimestamp(ended, timezone.utc) if ended else None,
            duration_seconds=ended - started if started and ended else None,
            outcome="held" if held else "failed", message=redact(details))


@dg.run_status_sensor(
    name="failed_check_alert", run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=MONITORED_JOBS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when a sync run succeeded but an ERROR-severity asset check failed in it.",
)
def failed_check_alert(
    context: dg.RunStatusSensorContext, duckdb: WarehouseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    checks = failed_error_checks(context.instance, run.run_id)
    if not checks:
        return
    send_alert(
        Alert("check_failure", run.job_name, run.run_id,
              f"{len(checks)} asset check(s) failed in {run.job_name}", "; ".join(checks)),
        database=duckdb.database, webhook_url=alerts.webhook_url, logger=context.log,
    )
