"""A step over several districts (a batched backfill run, ONEROSTER_DISTRICTS_PER_RUN > 1): the asset's or check's
own body run once per district, each time with that district's resources (`DistrictLayout.bound`). A district that
fails does not stop the others, in its step or in the run's later ones (which skip it); the run's last step fails
naming every failed district, after recording a materialization per district it synced.
"""

from __future__ import annotations

import functools
import inspect

import dagster as dg

from oneroster_pipeline.defs.runs import markdown_table

FAILED_IN_RUN_NOTE = "failed earlier in this batched run: not synced (the run fails naming it)"


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


# districts that failed in a batched run, by run id: the run's later steps skip them, and its last step fails naming
# them (every step of a run executes in this one process: the jobs use the in-process executor)
_FAILED_IN_RUN: dict[str, dict[str, str]] = {}


def _last_step_of_run(context) -> bool:
    """Whether no step of this run is left to start after this one (in-process: steps run one after another)."""
    step_context = context.get_step_execution_context()
    planned = len(step_context.execution_plan.step_keys_to_execute)
    started = len(context.instance.all_logs(context.run.run_id, of_type=dg.DagsterEventType.STEP_START))
    return started >= planned


def _over_districts(layout, context, keys: list[str], body, resources) -> list:
    """Each district of a batched run in turn. A district that fails is recorded and the others go on,
    in this step and the run's later ones (which skip it); the run's last step fails naming every failed district,
    after recording a materialization per district it synced."""
    failed = _FAILED_IN_RUN.get(context.run.run_id, {})  # kept only for a run where a district failed
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
            _FAILED_IN_RUN[context.run.run_id] = failed
            context.log.error(f"district {layout.label(key)} failed: {message}")
    if failed and (not by_district or _last_step_of_run(context)):
        for key, events in by_district.items():
            for event in events:
                if isinstance(event, dg.MaterializeResult):
                    context.log_event(dg.AssetMaterialization(
                        asset_key=event.asset_key or context.asset_key, partition=key, metadata=event.metadata))
        _FAILED_IN_RUN.pop(context.run.run_id, None)
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
