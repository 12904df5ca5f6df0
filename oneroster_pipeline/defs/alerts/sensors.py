"""Sensors for what no step hook sees (a run that died, failed before its steps, or was canceled) and failed ERROR
checks of successful runs; each skips an alert the run already sent."""

# Each alert is logged, appended to DuckDB `sync_alerts`, and POSTed to ONEROSTER_ALERT_WEBHOOK_URL when set.
# The runs record themselves (`hooks.py`: hooks on every monitored job), so these sensors, which need the
# daemon, skip an alert the run already sent and cover what no step hook sees (a run that failed before or outside
# its steps: a resource that failed to initialise, a dead run worker, a canceled run).


import dagster as dg

from oneroster_pipeline.defs.districts import bound, districts_of_run
from oneroster_pipeline.defs.provider_switch.jobs import PROVIDER_SWITCH_JOBS
from oneroster_pipeline.defs.resources import AlertsResource, WarehouseResource
from oneroster_pipeline.defs.sync.jobs import SYNC_JOBS

from .hooks import alert_recorded, failed_error_checks, record_failure, root_cause, send_check_alert, step_errors

MONITORED_JOBS = [*SYNC_JOBS, *PROVIDER_SWITCH_JOBS]

__all__ = ["MONITORED_JOBS", "failed_check_alert", "failed_error_checks", "root_cause", "sync_failure_alert"]


def warehouse_of_run(run: dg.DagsterRun, warehouse: WarehouseResource) -> WarehouseResource:
    """The warehouse of the run's (first) district: where its hook recorded what it sent."""
    districts = districts_of_run(run) or [None]
    return bound(districts[0], {"warehouse": warehouse})["warehouse"]


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
    record_failure(context.instance, run, warehouse, alerts, context.log, details)


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
    if not checks or alert_recorded(warehouse_of_run(run, warehouse), run.run_id, "check_failure"):
        return
    send_check_alert(run, checks, warehouse, alerts, context.log)
