"""What every run shares: the run tags a person sets, how a run was started, its `sync_runs` row, and markdown
tables for metadata. Assets, checks, hooks and sensors import these from here (never from one another)."""

from datetime import datetime, timezone

from oneroster_pipeline.warehouse import store

OWNERS = ["team:data-engineering"]  # the owners every asset of this code location names

# run tags a person sets in the launchpad (or `dagster job execute --tags '{...}'`)
APPROVE_MASS_CHANGE_TAG = "oneroster/approve_mass_change"  # "true": apply a held org pull, or a held rebuild
APPROVE_HELD_DIFF_TAG = "oneroster/approve_held_diff"  # the held diff's hash: apply exactly that held student diff
SYNC_MODE_TAG = "oneroster/sync_mode"  # "full" or "delta": override the cadence for this run
APPROVE_SWITCH_TAG = "oneroster/approve_provider_switch"  # "true": apply a crosswalk its checks blocked
RUN_TAGS = (APPROVE_MASS_CHANGE_TAG, APPROVE_HELD_DIFF_TAG, SYNC_MODE_TAG, APPROVE_SWITCH_TAG)


def tag_is_true(tags, tag: str) -> bool:
    """Whether the run tag `tag` says "true" (any case, spaces ignored)."""
    return (tags.get(tag) or "").strip().lower() == "true"


def run_trigger(tags) -> str:
    """How the run was started: schedule, sensor, backfill or manual (launchpad, CLI, API)."""
    if tags.get("dagster/schedule_name"):
        return "schedule"
    if tags.get("dagster/backfill"):
        return "backfill"
    if tags.get("dagster/sensor_name"):
        return "sensor"
    return "manual"


def record_run(context, con, **columns) -> None:
    """Fill this run's `sync_runs` row with what this step knows (job, trigger, timing are always set)."""
    write_run_row(con, context.run, _run_started(context), datetime.now(timezone.utc), **columns)


_STARTED: dict[str, datetime] = {}  # run id -> its start: read from the instance once per run and process


def _run_started(context) -> datetime | None:
    """When this run started (None before the instance records it): a batched run asks once, not per district."""
    run_id = context.run.run_id
    if run_id not in _STARTED:
        record = context.instance.get_run_record_by_id(run_id)
        if not (record and record.start_time):
            return None
        _STARTED[run_id] = datetime.fromtimestamp(record.start_time, timezone.utc)
    return _STARTED[run_id]


def write_run_row(con, run, started: datetime | None, finished: datetime, **columns) -> None:
    """Upsert the run's `sync_runs` row: job, trigger, start, end and duration, plus `columns`."""
    store.upsert_sync_run(
        con, run.run_id, job_name=run.job_name, trigger=run_trigger(run.tags), started_at=started,
        finished_at=finished, duration_seconds=(finished - started).total_seconds() if started else None,
        **columns)


def markdown_table(rows: list[dict], limit: int = 10) -> str:
    """A small markdown preview of the first rows (values escaped for table cells)."""
    if not rows:
        return "_no rows_"
    columns = list(rows[0])

    def cell(value) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows[:limit]]
    return "\n".join(lines)
