"""Sensors for what no step hook sees (a run that died, failed before its steps, or was canceled) and failed ERROR
checks of successful runs; each skips an alert the run already sent. A run interrupted by SIGTERM/SIGINT is
recorded as canceled (`canceled.py`), whether Dagster marked it failed (`dagster job execute`) or canceled (the UI)."""

# Each alert is logged, appended to DuckDB `sync_alerts`, and POSTed to ONEROSTER_ALERT_WEBHOOK_URL when set.
# The runs record themselves (`hooks.py`: hooks on every monitored job), so these sensors, which need the
# daemon, skip an alert the run already sent and cover what no step hook sees (a run that failed before or outside
# its steps: a resource that failed to initialise, a dead run worker, a canceled run). The jobs they watch are given
# to `build_sensors` (the code location passes the sync and provider-change jobs): this module imports no domain.


from dataclasses import dataclass

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.resources import AlertsResource, WarehouseResource

from .canceled import interrupted
from .hooks import (
    alert_recorded,
    canceled_details,
    failed_error_checks,
    record_canceled_run,
    record_failure,
    send_check_alert,
    step_errors,
)

# the implicit asset job's runs (the UI's Materialize, asset backfills) are watched too: Dagster names it
# __ASSET_JOB(_<n>)
IMPLICIT_ASSET_JOB_PREFIX = "__ASSET_JOB"
WATCHED_JOBS = "monitored_jobs"  # the sensors' metadata naming the jobs they watch (shown in the UI)


@dataclass(frozen=True)
class WatchedRuns:
    """The runs the alert sensors alert on: those of the jobs they were given, and the implicit asset job's."""

    job_names: frozenset[str]

    @classmethod
    def of(cls, sensor: dg.SensorDefinition) -> "WatchedRuns":
        """What `sensor` (one of `build_sensors`') watches, from its metadata."""
        return cls(frozenset(sensor.metadata[WATCHED_JOBS].value))

    def __call__(self, run: dg.DagsterRun) -> bool:
        return run.job_name in self.job_names or run.job_name.startswith(IMPLICIT_ASSET_JOB_PREFIX)


def failed_districts_of(instance: dg.DagsterInstance, run_id: str) -> list[str] | None:
    """The districts a batched run's failure names (its failed step's `failed_districts`), or None: the failure is
    the whole run's (every district it covers)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        metadata = data.user_failure_data.metadata if data and data.user_failure_data else {}
        if "failed_districts" in metadata:
            return list(metadata["failed_districts"].value)
    return None


def warehouse_of_run(layout: DistrictLayout, run: dg.DagsterRun, warehouse: WarehouseResource) -> WarehouseResource:
    """The warehouse of the run's (first) district: where its hook recorded what it sent."""
    districts = layout.districts_of_run(run) or [None]
    return layout.bound(districts[0], {"warehouse": warehouse})["warehouse"]


def sync_failure_alert(layout: DistrictLayout, watched: WatchedRuns, context: dg.RunFailureSensorContext,
                       warehouse: WarehouseResource, alerts: AlertsResource) -> None:
    run = context.dagster_run
    if not watched(run):
        return
    if interrupted(context.instance, run.run_id, context.failure_event):  # SIGTERM/SIGINT: canceled, not failed
        record_canceled_run(layout, context.instance, run, warehouse, alerts, context.log,
                            canceled_details(run.job_name))
        return
    message = context.failure_event.message or "the run failed"
    checks = failed_error_checks(context.instance, run.run_id)
    details = "; ".join(step_errors(context.instance, run.run_id) + checks) or message
    # the run's own hook may have recorded it already: no second alert; the row gets the run's exact end time
    # a batched run that failed naming some districts: only those failed (the others were synced in full)
    record_failure(layout, context.instance, run, warehouse, alerts, context.log, details,
                   only_districts=failed_districts_of(context.instance, run.run_id))


def sync_canceled_alert(layout: DistrictLayout, watched: WatchedRuns, context: dg.RunStatusSensorContext,
                        warehouse: WarehouseResource, alerts: AlertsResource) -> None:
    run = context.dagster_run
    if watched(run):
        record_canceled_run(layout, context.instance, run, warehouse, alerts, context.log,
                            canceled_details(run.job_name))


def failed_check_alert(layout: DistrictLayout, watched: WatchedRuns, context: dg.RunStatusSensorContext,
                       warehouse: WarehouseResource, alerts: AlertsResource) -> None:
    run = context.dagster_run
    if not watched(run):
        return
    checks = failed_error_checks(context.instance, run.run_id)
    if not checks or alert_recorded(warehouse_of_run(layout, run, warehouse), run.run_id, "check_failure"):
        return
    send_check_alert(layout, run, checks, warehouse, alerts, context.log)


def build_sensors(layout: DistrictLayout, jobs) -> list[dg.SensorDefinition]:
    """The three alert sensors over `layout`'s districts, watching the runs of `jobs` (and of the implicit asset
    job). Each watches every job of the code location (monitored_jobs unset: the implicit asset job cannot be named
    there) and alerts on the watched ones."""
    watched = WatchedRuns(frozenset(job.name for job in jobs))
    common = {"default_status": dg.DefaultSensorStatus.RUNNING, "metadata": {WATCHED_JOBS: sorted(watched.job_names)}}

    @dg.run_failure_sensor(
        name="sync_failure_alert",
        description="Alerts when a sync, preview, provider switch or rebuild run fails (a named job's, or an asset "
                    "materialization or backfill's), unless the run alerted itself.", **common)
    def failure(context: dg.RunFailureSensorContext, warehouse: WarehouseResource, alerts: AlertsResource) -> None:
        sync_failure_alert(layout, watched, context, warehouse, alerts)

    @dg.run_status_sensor(
        name="sync_canceled_alert", run_status=dg.DagsterRunStatus.CANCELED,
        description="Records a canceled sync, preview, provider switch or rebuild run (the UI's Terminate) as "
                    "canceled in sync_runs, with a run_canceled alert, unless the run recorded itself.", **common)
    def canceled(context: dg.RunStatusSensorContext, warehouse: WarehouseResource, alerts: AlertsResource) -> None:
        sync_canceled_alert(layout, watched, context, warehouse, alerts)

    @dg.run_status_sensor(
        name="failed_check_alert", run_status=dg.DagsterRunStatus.SUCCESS,
        description="Alerts when a sync run succeeded but an ERROR-severity asset check failed in it "
                    "(unless the run alerted itself).", **common)
    def failed_checks(context: dg.RunStatusSensorContext, warehouse: WarehouseResource,
                      alerts: AlertsResource) -> None:
        failed_check_alert(layout, watched, context, warehouse, alerts)

    return [failure, canceled, failed_checks]
