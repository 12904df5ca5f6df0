"""DuckLake maintenance, framework-free: each function does one of DuckLake's maintenance calls and returns what it
did as counts (for a Dagster job's metadata). Every sync commit adds a snapshot and small Parquet files (and rows of
fewer than 10 are inlined into the catalog); these keep the lake small and fast.

- `merge_adjacent_files`: rewrite a district's small data files into fewer (per district: it conflicts only with a
  sync of that district committing meanwhile, which then fails as `LakeConflictError` and is run again; schedule it
  when the district does not sync). `flush_inlined_data` first moves inlined rows into Parquet.
- `expire_snapshots`: forget the snapshots older than N days (lake-wide). Time travel reaches back only to the
  oldest snapshot kept; the files only they referenced become deletable.
- `cleanup_old_files`: delete the files expired snapshots and merges left, once they are older than N days.

A call that DuckLake refuses because a sync committed a conflicting change meanwhile raises LakeConflictError,
having changed nothing; the next scheduled run does it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from oneroster_pipeline.client.redaction import one_line

from . import lake
from .lake_settings import LakeSettings


@dataclass
class MaintenanceResult:
    """What one maintenance call did: `counts` for metadata, `details` (e.g. per table) for a preview."""

    action: str
    counts: dict[str, int] = field(default_factory=dict)
    details: list[dict] = field(default_factory=list)


def _call(settings: LakeSettings, sql: str, params: list | None = None) -> list[dict]:
    """The rows of `sql` on the lake (`$lake`: its name as a string, `$meta`: its catalog database), as dicts."""
    with lake.reader(settings) as con:
        alias = con.execute("SELECT current_database()").fetchall()[0][0]
        try:
            cursor = con.execute(sql.replace("$lake", f"'{alias}'").replace("$meta", f"__ducklake_metadata_{alias}"),
                                 params or [])
        except duckdb.Error as error:
            text = one_line(error)
            if "Transaction conflict" in text or "maximum retry count" in text:
                raise lake.LakeConflictError("(maintenance)", text) from None
            raise
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _tables(settings: LakeSettings, schema: str) -> list[str]:
    return [r["table_name"] for r in _call(
        settings, "SELECT table_name FROM duckdb_tables() WHERE database_name = $lake AND schema_name = ? ORDER BY 1",
        [schema])]


def flush_inlined_data(settings: LakeSettings, schema: str | None = None) -> MaintenanceResult:
    """Move the rows inlined in the catalog into Parquet files (all districts, or the schema `schema`)."""
    sql = "CALL ducklake_flush_inlined_data($lake" + (", schema_name => ?)" if schema else ")")
    rows = _call(settings, sql, [lake.district_schema(schema)] if schema else [])
    return MaintenanceResult("flush_inlined_data", {"tables_flushed": len(rows),
                                                    "rows_flushed": sum(r["rows_flushed"] for r in rows)}, rows)


def merge_adjacent_files(settings: LakeSettings, schema: str | None = None) -> MaintenanceResult:
    """Merge small adjacent data files of each table of the district `schema` (None: every table of the lake) into
    larger ones. Counts: tables merged, files read, files written."""
    if schema is None:
        rows = _call(settings, "CALL ducklake_merge_adjacent_files($lake)")
    else:
        schema = lake.district_schema(schema)
        rows = [row for table in _tables(settings, schema) for row in _call(
            settings, "CALL ducklake_merge_adjacent_files($lake, ?, schema => ?)", [table, schema])]
    return MaintenanceResult("merge_adjacent_files", {
        "tables_merged": len(rows), "files_merged": sum(r["files_processed"] for r in rows),
        "files_written": sum(r["files_created"] for r in rows)}, rows)


def expire_snapshots(settings: LakeSettings, older_than_days: float) -> MaintenanceResult:
    """Expire the lake's snapshots older than `older_than_days` days (the current snapshot is always kept).
    Counts: snapshots expired, snapshots kept."""
    if older_than_days < 0:
        raise ValueError(f"older_than_days must be 0 or more, got {older_than_days}")
    rows = _call(settings, "CALL ducklake_expire_snapshots($lake, older_than => now() - to_microseconds(?::BIGINT))",
                 [int(older_than_days * 86_400_000_000)])
    kept = _call(settings, "SELECT count(*) AS n FROM ducklake_snapshots($lake)")[0]["n"]
    return MaintenanceResult("expire_snapshots", {"snapshots_expired": len(rows), "snapshots_kept": kept},
                             [{"snapshot_id": r["snapshot_id"], "snapshot_time": str(r["snapshot_time"])}
                              for r in rows[:50]])


def cleanup_old_files(settings: LakeSettings, older_than_days: float = 0.0) -> MaintenanceResult:
    """Delete the data files no snapshot references any more (expired snapshots', merged files') that were
    scheduled for deletion more than `older_than_days` days ago (0: all of them). Counts: files deleted."""
    rows = _call(settings, "CALL ducklake_cleanup_old_files($lake, older_than => now() - to_microseconds(?::BIGINT))",
                 [int(older_than_days * 86_400_000_000)])
    return MaintenanceResult("cleanup_old_files", {"files_deleted": len(rows)}, rows[:50])


def lake_stats(settings: LakeSettings) -> dict[str, int]:
    """The lake's size in numbers (metadata beside the maintenance counts): snapshots, the current snapshot's data
    files and bytes, and files waiting for `cleanup_old_files`."""
    row = _call(settings, """
        SELECT (SELECT count(*) FROM ducklake_snapshots($lake)) AS snapshots,
               (SELECT count(*) FROM $meta.ducklake_data_file WHERE end_snapshot IS NULL) AS data_files,
               (SELECT coalesce(sum(file_size_bytes), 0) FROM $meta.ducklake_data_file WHERE end_snapshot IS NULL)
                   AS data_bytes,
               (SELECT count(*) FROM $meta.ducklake_files_scheduled_for_deletion) AS files_to_clean_up""")[0]
    return {name: int(value) for name, value in row.items()}
