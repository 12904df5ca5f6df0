"""Hooks on every monitored job: a failed run records its `sync_runs` row and alert from inside the run, and
failed ERROR checks are alerted by the step that evaluated them (no daemon needed)."""

# The hooks (`build_hooks`) are attached to every monitored job and asset, so a run started from the CLI
# (`dagster job execute`), the launchpad, a schedule or a backfill records itself:
# - `record_failed_run` (failure hook, on the step that failed): the run's `sync_runs` row (`outcome` 'failed', or
#   'held' for a held sync, with the redacted errors of the run's failed steps and failed ERROR checks) and one
#   `run_failure` alert (`sync_alerts`, webhook) per run;
# - `alert_failed_checks` (success hook): one `check_failure` alert for the ERROR-severity checks that failed in the
#   step (a check's failure is alerted by the step that evaluated it).
# The sensors (`sensors.py`) still cover runs that fail where no step hook can run (the run worker dies, a resource
# fails to initialise, the run is canceled) and skip what the run already recorded (`alert_recorded`). A terminated
# (interrupted) run is recorded as `canceled` with a `run_canceled` alert (`record_canceled`), by the step it
# interrupted (`canceled.py`: Dagster runs no hook for an interrupt) or by the sensors.

import atexit
import os
import sys
from datetime import datetime, timezone

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.runs import write_run_row
from oneroster_pipeline.failures import summary
from oneroster_pipeline.warehouse.alerts import Alert, redact
from oneroster_pipeline.warehouse.backends import write_bookkeeping
from oneroster_pipeline.warehouse.reports import recorded_outcome, run_has_alert


def root_cause(error) -> str:
    """The innermost error of a serialized error chain, as `ExceptionName: message` (Dagster wraps user errors)."""
    while error.cause is not None:
        error = error.cause
    name, _, message = error.message.strip().partition(": ")
    return f"{name.rsplit('.', 1)[-1]}: {message}" if message else name


_LAST_WORDS: list[str] = []
CLI_COMMANDS = ("dagster", "dg")  # the commands whose process prints the summary as its last line


def say_last(log, line: str) -> None:
    """Log `line` now, and print it as the process's last line on stderr (after Dagster's own "Error: Run ...
    resulted in failure"), so the end of a failed command says what to fix."""
    log.error(line)
    if os.path.basename(sys.argv[0] if sys.argv else "") not in CLI_COMMANDS:
        return  # a run inside another program (a test, a notebook): the log line is enough
    if not _LAST_WORDS:
        atexit.register(lambda: print("\n".join(_LAST_WORDS), file=sys.stderr, flush=True))
    _LAST_WORDS.append(f"oneroster_pipeline: {line}")


def failed_error_checks(instance: dg.DagsterInstance, run_id: str, step_key: str | None = None) -> list[str]:
    """One line per ERROR-severity asset check that failed in the run (in one step when `step_key` is given)."""
    lines = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        if step_key is not None and entry.step_key != step_key:
            continue
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            lines.append(
                f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}: "
                f"{evaluation.description or 'failed'}"
            )
    return lines


def step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """'<step>: <root cause>' for every failed step of the run, in order."""
    lines = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event.event_specific_data and event.event_specific_data.error:
            lines.append(f"{event.step_key}: {root_cause(event.event_specific_data.error)}")
    return lines


def alert_recorded(warehouse, run_id: str, kind: str) -> bool:
    """Whether `sync_alerts` already holds an alert of this kind for the run (the run's hook sent it)."""
    try:
        with warehouse.connect() as con:
            return run_has_alert(con, run_id, kind)
    except Exception:  # the warehouse is unavailable: better a second alert than none
        return False


def record_failure(layout: DistrictLayout, instance: dg.DagsterInstance, run: dg.DagsterRun, warehouse, alerts, log,
                   details: str, finished: float | None = None, only_districts: list[str] | None = None) -> None:
    """The failed run's `sync_runs` row, and its `run_failure` alert unless one was recorded already: in each
    district the run covers (`only_districts`: those of them that failed), with that district's warehouse."""
    for district in layout.districts_of_run(run):
        if only_districts is not None and district not in only_districts:
            continue
        resources = layout.bound(district, {"warehouse": warehouse, "alerts": alerts})
        _record_failure(instance, run, resources["warehouse"], resources["alerts"], log, details, finished,
                        layout.secrets())


def _record_failure(instance, run, warehouse, alerts, log, details: str, finished: float | None,
                    secrets: list[str]) -> None:
    held = "Sync held" in details
    if not alert_recorded(warehouse, run.run_id, "run_failure"):
        alerts.send(Alert("run_failure", run.job_name, run.run_id, f"{run.job_name} failed", details),
                    database=warehouse.alerts_target(), logger=log)
    record = instance.get_run_record_by_id(run.run_id)
    started = record.start_time if record else None
    finished = finished or (record.end_time if record else None) or datetime.now(timezone.utc).timestamp()
    try:  # the run's sync_runs row: steps that ran filled the rest
        write_bookkeeping(warehouse.connect, lambda con: write_run_row(
            con, run, datetime.fromtimestamp(started, timezone.utc) if started else None,
            datetime.fromtimestamp(finished, timezone.utc), outcome="held" if held else "failed",
            message=redact(details, secrets)))
    except Exception as error:  # the alert went out; say why the row could not be written
        log.error("could not record the failed run in sync_runs: %s", redact(str(error), secrets))


# a terminated run: canceled, not failed (`canceled.py` records it from the step it interrupted)
INTERRUPTS = (dg.DagsterExecutionInterruptedError, KeyboardInterrupt)
CANCELED_KIND = "run_canceled"  # the alert kind, beside run_failure, check_failure and sync_held


def canceled_details(job_name: str, step: str | None = None) -> str:
    where = f" in step {step}" if step else ""
    return (f"{job_name} was canceled{where} (terminated: the UI's Terminate, SIGTERM or SIGINT); what it had not "
            "committed was rolled back, so the tables are as its last committed step left them")


def record_canceled(instance: dg.DagsterInstance, run: dg.DagsterRun, warehouse, alerts, log, details: str,
                    secrets: list[str] | None = None) -> None:
    """The run's `sync_runs` row gets outcome 'canceled' (with `details`) and one `run_canceled` alert goes out,
    unless the row has an outcome already (the sync committed before the signal, or the run recorded itself).
    `secrets` are masked, as is every secret the configuration holds (`Config.load` registered them with the one
    redactor)."""
    def write(con) -> bool:
        if recorded_outcome(con, run.run_id) is not None:
            return False
        record = instance.get_run_record_by_id(run.run_id)
        started = datetime.fromtimestamp(record.start_time, timezone.utc) if record and record.start_time else None
        write_run_row(con, run, started, datetime.now(timezone.utc), outcome="canceled",
                      message=redact(details, secrets))
        return True

    try:
        if not write_bookkeeping(warehouse.connect, write):
            return
    except Exception as error:  # the alert still goes out; say why the row could not be written
        log.error("could not record the canceled run in sync_runs: %s", redact(str(error), secrets))
    if not alert_recorded(warehouse, run.run_id, CANCELED_KIND):
        alerts.send(Alert(CANCELED_KIND, run.job_name, run.run_id, f"{run.job_name} was canceled", details),
                    database=warehouse.alerts_target(), logger=log)


def record_canceled_run(layout: DistrictLayout, instance: dg.DagsterInstance, run: dg.DagsterRun, warehouse, alerts,
                        log, details: str) -> None:
    """`record_canceled` in every district the run covers (the sensors: they see the run, not a step)."""
    for district in layout.districts_of_run(run):
        resources = layout.bound(district, {"warehouse": warehouse, "alerts": alerts})
        record_canceled(instance, run, resources["warehouse"], resources["alerts"], log, details, layout.secrets())


def record_failed_run(layout: DistrictLayout, context: dg.HookContext) -> None:
    """A step failed: record the run as failed (sync_runs) and alert once per run, from inside the run. A step that
    was interrupted records the run as canceled (`canceled.py`; Dagster does not normally run hooks for it)."""
    run = context.instance.get_run_by_id(context.run_id)
    if isinstance(context.op_exception, INTERRUPTS):
        record_canceled_run(layout, context.instance, run, context.resources.warehouse, context.resources.alerts,
                            context.log, canceled_details(run.job_name, context.step_key))
        return
    errors = step_errors(context.instance, context.run_id)
    if not any(line.startswith(f"{context.step_key}: ") for line in errors) and context.op_exception is not None:
        exception = context.op_exception
        text = exception.description if isinstance(exception, dg.Failure) else str(exception)
        errors.append(f"{context.step_key}: {type(exception).__name__}: {text}")
    details = "; ".join(errors + failed_error_checks(context.instance, context.run_id)) or "the run failed"
    if context.op_exception is not None:  # one short line naming the cause and the fix, also the process's last
        say_last(context.log, summary(context.op_exception, run.job_name, context.step_key))
    # a batched run's failure names the districts that failed: the others were synced
    failed = getattr(context.op_exception, "metadata", None) or {}
    only = failed["failed_districts"].value if "failed_districts" in failed else None
    record_failure(layout, context.instance, run, context.resources.warehouse, context.resources.alerts,
                   context.log, details, only_districts=only)


def alert_failed_checks(layout: DistrictLayout, context: dg.HookContext) -> None:
    """A step succeeded: alert the ERROR-severity checks that failed in it (the run may still succeed)."""
    checks = failed_error_checks(context.instance, context.run_id, step_key=context.step_key)
    if checks:
        run = context.instance.get_run_by_id(context.run_id)
        send_check_alert(layout, run, checks, context.resources.warehouse, context.resources.alerts, context.log)


def send_check_alert(layout: DistrictLayout, run: dg.DagsterRun, checks: list[str], warehouse, alerts, log) -> None:
    """One `check_failure` alert per district the run covers, naming the failed ERROR checks."""
    for district in layout.districts_of_run(run):
        resources = layout.bound(district, {"warehouse": warehouse, "alerts": alerts})
        resources["alerts"].send(
            Alert("check_failure", run.job_name, run.run_id,
                  f"{len(checks)} asset check(s) failed in {run.job_name}", "; ".join(checks)),
            database=resources["warehouse"].alerts_target(), logger=log)


def build_hooks(layout: DistrictLayout) -> frozenset[dg.HookDefinition]:
    """The hooks every monitored job and asset carries: `record_failed_run` (failure) and `alert_failed_checks`
    (success), over `layout`'s districts."""
    @dg.failure_hook(name="record_failed_run", required_resource_keys={"warehouse", "alerts"})
    def record_failed_run_hook(context: dg.HookContext) -> None:
        record_failed_run(layout, context)

    @dg.success_hook(name="alert_failed_checks", required_resource_keys={"warehouse", "alerts"})
    def alert_failed_checks_hook(context: dg.HookContext) -> None:
        alert_failed_checks(layout, context)

    return frozenset({record_failed_run_hook, alert_failed_checks_hook})
