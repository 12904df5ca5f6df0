"""Sensors for what no step hook sees (a run that died, failed before its steps, or was canceled) and failed ERROR
checks of successful runs; each skips an alert the run already sent. A run interrupted by SIGTERM/SIGINT is
recorded as canceled (`canceled.py`), whether Dagster marked it failed (`dagster job execute`) or canceled (the UI)."""

# Each alert is logged, appended to DuckDB `sync_alerts`, and POSTed to ONEROSTER_ALERT_WEBHOOK_URL when set.
# The runs record themselves (`hooks.py`: hooks on every monitored job), so these sensors, which need the
# daemon, skip an alert the run already sent and cover what no step hook sees (a run that failed before or outside
# its steps: a resource that failed to initialise, a dead run worker, a canceled run).


import dagster as dg

from oneroster_pipeline.defs.districts import bound, districts_of_run
from oneroster_pipeline.defs.provider_switch.jobs import PROVIDER_SWITCH_JOBS
from oneroster_pipeline.defs.resources import AlertsResource, WarehouseResource
from oneroster_pipeline.defs.sync.jobs import SYNC_JOBS

from .canceled import interrupted
from .hooks import (
    alert_recorded,
    canceled_details,
    failed_error_checks,
    record_canceled_run,
    record_failure,
    root_cause,
    send_check_alert,
    step_errors,
)

MONITORED_JOBS = [*SYNC_JOBS, *PROVIDER_SWITCH_JOBS]
# and the implicit asset job's runs (the UI's Materialize, asset backfills): Dagster names it __ASSET_JOB(_<n>)
MONITORED_JOB_NAMES = frozenset(job.name for job in MONITORED_JOBS)
IMPLICIT_ASSET_JOB_PREFIX = "__ASSET_JOB"

__all__ = ["MONITORED_JOBS", "failed_check_alert", "failed_error_checks", "root_cause", "sync_canceled_alert",
           "sync_failure_alert"]


def monitored(run: dg.DagsterRun) -> bool:
    """Whether the sensors alert on this run: a sync or provider-switch job, or the implicit asset job."""
    return run.job_name in MONITORED_JOB_NAMES or run.job_name.startswith(IMPLICIT_ASSET_JOB_PREFIX)


def failed_districts_of(instance: dg.DagsterInstance, run_id: str) -> list[str] | None:
    """The districts a batched run's failure names (its failed step's `failed_districts`), or None: the failure is
    the whole run's (every district it covers)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        metadata = data.user_failure_data.metadata if data and data.user_failure_data else {}
        if "failed_districts" in metadata:
            return list(metadata["failed_districts"].value)
    return None


def warehouse_of_run(run: dg.DagsterRun, warehouse: WarehouseResource) -> WarehouseResource:
    """The warehouse of the run's (first) district: where its hook recorded what it sent."""
    districts = districts_of_run(run) or [None]
    return bound(districts[0], {"warehouse": warehouse})["warehouse"]


# both sensors watch every job of the code location (monitored_jobs unset: the implicit asset job cannot be named
# there) and alert on the monitored ones
@dg.run_failure_sensor(
    name="sync_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when a sync, preview, provider switch or rebuild run fails (a named job's, or an asset "
                "materialization or backfill's), unless the run alerted itself.",
)
def sync_failure_alert(
    context: dg.RunFailureSensorContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    if not monitored(run):
        return
    if interrupted(context.instance, run.run_id, context.failure_event):  # SIGTERM/SIGINT: canceled, not failed
        record_canceled_run(context.instance, run, warehouse, alerts, context.log, canceled_details(run.job_name))
        return
    message = context.failure_event.message or "the run failed"
    checks = failed_error_checks(context.instance, run.run_id)
    details = "; ".join(step_errors(context.instance, run.run_id) + checks) or message
    # the run's own hook may have recorded it already: no second alert; the row gets the run's exact end time
    # a batched run that failed naming some districts: only those failed (the others were synced in full)
    record_failure(context.instance, run, warehouse, alerts, context.log, details,
                   only_districts=failed_districts_of(context.instance, run.run_id))


@dg.run_status_sensor(
    name="sync_canceled_alert", run_status=dg.DagsterRunStatus.CANCELED,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records a canceled sync, preview, provider switch or rebuild run (the UI's Terminate) as canceled "
                "in sync_runs, with a run_canceled alert, unless the run recorded itself.",
)
def sync_canceled_alert(
    context: dg.RunStatusSensorContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    if monitored(run):
        record_canceled_run(context.instance, run, warehouse, alerts, context.log, canceled_details(run.job_name))


@dg.run_status_sensor(
    name="failed_check_alert", run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when a sync run succeeded but an ERROR-severity asset check failed in it "
                "(unless the run alerted itself).",
)
def failed_check_alert(
    context: dg.RunStatusSensorContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    if not monitored(run):
        return
    checks = failed_error_checks(context.instance, run.run_id)
    if not checks or alert_recorded(warehouse_of_run(run, warehouse), run.run_id, "check_failure"):
        return
    send_check_alert(run, checks, warehouse, alerts, context.log)
