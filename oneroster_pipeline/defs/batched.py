"""A step over several districts (a batched backfill run, ONEROSTER_DISTRICTS_PER_RUN > 1): the asset's or check's
own body run once per district, each time with that district's resources (`DistrictLayout.bound`).

A district that fails does not stop the others, in its step or in the run's later ones. What the run's steps share
is only what Dagster records for the run, so it holds whatever executor runs the steps and whichever process runs
each: a district that fails is recorded as an `AssetObservation` of the run (its partition, metadata
`oneroster/district_failed`: the error), which later steps read back from the instance and skip; and the run's
execution plan (Dagster's snapshot of it) with the steps' recorded ends says which step is the run's last, the one
that fails naming every failed district after recording a materialization per district it synced.
"""

from __future__ import annotations

import functools
import inspect

import dagster as dg

from oneroster_pipeline.defs.runs import markdown_table

FAILED_DISTRICT = "oneroster/district_failed"  # the metadata key of a failed district's observation: its error
FAILED_IN_RUN_NOTE = "failed earlier in this batched run: not synced (the run fails naming it)"
_ENDED = frozenset({dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
                    dg.DagsterEventType.STEP_SKIPPED})


def per_district(layout, body):
    """Run an asset's or a check's `body(context, **resources)` once per district of the step (`layout`: a
    `DistrictLayout` with districts), each time with that district's resources. One district (the usual run):
    exactly the body's results. Several (a batched backfill): every district is synced; then one result per asset
    whose event for each district carries that district's own metadata, and one result per check with a table by
    district, or, when some district failed, a materialization per district that succeeded and a failure naming
    the ones that did not."""
    if inspect.isgeneratorfunction(body):
        @functools.wraps(body)
        def each_district(context, **resources):
            keys = layout.districts_of(context)
            if len(keys) == 1:
                yield from body(context, **layout.bound(keys[0], resources))
                return
            yield from _over_districts(layout, context, keys, body, resources)
        return each_district

    @functools.wraps(body)
    def each_district_returning(context, **resources):
        keys = layout.districts_of(context)
        if len(keys) == 1:
            return body(context, **layout.bound(keys[0], resources))
        (result,) = _over_districts(layout, context, keys, body, resources)
        return result
    return each_district_returning


class _DistrictLog:
    """A batched step's log for one district: its info and debug lines are gathered and written as one line when
    the district's turn ends (each log line is an event-log write; a batched run of 50 districts wrote ~250 such
    lines per step pair); warnings and errors go out at once. Every line names the district."""

    def __init__(self, log, label: str) -> None:
        self._log, self._prefix, self._lines = log, f"district {label}: ", []

    def info(self, message, *args, **kwargs) -> None:
        self._lines.append(str(message) % args if args else str(message))

    debug = info

    def warning(self, message, *args, **kwargs) -> None:
        self._log.warning(self._prefix + str(message), *args, **kwargs)

    warn = warning

    def error(self, message, *args, **kwargs) -> None:
        self._log.error(self._prefix + str(message), *args, **kwargs)

    def exception(self, message, *args, **kwargs) -> None:
        self._log.exception(self._prefix + str(message), *args, **kwargs)

    def critical(self, message, *args, **kwargs) -> None:
        self._log.critical(self._prefix + str(message), *args, **kwargs)

    def flush(self) -> None:
        if self._lines:
            self._log.info(self._prefix + "; ".join(self._lines))
            self._lines = []

    def __getattr__(self, name: str):
        return getattr(self._log, name)


class _DistrictContext:
    """The step's context for one district of a batched step: everything is the step's own but the log."""

    def __init__(self, context, log: _DistrictLog) -> None:
        self._context, self.log = context, log

    def __getattr__(self, name: str):
        return getattr(self._context, name)


def _events(layout, context, key, body, resources, events: list) -> None:
    """Run the body for one district, appending what it yields (or returns) to `events` as it goes."""
    log = _DistrictLog(context.log, layout.label(key))
    try:
        out = body(_DistrictContext(context, log), **layout.bound(key, resources))
        if inspect.isgenerator(out):
            for event in out:
                events.append(event)
        else:
            events.append(out)
    finally:
        log.flush()


def _op(context) -> dg.OpExecutionContext:
    """The op's context of an asset's or a check's step."""
    return getattr(context, "op_execution_context", context)


def failed_in_run(context) -> dict[str, str]:
    """The districts this run's steps could not sync so far, with their errors, as Dagster recorded them."""
    op = _op(context)
    records = op.instance.get_records_for_run(op.run.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION).records
    failed: dict[str, str] = {}
    for record in records:
        observation = record.event_log_entry.asset_observation
        if observation and FAILED_DISTRICT in observation.metadata and observation.partition:
            failed.setdefault(observation.partition, observation.metadata[FAILED_DISTRICT].value)
    return failed


def _record_failed(context, key: str, message: str) -> None:
    """Record in the run that district `key` failed in this step: an observation of the step's (first) asset."""
    op = _op(context)
    assets = sorted(op.selected_asset_keys or {check.asset_key for check in op.selected_asset_check_keys},
                    key=lambda asset_key: asset_key.to_user_string())
    op.log_event(dg.AssetObservation(asset_key=assets[0], partition=key, metadata={
        FAILED_DISTRICT: message, "step": op.get_step_execution_context().step.key}))


def last_step_of_run(context) -> bool:
    """Whether this step is the run's last: every other step of the run's execution plan (Dagster's snapshot of it)
    has ended (Dagster recorded its success, failure or skip). A step that no other step of the plan depends on also
    counts while another step is still running (an executor running steps side by side): failing it stops nothing
    else, and the run still fails naming the districts however its steps interleave."""
    op = _op(context)
    own = op.get_step_execution_context().step.key
    plan = op.instance.get_execution_plan_snapshot(op.run.execution_plan_snapshot_id)
    others = set(plan.step_keys_to_execute) - {own}
    records = op.instance.get_records_for_run(
        op.run.run_id, of_type={dg.DagsterEventType.STEP_START, *_ENDED}).records
    ended = {r.event_log_entry.step_key for r in records if r.event_log_entry.dagster_event_type in _ENDED}
    if others <= ended:
        return True
    started = {r.event_log_entry.step_key for r in records
               if r.event_log_entry.dagster_event_type == dg.DagsterEventType.STEP_START}
    upstream_of = {step.key: {handle.step_key for step_input in step.inputs
                              for handle in step_input.upstream_output_handles} for step in plan.steps}
    downstream = any(own in upstream_of.get(key, ()) for key in others)
    return not downstream and bool((others & started) - ended)


def _over_districts(layout, context, keys: list[str], body, resources) -> list:
    """Each district of a batched run in turn. A district that fails is recorded in the run and the others go on,
    in this step and the run's later ones (which skip it); the run's last step fails naming every failed district,
    after recording a materialization per district it synced."""
    failed = {key: message for key, message in failed_in_run(context).items() if key in keys}
    by_district: dict[str, list] = {}
    for key in keys:
        if key in failed:
            context.log.warning(f"district {layout.label(key)} skipped: it failed earlier in this run")
            continue
        events: list = []
        try:
            _events(layout, context, key, body, resources, events)
            by_district[key] = events
        except Exception as error:  # a district's failure must not stop the others in the run
            message = error.description if isinstance(error, dg.Failure) else f"{type(error).__name__}: {error}"
            failed[key] = message
            _record_failed(context, key, message)
            context.log.error(f"district {layout.label(key)} failed: {message}")
    if failed and (not by_district or last_step_of_run(context)):
        for key, events in by_district.items():
            for event in events:
                if isinstance(event, dg.MaterializeResult):
                    context.log_event(dg.AssetMaterialization(
                        asset_key=event.asset_key or context.asset_key, partition=key, metadata=event.metadata))
        raise dg.Failure(
            description=f"{len(failed)} of {len(keys)} districts failed: "
                        + "; ".join(f"{layout.label(key)}: {message}" for key, message in failed.items()),
            metadata={"failed_districts": list(failed), "synced_districts": list(by_district)})
    return _combined(context, by_district, list(failed))


def _combined(context, by_district: dict[str, list], failed: list[str]) -> list:
    """One MaterializeResult per asset, whose event for each district's partition carries that district's own
    metadata (row count, previews; a district that failed earlier in the run says so), and one check result per
    check with a table by district."""
    materialized: dict = {}
    checks: dict = {}
    for key, events in by_district.items():
        for event in events:
            if isinstance(event, dg.MaterializeResult):
                context.add_asset_metadata(dict(event.metadata or {}), asset_key=event.asset_key, partition_key=key)
                materialized.setdefault(event.asset_key, None)
            elif isinstance(event, dg.AssetCheckResult):
                checks.setdefault((event.asset_key, event.check_name), []).append((key, event))
    results: list = []
    for asset_key in materialized:
        for key in failed:  # Dagster records the whole range: the district's own event says it was not synced
            context.add_asset_metadata({"district_failed_in_this_run": FAILED_IN_RUN_NOTE}, asset_key=asset_key,
                                       partition_key=key)
        results.append(dg.MaterializeResult(asset_key=asset_key,
                                            metadata={"failed_districts": failed} if failed else None))
    for (asset_key, check_name), evaluated in checks.items():
        failing = [(key, result) for key, result in evaluated if not result.passed]
        severity = (dg.AssetCheckSeverity.ERROR if any(r.severity == dg.AssetCheckSeverity.ERROR for _, r in failing)
                    else dg.AssetCheckSeverity.WARN)
        rows = [{"district": key, "passed": r.passed, "description": r.description or ""} for key, r in evaluated]
        results.append(dg.AssetCheckResult(
            asset_key=asset_key, check_name=check_name, passed=not failing, severity=severity,
            description=("; ".join(f"{key}: {r.description or 'failed'}" for key, r in failing)
                         or f"passed in all {len(evaluated)} districts"),
            metadata={"districts": dg.MetadataValue.md(markdown_table(rows, len(rows))),
                      "failed_districts": [key for key, _ in failing]}))
    return results
