"""Lake maintenance as Dagster: the `lake_maintenance` job (one op, `maintain_lake`) and its weekly schedule, built only
when a district writes a lake (ONEROSTER_WAREHOUSE=ducklake). The op runs `warehouse/lake_maintenance.py`'s calls on
every lake of the configuration, in order: flush inlined rows into Parquet, merge adjacent small files, expire the
snapshots older than ONEROSTER_DUCKLAKE_SNAPSHOT_DAYS (default 30: time travel reaches back that far) and delete the
files nothing references any more. Their counts, and the lake's size before and after, are the op's metadata.

A call that a sync committing at the same moment makes DuckLake refuse (`LakeConflictError`) changes nothing: it
is logged, counted as `refused`, and the next week's run does it (the sync is never the one that fails)."""


from collections import Counter
from typing import Optional

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.warehouse import lake_maintenance as maintenance
from oneroster_pipeline.warehouse.lake import LakeConflictError
from oneroster_pipeline.warehouse.lake_settings import LakeSettings, lakes_of, snapshot_days_of

JOB = "lake_maintenance"
SCHEDULE = "lake_maintenance_weekly"
CRON = "0 3 * * 0"  # Sundays 03:00 in ONEROSTER_TIMEZONE: outside the daily syncs' usual hours


class LakeMaintenanceConfig(dg.Config):
    """The run's choices (the launchpad): how old a snapshot must be to expire (default: the setting) and how long
    an unreferenced file is kept before it is deleted (a reader of an expired snapshot may still read it)."""

    snapshot_days: Optional[float] = None  # None: ONEROSTER_DUCKLAKE_SNAPSHOT_DAYS (default 30)
    cleanup_after_days: float = 1.0


def lakes(layout: DistrictLayout) -> list[LakeSettings]:
    """The lakes `layout`'s districts (or the one district's environment) write: [] when none is a lake."""
    config = layout.config
    return lakes_of([config.district_env(d) for d in layout.districts] if layout.districts else [config.env])


def maintain(settings: LakeSettings, snapshot_days: float, cleanup_after_days: float, log) -> dict[str, int]:
    """The four calls on one lake; their counts (and `refused`: calls DuckLake refused for a concurrent commit)."""
    counts: Counter = Counter()
    calls = (lambda: maintenance.flush_inlined_data(settings), lambda: maintenance.merge_adjacent_files(settings),
             lambda: maintenance.expire_snapshots(settings, snapshot_days),
             lambda: maintenance.cleanup_old_files(settings, cleanup_after_days))
    for call in calls:
        try:
            result = call()
        except LakeConflictError as error:
            log.warning(f"{settings.describe()}: refused, a sync committed meanwhile (next run does it): {error}")
            counts["refused"] += 1
            continue
        counts.update(result.counts)
        log.info(f"{result.action}: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
    return dict(counts)


def build(layout: DistrictLayout) -> dg.Definitions:
    """The job and its schedule when a district writes a lake; nothing otherwise."""
    found = lakes(layout)
    if not found:
        return dg.Definitions()
    days_setting = snapshot_days_of(layout.config.env)

    @dg.op(name="maintain_lake", tags={"kind": "ducklake"},
           description="Flush inlined rows, merge small files, expire old snapshots, delete unreferenced files.")
    def maintain_lake(context: dg.OpExecutionContext, config: LakeMaintenanceConfig) -> None:
        days = days_setting if config.snapshot_days is None else config.snapshot_days
        metadata: dict = {"lakes": len(found), "snapshot_days": days, "cleanup_after_days": config.cleanup_after_days}
        totals: Counter = Counter()
        for number, settings in enumerate(found, 1):
            context.log.info(f"lake {number} of {len(found)}: {settings.describe()}")
            before = maintenance.lake_stats(settings)
            totals.update(maintain(settings, days, config.cleanup_after_days, context.log))
            after = maintenance.lake_stats(settings)
            totals.update({f"{name}_before": value for name, value in before.items()})
            totals.update({f"{name}_after": value for name, value in after.items()})
        metadata.update(sorted(totals.items()))
        metadata["refused"] = totals.get("refused", 0)
        context.add_output_metadata(metadata)

    @dg.job(name=JOB, executor_def=dg.in_process_executor, description="DuckLake maintenance over every lake the districts write (ONEROSTER_WAREHOUSE=ducklake).")
    def lake_maintenance_job():
        maintain_lake()

    schedule = dg.ScheduleDefinition(
        name=SCHEDULE, job=lake_maintenance_job, cron_schedule=CRON,
        execution_timezone=(layout.config.env.get("ONEROSTER_TIMEZONE") or "UTC").strip() or "UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Weekly lake maintenance (Sundays 03:00): keeps the lake's files few and its snapshots bounded.")
    return dg.Definitions(jobs=[lake_maintenance_job], schedules=[schedule])
