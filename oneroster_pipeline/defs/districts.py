"""Many districts (`ONEROSTER_DISTRICTS_FILE`): the district partitions, which districts a step or a run covers, and
`per_district`, which runs an asset's or a check's body once per district with that district's resources.

Without the file every name here is inert (`DISTRICTS` is None, `per_district` returns the function unchanged) and
the code location is exactly the single-district one."""

# A district is a static partition (the file's `id`): adding one is editing the file and reloading the code location.
# Each district has its own DuckDB file, settings and policy (`District.env`: the file's values over the
# environment), so a step binds `oneroster`, `warehouse`, `sync_policy` and `alerts` to the district it works on.
# One district per run by default: a run's tags name the district and its provider host (the run queue limits runs
# per host, see dagster.yaml), and a district fails alone. ONEROSTER_DISTRICTS_PER_RUN=N lets a backfill sync N
# districts one after another in one run (Dagster's BackfillPolicy.multi_run): one process start per N districts;
# such a run has no per-district tags, and a district that fails makes its run fail after the others were synced.

import functools
import inspect
import os
from contextlib import nullcontext

import dagster as dg

from oneroster_pipeline.defs.resources import DISTRICTS, for_district
from oneroster_pipeline.defs.runs import markdown_table
from oneroster_pipeline.districts import DISTRICTS_FILE_VAR, DISTRICTS_PER_RUN_VAR, District
from oneroster_pipeline.warehouse.snapshots import publish_snapshot, snapshot_root

BY_ID = {district.id: district for district in DISTRICTS or ()}
DISTRICT_PARTITIONS = dg.StaticPartitionsDefinition([d.id for d in DISTRICTS]) if DISTRICTS else None
DISTRICT_DIMENSION = "district"  # the district's dimension in the provider-connection rebuild's partitions

DISTRICT_TAG = "oneroster/district"  # run tags of a one-district run (schedules, job backfills, the launchpad)
PROVIDER_HOST_TAG = "oneroster/provider_host"  # what dagster.yaml's per-host run limit counts


def _districts_per_run(env) -> int:
    raw = (env.get(DISTRICTS_PER_RUN_VAR) or "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{DISTRICTS_PER_RUN_VAR}: must be a whole number of at least 1, got {raw!r}")
    return int(raw)


DISTRICTS_PER_RUN = _districts_per_run(os.environ)
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(DISTRICTS_PER_RUN) if DISTRICTS else None


def district_tags(key: str) -> dict[str, str]:
    """The run tags naming district `key` and its provider host."""
    return tags_of(BY_ID[key])


def tags_of(district: District) -> dict[str, str]:
    """The run tags naming `district` and its provider host (what dagster.yaml's per-host limit counts)."""
    return {DISTRICT_TAG: district.id, PROVIDER_HOST_TAG: district.provider_host_in(os.environ)}


def job_partitioning() -> dict:
    """`define_asset_job` keyword arguments: with one district per run, a partitioned config whose runs carry
    `district_tags` (schedules, job backfills and the launchpad use it). Dagster refuses such a config with a
    multi-district backfill policy, so batched runs go without."""
    if not DISTRICTS or DISTRICTS_PER_RUN != 1:
        return {}
    return {"config": dg.PartitionedConfig(
        partitions_def=DISTRICT_PARTITIONS, run_config_for_partition_key_fn=lambda key: {},
        tags_for_partition_key_fn=district_tags)}


def publish_district_snapshot(warehouse, log, con=None) -> None:
    """After a district's sync applied: its final tables as Parquet snapshots for the cross-district view
    (`warehouse/snapshots.py`; ONEROSTER_SNAPSHOT_DIR), through `con` if the caller has the warehouse open (and
    nothing uncommitted on it). Nothing without a districts file."""
    if not warehouse.district_id:
        return
    root = snapshot_root(None)
    with nullcontext(con) if con is not None else warehouse.connect() as open_con:
        counts = publish_snapshot(open_con, warehouse.district_id, root)
    log.info(f"published the snapshot of district {warehouse.district_id} to {root}: "
             + ", ".join(f"{table} {rows}" for table, rows in counts.items()))


def _district_of(key: str) -> str:
    """The district of a partition key: the key itself, or its district dimension (`north|<connection>`)."""
    return key if key in BY_ID else key.split("|")[0]


def districts_of(context) -> list[str | None]:
    """The districts a step works on: `[None]` without a districts file, else the step's partition(s)."""
    if not DISTRICTS:
        return [None]
    if not (context.has_partition_key or context.has_partition_key_range):
        raise dg.Failure(description=(
            f"This code location syncs {len(DISTRICTS)} districts ({os.environ.get(DISTRICTS_FILE_VAR)}): "
            "pick one, e.g. --tags '{\"dagster/partition\": \"" + DISTRICTS[0].id + "\"}', or a backfill."))
    return [_district_of(key) for key in context.partition_keys]


def districts_of_run(run: dg.DagsterRun) -> list[str | None]:
    """The districts a run covers, from its tags (hooks and sensors): `[None]` without a districts file."""
    if not DISTRICTS:
        return [None]
    tags = run.tags
    key = tags.get(f"dagster/partition/{DISTRICT_DIMENSION}") or tags.get("dagster/partition")
    if key:
        return [_district_of(key)] if _district_of(key) in BY_ID else [None]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    ids = [district.id for district in DISTRICTS]
    if start in BY_ID and end in BY_ID:
        return ids[ids.index(start): ids.index(end) + 1]
    return [None]  # a run that names no district (e.g. launched without a partition): the environment's warehouse


def bound(key: str | None, resources: dict) -> dict:
    """`resources` (by parameter name) bound to district `key`; unchanged for None (no districts file)."""
    if key is None:
        return resources
    district = BY_ID[key]
    env = district.env(os.environ)
    env_key = frozenset(env.items())
    return {name: _bound_one(value, district, env, env_key) for name, value in resources.items()}


# district-bound resources already built in this process, by (resource type, district, its environment): a batched
# run binds every district at every step (~3 ms each time), and a bound resource depends on nothing else
_BOUND: dict[tuple, object] = {}


def _bound_one(resource, district: District, env: dict, env_key: frozenset):
    cache_key = (type(resource), district.id, env_key)
    if cache_key not in _BOUND:
        made = for_district(resource, district, env)
        if made is resource:  # not a district resource: nothing to keep
            return resource
        if len(_BOUND) > 4096:  # environments changing under a long-lived process (tests): start over
            _BOUND.clear()
        _BOUND[cache_key] = made
    return _BOUND[cache_key]


def per_district(body):
    """Run an asset's or a check's `body(context, **resources)` once per district of the step, each time with that
    district's resources. One district (the usual run): exactly the body's results. Several (a batched backfill):
    every district is synced; then one result per asset whose event for each district carries that district's own
    metadata, and one result per check with a table by district, or, when some district failed, a materialization
    per district that succeeded and a failure naming the ones that did not."""
    if not DISTRICTS:
        return body
    if inspect.isgeneratorfunction(body):
        @functools.wraps(body)
        def each_district(context, **resources):
            keys = districts_of(context)
            if len(keys) == 1:
                yield from body(context, **bound(keys[0], resources))
                return
            yield from _over_districts(context, keys, body, resources)
        return each_district

    @functools.wraps(body)
    def each_district_returning(context, **resources):
        keys = districts_of(context)
        if len(keys) == 1:
            return body(context, **bound(keys[0], resources))
        (result,) = _over_districts(context, keys, body, resources)
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


def _events(context, key, body, resources, events: list) -> None:
    """Run the body for one district, appending what it yields (or returns) to `events` as it goes."""
    log = _DistrictLog(context.log, BY_ID[key].label)
    try:
        out = body(_DistrictContext(context, log), **bound(key, resources))
        if inspect.isgenerator(out):
            for event in out:
                events.append(event)
        else:
            events.append(out)
    finally:
        log.flush()


FAILED_IN_RUN_NOTE = "failed earlier in this batched run: not synced (the run fails naming it)"

# districts that failed in a batched run, by run id: the run's later steps skip them, and its last step fails naming
# them (every step of a run executes in this one process: the jobs use the in-process executor)
_FAILED_IN_RUN: dict[str, dict[str, str]] = {}


def _last_step_of_run(context) -> bool:
    """Whether no step of this run is left to start after this one (in-process: steps run one after another)."""
    step_context = context.get_step_execution_context()
    planned = len(step_context.execution_plan.step_keys_to_execute)
    started = len(context.instance.all_logs(context.run.run_id, of_type=dg.DagsterEventType.STEP_START))
    return started >= planned


def _over_districts(context, keys: list[str], body, resources) -> list:
    """Each district of a batched run in turn. A district that fails is recorded and the others go on, in this
    step and the run's later ones (which skip it); the run's last step fails naming every failed district, after
    recording a materialization per district it synced."""
    failed = _FAILED_IN_RUN.get(context.run.run_id, {})  # kept only for a run where a district failed
    by_district: dict[str, list] = {}
    for key in keys:
        if key in failed:
            context.log.warning(f"district {BY_ID[key].label} skipped: it failed earlier in this run")
            continue
        events: list = []
        try:
            _events(context, key, body, resources, events)
            by_district[key] = events
        except Exception as error:  # a district's failure must not stop the others in the run
            message = error.description if isinstance(error, dg.Failure) else f"{type(error).__name__}: {error}"
            failed[key] = message
            _FAILED_IN_RUN[context.run.run_id] = failed
            context.log.error(f"district {BY_ID[key].label} failed: {message}")
    if failed and (not by_district or _last_step_of_run(context)):
        for key, events in by_district.items():
            for event in events:
                if isinstance(event, dg.MaterializeResult):
                    context.log_event(dg.AssetMaterialization(
                        asset_key=event.asset_key or context.asset_key, partition=key, metadata=event.metadata))
        _FAILED_IN_RUN.pop(context.run.run_id, None)
        raise dg.Failure(
            description=f"{len(failed)} of {len(keys)} districts failed: "
                        + "; ".join(f"{BY_ID[key].label}: {message}" for key, message in failed.items()),
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
