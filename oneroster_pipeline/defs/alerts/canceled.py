"""A terminated run (SIGTERM/SIGINT: the UI's Terminate, a stopped container, Ctrl-C) records itself as `canceled`.

Dagster turns the signal into DagsterExecutionInterruptedError (a BaseException) inside the running step and runs no
failure hook for it, so `sync_step` records it where the step's body runs (`hooks.record_canceled`): the run's
`sync_runs` row gets outcome 'canceled' and one `run_canceled` alert goes out (`sync_alerts`, webhook). A run
canceled where no body ran (before its first step, between steps, a run worker that could not write the warehouse)
is recorded by the sensors: the failure sensor for an interrupted run that Dagster marked failed (`dagster job
execute` does), and `sync_canceled_alert` for one Dagster marked canceled (the UI's Terminate). A row that already
has an outcome keeps it (a sync that committed before the signal came is `applied`), and no second alert goes out.

`sync_step` also shows the warehouse's warnings (`warehouse.duckdb_files`: a checkpoint that found the disk full) in
the step's Dagster log."""

import functools
import inspect
import logging
from contextlib import contextmanager

import dagster as dg

from oneroster_pipeline.warehouse import duckdb_files

from .hooks import INTERRUPTS, canceled_details, record_canceled

_INTERRUPT_NAMES = {kind.__name__ for kind in INTERRUPTS}


def interrupted(instance: dg.DagsterInstance, run_id: str, failure_event: dg.DagsterEvent | None = None) -> bool:
    """Whether a failed run failed because it was interrupted (SIGTERM/SIGINT): its failure or a step's is the
    interrupt (`dagster job execute` marks such a run failed, not canceled)."""
    error = getattr(failure_event.event_specific_data, "error", None) if failure_event else None
    if error is not None and error.cls_name in _INTERRUPT_NAMES:
        return True
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        if data and data.error and data.error.cls_name in _INTERRUPT_NAMES:
            return True
    return False


class _ToStepLog(logging.Handler):
    def __init__(self, log) -> None:
        super().__init__(logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        self._log.warning(record.getMessage())


@contextmanager
def _warehouse_warnings_to(log):
    logger = logging.getLogger(duckdb_files.__name__)
    handler = _ToStepLog(log)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _on_interrupt(context, resources: dict) -> None:
    step = context.get_step_execution_context().step.key
    record_canceled(context.instance, context.run, resources["warehouse"], resources["alerts"], context.log,
                    canceled_details(context.run.job_name, step))


def sync_step(body):
    """An asset's body `body(context, **resources)` (its resources include `warehouse` and `alerts`) that records
    its run as canceled when it is interrupted, and shows the warehouse's warnings in the step's log. Goes under
    `per_district`, so a batched run records the district it was syncing."""
    if inspect.isgeneratorfunction(body):
        @functools.wraps(body)
        def recording(context, **resources):
            try:
                with _warehouse_warnings_to(context.log):
                    yield from body(context, **resources)
            except INTERRUPTS:
                _on_interrupt(context, resources)
                raise
        return recording

    @functools.wraps(body)
    def recording_returning(context, **resources):
        try:
            with _warehouse_warnings_to(context.log):
                return body(context, **resources)
        except INTERRUPTS:
            _on_interrupt(context, resources)
            raise
    return recording_returning
