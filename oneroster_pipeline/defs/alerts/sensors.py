"""Sensors for what no step hook sees (a run that died, failed before its steps, or was canceled) and failed ERROR
checks of successful runs; each skips an alert the run already sent."""

# Each alert is logged, appended to DuckDB `sync_alerts`, and POSTed to ONEROSTER_ALERT_WEBHOOK_URL when set.
# The runs record themselves (`hooks.py`: hooks on every monitored job), so these sensors, which need the
# daemon, skip an alert the run already sent and cover what no step hook sees (a run that failed before or outside
# its steps: a resource that failed to initialise, a dead run worker, a canceled run).


import dagster as dg

from oneroster_pipeline.defs.provider_switch.jobs import PROVIDER_SWITCH_JOBS
from oneroster_pipeline.defs.resources import AlertsResource, WarehouseResource, secrets_to_hide
from oneroster_pipeline.defs.sync.jobs import SYNC_JOBS
from oneroster_pipeline.warehouse.alerts import Alert, send_alert

from .hooks import alert_recorded, failed_error_checks, record_failure, root_cause, step_errors

MONITORED_JOBS = [*SYNC_JOBS, *PROVIDER_SWITCH_JOBS]

__all__ = ["MONITORED_JOBS", "failed_check_alert", "failed_error_checks", "root_cause", "sync_failure_alert"]


@dg.run_failure_sensor(
    name="sync_failure_alert", monitored_jobs=MONITORED_JOBS, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when a sync, preview, provider switch or rebuild run fails (unless the run alerted itself).",
)
def sync_failure_alert(
    context: dg.RunFailureSensorContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "the run failed"
    checks = failed_error_checks(context.instance, run.run_id)
    details = "; ".join(step_errors(context.instance, run.run_id) + checks) or message
    # the run's own hook may have recorded it already: no second alert; the row gets the run's exact end time
    record_failure(context.instance, run, warehouse, alerts.webhook_url, context.log, details)


@dg.run_status_sensor(
    name="failed_check_alert", run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=MONITORED_JOBS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when a sync run succeeded but an ERROR-severity asset check failed in it "
                "(unless the run alerted itself).",
)
def failed_check_alert(
    context: dg.RunStatusSensorContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    checks = failed_error_checks(context.instance, run.run_id)
    if not checks or alert_recorded(warehouse, run.run_id, "check_failure"):
        return
    send_alert(
        Alert("check_failure", run.job_name, run.run_id,
              f"{len(checks)} asset check(s) failed in {run.job_name}", "; ".join(checks)),
        database=warehouse.database, webhook_url=alerts.webhook_url, logger=context.log,
        secrets=secrets_to_hide(),
    )
