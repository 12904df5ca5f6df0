"""Cross-district snapshots: each district publishes its final tables as Parquet after a successful sync, and one
read-only, in-memory DuckDB query sees every district at once. Framework-free (no dagster import).

Layout under the snapshot root (`ONEROSTER_SNAPSHOT_DIR`, default `data/districts/snapshots`)::

    <root>/<table>/district_id=<id>/data.parquet

The cross-district views read these files only, never a district's DuckDB file, so a query never waits on a
running sync (DuckDB's single-writer lock) and a sync never waits on a query. Each `data.parquet` is written under a
temporary name in its own folder and moved into place with `os.replace` (atomic on POSIX): a reader sees the old
file or the new one, never half of one. Temporary files are named `.tmp-<random>.parquet`, which the views' glob
(`district_id=*/data.parquet`) never matches, so one left behind by a crash is never read; the district's next
publish removes it once it is older than STALE_TEMP_SECONDS.

Within a district, every table is read in one DuckDB transaction (the tables agree with each other), every file is
written before any is replaced, and `buildings` is replaced before `students` (building ids are never reused, so a
reader never sees a student whose building is missing). The tables are not replaced as one: a query running during
the few milliseconds of the replaces may see one table of a district a publish newer than another.

Command line (prints the result as a table)::

    python -m oneroster_pipeline.warehouse.snapshots [--root DIR] [--csv] "SELECT ... FROM students ..."
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb

from . import duckdb_files, store
from .sql_text import ident, sql_string

SNAPSHOT_DIR_VAR = "ONEROSTER_SNAPSHOT_DIR"
DEFAULT_SNAPSHOT_DIR = "data/districts/snapshots"
# the final tables a person queries across districts (README "What lands in DuckDB"), in publish order: buildings
# before the tables that reference building ids
SNAPSHOT_TABLES = ("oneroster_orgs", "buildings", "students", "student_buildings", "ignored_students")
PARTITION = "district_id"
DATA_FILE = "data.parquet"
TEMP_PREFIX = ".tmp-"  # never matches the views' glob: a crash's leftover is never read
STALE_TEMP_SECONDS = 3600.0  # a temp file this old is a crash's leftover, not another publish in progress
DISTRICT_ID = re.compile(r"[a-z0-9_-]+")  # the districts file's id: a folder name and a partition value as is


class SnapshotError(ValueError):
    """A district id or a table that cannot be published or read as a snapshot."""


def snapshot_root(root: str | Path | None = None) -> Path:
    """`root` if given, else ONEROSTER_SNAPSHOT_DIR, else DEFAULT_SNAPSHOT_DIR."""
    return Path(root or os.environ.get(SNAPSHOT_DIR_VAR, "").strip() or DEFAULT_SNAPSHOT_DIR)


def snapshot_file(root: str | Path, table: str, district_id: str) -> Path:
    """Where `district_id`'s snapshot of `table` lives."""
    return Path(root) / table / f"{PARTITION}={_checked_id(district_id)}" / DATA_FILE


def publish_snapshot(con: duckdb.DuckDBPyConnection, district_id: str, root: str | Path,
                     tables: Sequence[str] = SNAPSHOT_TABLES) -> dict[str, int]:
    """Write the district's `tables` as Parquet under `root` and move each into place atomically (replacing the
    previous snapshot, never appending to it). `con` is the district's DuckDB connection (e.g. the sync's own, after
    its last commit: what is committed is what is published; a table that does not exist yet fails). Returns the rows
    written per table. If any table fails, no file is replaced and the temporary files are removed."""
    district_id = _checked_id(district_id)
    _check_tables(tables)
    written: list[tuple[Path, Path]] = []  # (temporary file, final file)
    counts: dict[str, int] = {}
    cursor = duckdb_files.cursor(con)  # own transaction: one consistent read of every table, whatever `con` does
    try:
        cursor.execute("BEGIN TRANSACTION")
        for table in tables:
            final = snapshot_file(root, table, district_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(final.parent)
            temp = final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}.parquet"
            written.append((temp, final))
            counts[table] = cursor.execute(
                f"COPY (SELECT * FROM {table}) TO {sql_string(temp)} (FORMAT parquet)").fetchall()[0][0]
        cursor.execute("COMMIT")
        for temp, final in written:
            os.replace(temp, final)
    except BaseException:
        for temp, _ in written:
            temp.unlink(missing_ok=True)
        raise
    finally:
        cursor.close()
    return counts


def remove_snapshot(district_id: str, root: str | Path, tables: Sequence[str] = SNAPSHOT_TABLES) -> list[str]:
    """Remove a district's snapshots (a district taken out of the districts file): it leaves every cross-district
    view. Returns the tables it had a snapshot of. A query listing the files at that very moment may fail once with
    "file not found"; run it again."""
    district_id = _checked_id(district_id)
    removed = []
    for table in tables:
        final = snapshot_file(root, table, district_id)
        if final.exists():
            final.unlink()
            removed.append(table)
        if final.parent.is_dir():
            for temp in final.parent.glob(f"{TEMP_PREFIX}*"):
                temp.unlink(missing_ok=True)
            try:
                final.parent.rmdir()
            except OSError:
                pass  # something else lives there: left as it is, the views read only data.parquet
    return removed


def published_districts(root: str | Path, table: str = "students") -> list[str]:
    """The districts with a snapshot of `table`, sorted."""
    folder = Path(root) / table
    return sorted(p.parent.name.split("=", 1)[1] for p in folder.glob(f"{PARTITION}=*/{DATA_FILE}"))


def open_cross_district(root: str | Path | None = None,
                        tables: Sequence[str] = SNAPSHOT_TABLES) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table over every district's snapshot: the table's columns
    and `district_id` (VARCHAR). It reads the Parquet files only; nothing locks a district's DuckDB file.

    The views list the files at each query, so a district published later shows up in the next query. A table no
    district has published yet (when the connection is opened) is an empty view with the same columns and types;
    open a new connection to see it once published. `root`: see `snapshot_root`."""
    _check_tables(tables)
    root = snapshot_root(root).resolve()
    con = duckdb.connect(":memory:")
    columns = _contract_columns(tables)
    for table in tables:
        if any((root / table).glob(f"{PARTITION}=*/{DATA_FILE}")):
            pattern = root / table / f"{PARTITION}=*" / DATA_FILE
            source = (f"SELECT * FROM read_parquet({sql_string(pattern)}, hive_partitioning = true, "
                      f"union_by_name = true, hive_types = {{'{PARTITION}': VARCHAR}})")
        else:
            typed = ", ".join(f"NULL::{kind} AS {ident(name)}" for name, kind in [*columns[table],
                                                                                 (PARTITION, "VARCHAR")])
            source = f"SELECT {typed} WHERE false"
        con.execute(f"CREATE VIEW {ident(table)} AS {source}")
    return con


def _contract_columns(tables: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """Each table's (column, type) as `store` creates it, from a scratch in-memory database."""
    with duckdb.connect(":memory:") as scratch:
        found = {}
        for table in tables:
            scratch.execute(store.TABLES_DDL[table])
            found[table] = [(row[0], row[1]) for row in scratch.execute(f"DESCRIBE {table}").fetchall()]
        return found


def _remove_stale_temps(folder: Path) -> None:
    cutoff = time.time() - STALE_TEMP_SECONDS
    for temp in folder.glob(f"{TEMP_PREFIX}*"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
        except FileNotFoundError:
            pass


def _checked_id(district_id: str) -> str:
    if not isinstance(district_id, str) or not DISTRICT_ID.fullmatch(district_id):
        raise SnapshotError(f"district id {district_id!r} is not valid: use lower-case letters, digits, '_' and '-'")
    return district_id


def _check_tables(tables: Iterable[str]) -> None:
    unknown = [t for t in tables if t not in store.TABLES_DDL or t == "student_sourced_ids"]
    if unknown:
        raise SnapshotError(f"not a table of the store: {', '.join(unknown)}")


SUMMARY_SQL = " UNION ALL ".join(
    f"SELECT '{t}' AS \"table\", district_id, count(*) AS \"rows\" FROM {t} GROUP BY district_id"
    for t in SNAPSHOT_TABLES) + " ORDER BY district_id, \"table\""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m oneroster_pipeline.warehouse.snapshots",
        description="Run one SQL query over every district's published snapshot. Views: "
                    f"{', '.join(SNAPSHOT_TABLES)}, each with a district_id column.")
    parser.add_argument("sql", nargs="?", default=SUMMARY_SQL,
                        help="the query (default: rows per table and district)")
    parser.add_argument("--root", default=None,
                        help=f"the snapshot folder (default: ${SNAPSHOT_DIR_VAR}, else {DEFAULT_SNAPSHOT_DIR})")
    parser.add_argument("--csv", action="store_true", help="print CSV with a header instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = snapshot_root(args.root)
    if not root.is_dir():
        print(f"note: no snapshot folder at {root} yet (a district publishes after a successful sync); "
              "every view is empty", file=sys.stderr)
    with open_cross_district(root) as con:
        try:
            relation = con.sql(args.sql)
            if relation is None:  # a statement without a result
                return 0
            if args.csv:
                writer = csv.writer(sys.stdout, lineterminator="\n")
                writer.writerow(relation.columns)
                writer.writerows(relation.fetchall())
            else:
                relation.show(max_rows=10_000, max_width=10_000)
        except duckdb.Error as error:
            print(f"query failed: {str(error).splitlines()[0]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
