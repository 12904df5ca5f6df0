"""The DuckDB store: table definitions, Parquet staging and atomic apply. Framework-free (no dagster import)."""

# Every table name here is a contract: scripts and dashboards query them. Pulls are staged to Parquet outside the
# database (the write lock is held only while applying), then applied in one transaction: a failed run changes nothing.

from __future__ import annotations

import contextlib
import functools
import gc
import queue
import shutil
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Self

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import duckdb_files
from .duckdb_files import PATH_VAR, DuckDBPathError  # noqa: F401 (store's names since the start)

DEFAULT_DUCKDB_PATH = "data/oneroster.duckdb"  # ONEROSTER_DUCKDB_PATH when unset
MEMORY_LIMIT_VAR = "ONEROSTER_DUCKDB_MEMORY_LIMIT"
# DuckDB's default is 80% of RAM; a sync spills joins beyond this (duckdb_files). Measured: benchmarks/README.md
DEFAULT_MEMORY_LIMIT = "128MB"
BEFORE_COMMIT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # con -> check(con) run by `transaction`
COMMITTED: weakref.WeakSet = weakref.WeakSet()  # connections a `transaction` committed on (errors after it say so)
KEYED_INSERTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # con -> keyed tables inserted into since BEGIN


class MemoryLimitError(RuntimeError):
    """DuckDB needed more than ONEROSTER_DUCKDB_MEMORY_LIMIT; the failed statement's transaction rolled back."""


# a write connection's wait for another process's lock (runs queue in dagster.yaml's pool: longer is a notebook, a CLI)
LOCK_WAIT_SECONDS = 5.0

TABLES_DDL = {
    "oneroster_orgs": """
        CREATE TABLE IF NOT EXISTS oneroster_orgs (
            sourced_id VARCHAR NOT NULL, status VARCHAR, date_last_modified TIMESTAMPTZ, name VARCHAR,
            type VARCHAR, identifier VARCHAR, parent_sourced_id VARCHAR, legacy_sourced_id VARCHAR,
            provider VARCHAR NOT NULL, fetched_at TIMESTAMPTZ NOT NULL)""",
    "oneroster_users": """
        CREATE TABLE IF NOT EXISTS oneroster_users (
            sourced_id VARCHAR NOT NULL, status VARCHAR, date_last_modified TIMESTAMPTZ, username VARCHAR,
            given_name VARCHAR, family_name VARCHAR, middle_name VARCHAR, email VARCHAR, identifier VARCHAR,
            enabled_user BOOLEAN, roles VARCHAR[], org_sourced_ids VARCHAR[], primary_org_sourced_id VARCHAR,
            grades VARCHAR[], legacy_sourced_id VARCHAR,
            provider VARCHAR NOT NULL, fetched_at TIMESTAMPTZ NOT NULL, user_master_identifier VARCHAR);
        ALTER TABLE oneroster_users ADD COLUMN IF NOT EXISTS user_master_identifier VARCHAR""",
    "buildings": """
        CREATE TABLE IF NOT EXISTS buildings (
            building_id BIGINT NOT NULL, name VARCHAR, building_sis VARCHAR NOT NULL,
            status VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
            deactivated_at TIMESTAMPTZ, origin VARCHAR NOT NULL)""",
    "students": """
        CREATE TABLE IF NOT EXISTS students (
            student_id BIGINT NOT NULL, sourced_id VARCHAR NOT NULL, building_id BIGINT NOT NULL,
            building_sis VARCHAR NOT NULL, given_name VARCHAR, family_name VARCHAR, middle_name VARCHAR,
            username VARCHAR, email VARCHAR, identifier VARCHAR, grade VARCHAR, enabled_user BOOLEAN,
            status VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
            deactivated_at TIMESTAMPTZ)""",
    "student_buildings": """
        CREATE TABLE IF NOT EXISTS student_buildings (
            student_id BIGINT NOT NULL, sourced_id VARCHAR NOT NULL, building_id BIGINT NOT NULL,
            building_sis VARCHAR NOT NULL, is_primary BOOLEAN NOT NULL, provider_position INTEGER NOT NULL)""",
    "ignored_students": """
        CREATE TABLE IF NOT EXISTS ignored_students (
            sourced_id VARCHAR NOT NULL, given_name VARCHAR, family_name VARCHAR, org_sourced_ids VARCHAR[],
            reason VARCHAR NOT NULL, detail VARCHAR, recorded_at TIMESTAMPTZ NOT NULL)""",
    "pull_reports": """
        CREATE TABLE IF NOT EXISTS pull_reports (
            run_id VARCHAR, collection VARCHAR NOT NULL, provider VARCHAR NOT NULL, endpoint VARCHAR,
            mode VARCHAR NOT NULL, modified_since TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL,
            reported_total BIGINT, received BIGINT NOT NULL, kept BIGINT NOT NULL, duplicates BIGINT NOT NULL,
            rejected BIGINT NOT NULL, skipped BIGINT NOT NULL, pages BIGINT, complete BOOLEAN NOT NULL, incomplete_reason VARCHAR,
            fetched_at TIMESTAMPTZ NOT NULL, rejected_unidentified BIGINT, rejected_kept BIGINT,
            received_by_file VARCHAR, rejected_by_file VARCHAR, revision VARCHAR, person_key VARCHAR);
        -- columns added after the first release (a database created before them gains them here)
        ALTER TABLE pull_reports ADD COLUMN IF NOT EXISTS rejected_unidentified BIGINT;
        ALTER TABLE pull_reports ADD COLUMN IF NOT EXISTS rejected_kept BIGINT;
        ALTER TABLE pull_reports ADD COLUMN IF NOT EXISTS received_by_file VARCHAR;
        ALTER TABLE pull_reports ADD COLUMN IF NOT EXISTS rejected_by_file VARCHAR;
        ALTER TABLE pull_reports ADD COLUMN IF NOT EXISTS revision VARCHAR;
        ALTER TABLE pull_reports ADD COLUMN IF NOT EXISTS person_key VARCHAR""",
    "student_changes": """
        CREATE TABLE IF NOT EXISTS student_changes (
            run_id VARCHAR, changed_at TIMESTAMPTZ NOT NULL, student_id BIGINT NOT NULL,
            sourced_id VARCHAR NOT NULL, change VARCHAR NOT NULL, field VARCHAR, old_value VARCHAR,
            new_value VARCHAR)""",
    "rejected_records": """
        CREATE TABLE IF NOT EXISTS rejected_records (
            run_id VARCHAR, collection VARCHAR NOT NULL, sourced_id VARCHAR, location VARCHAR, field VARCHAR,
            reason VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL, kind VARCHAR DEFAULT 'rejected');
        -- kind: 'rejected' (record left out) | 'value_dropped' (field set NULL, record kept); older rows: rejected
        ALTER TABLE rejected_records ADD COLUMN IF NOT EXISTS kind VARCHAR DEFAULT 'rejected'""",
    "sync_alerts": """
        CREATE TABLE IF NOT EXISTS sync_alerts (
            alerted_at TIMESTAMPTZ NOT NULL, job_name VARCHAR, run_id VARCHAR, kind VARCHAR NOT NULL,
            subject VARCHAR, message VARCHAR NOT NULL)""",
    "sync_diffs": """
        CREATE TABLE IF NOT EXISTS sync_diffs (
            run_id VARCHAR, computed_at TIMESTAMPTZ NOT NULL, disposition VARCHAR NOT NULL, student_id BIGINT,
            sourced_id VARCHAR NOT NULL, building_sis VARCHAR, change VARCHAR NOT NULL, field VARCHAR,
            old_value VARCHAR, new_value VARCHAR, reason VARCHAR)""",
    "sync_holds": """
        CREATE TABLE IF NOT EXISTS sync_holds (
            diff_hash VARCHAR NOT NULL, run_id VARCHAR, held_at TIMESTAMPTZ NOT NULL, scope VARCHAR NOT NULL,
            held_changes BIGINT NOT NULL, reasons VARCHAR NOT NULL, plan VARCHAR, approved BOOLEAN NOT NULL)""",
    "sync_runs": """
        CREATE TABLE IF NOT EXISTS sync_runs (
            run_id VARCHAR PRIMARY KEY, job_name VARCHAR, trigger VARCHAR, connection VARCHAR,
            started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, duration_seconds DOUBLE,
            orgs_fetched BIGINT, orgs_complete BOOLEAN, students_fetched BIGINT, students_complete BOOLEAN,
            pull_mode VARCHAR, incomplete_reason VARCHAR, buildings_created BIGINT, students_created BIGINT,
            students_updated BIGINT, students_deactivated BIGINT, students_reactivated BIGINT,
            students_newly_ignored BIGINT, held_changes BIGINT, diff_hash VARCHAR, outcome VARCHAR,
            message VARCHAR)""",
    # provider change (provider_switch/): connections, the crosswalk, the staged new pull and the id history
    "provider_connections": """
        CREATE TABLE IF NOT EXISTS provider_connections (
            connection_id VARCHAR PRIMARY KEY, label VARCHAR NOT NULL, provider VARCHAR NOT NULL, base_url VARCHAR,
            version VARCHAR, status VARCHAR NOT NULL, first_seen_at TIMESTAMPTZ NOT NULL,
            activated_at TIMESTAMPTZ, retired_at TIMESTAMPTZ)""",
    "provider_switches": """
        CREATE TABLE IF NOT EXISTS provider_switches (
            switch_id VARCHAR PRIMARY KEY, built_at TIMESTAMPTZ NOT NULL, old_connection_id VARCHAR NOT NULL,
            new_connection_id VARCHAR NOT NULL, new_label VARCHAR NOT NULL, status VARCHAR NOT NULL,
            reasons VARCHAR, orgs_pulled BIGINT, students_pulled BIGINT, pulled_at TIMESTAMPTZ,
            pull_complete BOOLEAN, buildings_matched BIGINT, buildings_ambiguous BIGINT,
            buildings_unmatched BIGINT, schools_unmatched BIGINT, students_matched BIGINT,
            students_ambiguous BIGINT, students_unmatched_old BIGINT, students_unmatched_new BIGINT,
            applied_at TIMESTAMPTZ, applied_run_id VARCHAR)""",
    "id_crosswalk": """
        CREATE TABLE IF NOT EXISTS id_crosswalk (
            switch_id VARCHAR NOT NULL, entity VARCHAR NOT NULL, old_connection_id VARCHAR NOT NULL,
            new_connection_id VARCHAR NOT NULL, old_id VARCHAR, new_id VARCHAR, internal_id BIGINT,
            rule VARCHAR, status VARCHAR NOT NULL, detail VARCHAR, built_at TIMESTAMPTZ NOT NULL)""",
    "id_history": """
        CREATE TABLE IF NOT EXISTS id_history (
            switch_id VARCHAR NOT NULL, entity VARCHAR NOT NULL, internal_id BIGINT, old_id VARCHAR NOT NULL,
            new_id VARCHAR NOT NULL, rule VARCHAR, old_connection_id VARCHAR NOT NULL,
            new_connection_id VARCHAR NOT NULL, changed_at TIMESTAMPTZ NOT NULL)""",
    "switch_orgs": """
        CREATE TABLE IF NOT EXISTS switch_orgs (
            switch_id VARCHAR NOT NULL, sourced_id VARCHAR NOT NULL, status VARCHAR,
            date_last_modified TIMESTAMPTZ, name VARCHAR, type VARCHAR, identifier VARCHAR,
            parent_sourced_id VARCHAR, legacy_sourced_id VARCHAR, provider VARCHAR NOT NULL,
            fetched_at TIMESTAMPTZ NOT NULL)""",
    "switch_users": """
        CREATE TABLE IF NOT EXISTS switch_users (
            switch_id VARCHAR NOT NULL, sourced_id VARCHAR NOT NULL, status VARCHAR,
            date_last_modified TIMESTAMPTZ, username VARCHAR, given_name VARCHAR, family_name VARCHAR,
            middle_name VARCHAR, email VARCHAR, identifier VARCHAR, enabled_user BOOLEAN, roles VARCHAR[],
            org_sourced_ids VARCHAR[], primary_org_sourced_id VARCHAR, grades VARCHAR[], legacy_sourced_id VARCHAR,
            provider VARCHAR NOT NULL, fetched_at TIMESTAMPTZ NOT NULL, user_master_identifier VARCHAR);
        ALTER TABLE switch_users ADD COLUMN IF NOT EXISTS user_master_identifier VARCHAR""",
    # a view: every sourcedId a student has had (the current one, and those a provider switch replaced)
    "student_sourced_ids": """
        CREATE VIEW IF NOT EXISTS student_sourced_ids AS
        SELECT student_id, sourced_id, true AS is_current, NULL::VARCHAR AS replaced_by_switch,
               NULL::TIMESTAMPTZ AS replaced_at
        FROM students
        UNION ALL
        SELECT internal_id, old_id, false, switch_id, changed_at
        FROM id_history WHERE entity = 'student' AND internal_id IS NOT NULL""",
}


def limit_memory(con: duckdb.DuckDBPyConnection, limit: str | None = DEFAULT_MEMORY_LIMIT) -> None:
    """Cap DuckDB's buffer memory at `limit` (ONEROSTER_DUCKDB_MEMORY_LIMIT's value, e.g. 512MB; empty: 128MB)."""
    limit = (limit or "").strip() or DEFAULT_MEMORY_LIMIT
    try:
        con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
    except duckdb.Error as error:
        raise ValueError(f"{MEMORY_LIMIT_VAR}={limit!r} is not a memory size DuckDB accepts "
                         f"(e.g. 256MB, 2GB): {str(error).splitlines()[0]}") from None


@contextmanager
def prepared(con: duckdb.DuckDBPyConnection, memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
             ensure: bool = True, path: str | Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Use a fresh connection: memory capped at `memory_limit` (see `limit_memory`), every table created (unless
    `ensure` is False: the caller did); closed at the end, whatever happens. Running out of the memory cap becomes a
    MemoryLimitError that says which variable to raise; a failure to write the file at `path` (the disk is full)
    a WarehouseWriteError naming it."""
    try:
        limit_memory(con, memory_limit)
        if ensure:
            ensure_schema(con)
        yield con
    except duckdb.Error as error:  # a full disk first: a spill that finds no space fails as "out of memory" too
        failure = duckdb_files.write_failure(error, path) if path is not None else None
        if failure is not None:
            raise failure from None  # its message quotes DuckDB's
        if not isinstance(error, duckdb.OutOfMemoryException):
            raise
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        kept = "what it committed before stays (sync_runs says)" if con in COMMITTED else "the tables are as they were"
        raise MemoryLimitError(f"DuckDB ran out of its memory limit ({limit}): raise {MEMORY_LIMIT_VAR} (e.g. "
                               f"512MB); {kept}. {str(error).splitlines()[0]}") from error
    finally:
        con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and column that does not exist yet (idempotent). One catalog query first (most find
    everything there; the DDL statements, or `duckdb_columns()`, cost more than attaching the file does)."""
    present = set(con.execute(
        "SELECT table_name, column_count FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' UNION ALL SELECT view_name, NULL FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = 'main'").fetchall())
    if not _schema_shape() <= present:
        with transaction(con):  # one commit for every table (a new file: ~20 statements)
            for ddl in TABLES_DDL.values():
                con.execute(ddl)


@functools.cache
def _schema_shape() -> frozenset[tuple[str, int | None]]:
    """(table, column count) and (view, None) for what TABLES_DDL creates, read off a scratch in-memory database
    once per process."""
    with duckdb.connect(":memory:") as scratch:
        for ddl in TABLES_DDL.values():
            scratch.execute(ddl)
        return frozenset(scratch.execute(
            "SELECT table_name, column_count FROM duckdb_tables() UNION ALL "
            "SELECT view_name, NULL FROM duckdb_views() WHERE NOT internal").fetchall())


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One all-or-nothing transaction: on any exception every change made inside is rolled back."""
    con.execute("BEGIN TRANSACTION")
    KEYED_INSERTS.pop(con, None)
    try:
        yield con
        if BEFORE_COMMIT and con in BEFORE_COMMIT:  # a DuckLake district's key checks and writer guard (lake.py)
            BEFORE_COMMIT[con](con)
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed write may have ended the transaction: the error is raised
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")  # a COMMIT that fails (the disk is full) has rolled back
    COMMITTED.add(con)


@contextmanager
def connect(path: str | Path, lock_wait_seconds: float | None = None,
            memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
            config: dict | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived write connection (memory capped at `memory_limit`, every table created), waiting at most
    `lock_wait_seconds` (default LOCK_WAIT_SECONDS) while another process holds DuckDB's single-writer lock; any
    other problem with the path fails at once as a `DuckDBPathError` naming ONEROSTER_DUCKDB_PATH. The file is
    attached to this process's shared DuckDB instance (`duckdb_files.attached`: no instance start-up per
    connection) unless `config` (DuckDB connection settings) asks for an instance of its own or the process already
    has the file open through one."""
    wait = LOCK_WAIT_SECONDS if lock_wait_seconds is None else lock_wait_seconds
    with ExitStack() as stack:
        con = None
        if not config:
            try:  # the schema is checked once per attachment (not at all if the file is as this process left it)
                con = stack.enter_context(duckdb_files.attached(path, wait, prepare=ensure_schema))
            except duckdb_files.HeldByAnotherInstance:
                pass
        schema_checked = con is not None
        if con is None:
            con = open_duckdb(path, wait, config)
        with prepared(con, memory_limit, ensure=not schema_checked, path=path):
            yield con


def open_duckdb(path: str | Path, lock_wait_seconds: float | None = None,
                config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file for writing in a DuckDB instance of its own, creating its folder. A file locked by
    another process is retried for `lock_wait_seconds` (default LOCK_WAIT_SECONDS) then fails; a path that cannot
    be written (permission denied, a directory, a parent that is a file, not a DuckDB file) fails at once. Both as
    `DuckDBPathError`, whose message starts `ONEROSTER_DUCKDB_PATH=<path>:`."""
    return duckdb_files.opened(path, LOCK_WAIT_SECONDS if lock_wait_seconds is None else lock_wait_seconds,
                               lambda shown: duckdb.connect(shown, config=config or {}))


def stage_batches(batches: Iterable[pa.Table], path: Path, schema: pa.Schema) -> int:
    """Stream batches into one Parquet file (bounded memory: one batch at a time); returns the row count.

    Python's cyclic garbage collector is paused meanwhile (`gc_paused`): a page decodes into thousands of dicts and
    lists, each allocation counts towards a collection, and the collections (which scan every young object, and
    every object now and then) cost as much CPU as the normalising itself. The records form no cycles: reference
    counting frees each page as the next one comes."""
    rows = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with gc_paused(), _WriterThread(path, schema) as writer:
            for batch in batches:
                writer.write(batch.cast(schema) if batch.schema != schema else batch)
                rows += batch.num_rows
    except OSError as error:  # a full disk is named as such (staging is on the DuckDB file's volume)
        duckdb_files.raise_if_disk_full(error, path)
        raise
    return rows


class _WriterThread:
    """A ParquetWriter fed through a bounded queue by a thread of its own: encoding and compressing (C++, without
    the GIL) overlap the caller's fetching and normalising. A failure to write is raised in the caller (at its next
    batch or at the end); the file is closed whatever happens."""

    def __init__(self, path: Path, schema: pa.Schema, depth: int = 4) -> None:
        self._writer = pq.ParquetWriter(path, schema)
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="parquet-staging", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(batch)
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    self._error = error

    def write(self, batch: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, *_) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._writer.close()
        except Exception:
            if kind is None and self._error is None:  # else the error already on its way is the one to tell
                raise
        if kind is None and self._error is not None:
            raise self._error


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside the block (as it was after it; cycles made meanwhile wait for it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def remove_staging(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def replace_from_parquet(
    con: duckdb.DuckDBPyConnection, table: str, parquet: Path, provider: str, fetched_at,
    keep_sourced_ids: Iterable[str] = (),
) -> tuple[int, int]:
    """Replace `table`'s rows with the staged file's (call inside `transaction`), except the existing rows of
    `keep_sourced_ids` that the file lacks (records the client rejected: a rejection is not an absence), which stay
    exactly as they were. Set-based (a temp table of the ids, a semi join): fit for a million rows.

    Returns (rows in `table` now, rows kept as they were)."""
    ids = pa.array(list(dict.fromkeys(i for i in keep_sourced_ids if i)), pa.string())
    kept = 0
    if len(ids):
        con.register("_keep_ids_batch", pa.table({"sourced_id": ids}))
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE _keep_ids AS SELECT sourced_id FROM _keep_ids_batch")
        finally:
            con.unregister("_keep_ids_batch")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _kept_rows AS
                SELECT t.* FROM {table} t
                SEMI JOIN _keep_ids k ON k.sourced_id = t.sourced_id
                ANTI JOIN (SELECT sourced_id FROM read_parquet(?)) p ON p.sourced_id = t.sourced_id""",
            [str(parquet)],
        )
        kept = con.execute("SELECT count(*) FROM _kept_rows").fetchall()[0][0]
    con.execute(f"DELETE FROM {table}")
    rows = con.execute(  # an INSERT answers the number of rows it inserted: no count(*) of the table after
        f"INSERT INTO {table} BY NAME SELECT *, ? AS provider, ? AS fetched_at FROM read_parquet(?)",
        [provider, fetched_at, str(parquet)],
    ).fetchall()[0][0]
    if len(ids):
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _kept_rows")
        con.execute("DROP TABLE _kept_rows")
        con.execute("DROP TABLE _keep_ids")
    return rows + kept, kept


def merge_from_parquet(
    con: duckdb.DuckDBPyConnection, table: str, parquet: Path, provider: str, fetched_at
) -> int:
    """Upsert the staged rows into `table` by sourced_id (a delta pull; call inside `transaction`)."""
    con.execute(
        f"DELETE FROM {table} WHERE sourced_id IN (SELECT sourced_id FROM read_parquet(?))", [str(parquet)]
    )
    con.execute(
        f"INSERT INTO {table} BY NAME SELECT *, ? AS provider, ? AS fetched_at FROM read_parquet(?)",
        [provider, fetched_at, str(parquet)],
    )
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """Append a few rows given as dicts (alerts, reports): register them as Arrow and insert by name."""
    if not rows:
        return
    batch = pa.Table.from_pylist(rows)
    con.register("_rows_to_insert", batch)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows_to_insert")
    finally:
        con.unregister("_rows_to_insert")


def upsert_sync_run(con: duckdb.DuckDBPyConnection, run_id: str, **columns) -> None:
    """Create or update the run's `sync_runs` row: each step fills the columns it knows (None leaves a value).
    An UPDATE, then an INSERT when none was found (not INSERT ... ON CONFLICT: ~4x slower, and DuckLake has no key)."""
    updated = con.execute(
        f"UPDATE sync_runs SET {', '.join(f'{c} = coalesce(?, {c})' for c in columns)} WHERE run_id = ?",
        [*columns.values(), run_id]).fetchall()[0][0]
    if not updated:
        names = ["run_id", *columns]
        con.execute(f"INSERT INTO sync_runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [run_id, *columns.values()])
        KEYED_INSERTS.setdefault(con, set()).add("sync_runs")


def query_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    """A query's whole result as an Arrow table, without a row copy (DuckDB 2: to_arrow_table; 1.x: arrow)."""
    relation = con.sql(sql, params=params or None)
    return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()


def query_dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
