"""The DuckLake backend: every district is a schema of one lake, with the DuckDB file's tables and columns exactly
(`store.TABLES_DDL`), written by the same sync logic. Framework-free.

**Connections.** One in-memory DuckDB instance per process attaches the lake once (`lake` in SQL); `connect` hands
out a cursor of it whose default schema is the district's (`USE lake.<district>`), so the sync's unqualified table
names are the district's tables and its temp tables stay in the process. A PostgreSQL catalog stays attached until
the process moves on to another lake (an attached lake holds its whole catalog in memory: one idle lake at a time);
a local `.ducklake` file is detached when its last connection closes (DuckDB locks the file: one writing process at
a time, as a DuckDB file).

**What DuckLake lacks.** No PRIMARY KEY / UNIQUE: the lake's tables are `TABLES_DDL` without them, and the sync
never relied on them to decide anything (no `INSERT ... ON CONFLICT`; `upsert_sync_run` updates, then inserts).
Before every COMMIT on a district connection (`store.BEFORE_COMMIT`) the three keys the DuckDB file enforces are
checked (`sync_runs.run_id`, `provider_connections.connection_id`, `provider_switches.switch_id`) in each of those
tables the transaction inserted into (`store.KEYED_INSERTS`): a repeat rolls the transaction back as a
`LakeInvariantError`. Views work (`student_sourced_ids`).

**One writer per district.** A transaction is one DuckLake snapshot: a failure anywhere rolls back and the lake's
current snapshot stays the previous one. Two transactions of different districts commit concurrently: when their
commits race, DuckLake retries the later one after checking it against every snapshot committed since it began
(`ducklake_max_retry_count` MAX_RETRY_COUNT). Such a retry is correct because a district's transaction reads and
writes only its own schema (and this process's temp tables and staging files): the other district's snapshot
changed nothing it read. Two transactions of the *same* district must never both commit (the later one planned
against a state that no longer exists; DuckLake alone lets two insert-only transactions both commit). So every
transaction on a district connection also updates the district's row in `oneroster_guard.<district>` (beside the
districts' schemas) before its COMMIT; DuckLake refuses the second of two overlapping updates: `LakeConflictError`,
nothing of it applied. Dagster's per-district run limit keeps this from happening; this makes it safe.

**The catalog once.** The first ATTACH of a new catalog creates its tables, and concurrent first attaches race
(PostgreSQL's unique-index errors). Every process's first attach of a PostgreSQL catalog holds a PostgreSQL
advisory lock (ATTACH_LOCK_KEY) meanwhile; `create_lake` is the explicit setup step (catalog, guard schema, and
the districts' schemas one after another) for a deployment to run before its writers start.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import duckdb

from oneroster_pipeline.client.redaction import one_line

from . import store
from .lake_settings import DATA_PATH_VAR, LakeSettings, LakeUnavailable, extension_file
from .sql_text import ident, sql_string

log = logging.getLogger(__name__)

SINGLE_DISTRICT_SCHEMA = "main"  # one district (no districts file): the lake's default schema
GUARD_SCHEMA = "oneroster_guard"
# DuckLake's commit retries (a commit that raced another process's): up to MAX_RETRY_COUNT, waiting RETRY_WAIT_MS
# times RETRY_BACKOFF**n (times 0.5-1) before the n-th: about 12-24 s in all before giving up
MAX_RETRY_COUNT = 30
RETRY_WAIT_MS = 20
RETRY_BACKOFF = 1.2
# DuckDB threads per this much of the memory cap (ONEROSTER_DUCKDB_MEMORY_LIMIT): a 1M-student apply into the lake
# runs out of a 128MB cap with 2 threads (each holds its own share of the plan's joins and windows) and applies with
# 1 (benchmarks/README.md "DuckDB version"); a 512MB cap gets 4 threads
MEMORY_PER_THREAD = 128 * 1024 * 1024
ATTACH_LOCK_KEY = 0x0E12_05E7  # pg_advisory_lock key held by a process's first attach of a PostgreSQL catalog
LOCK_WAIT_SECONDS = store.LOCK_WAIT_SECONDS  # a local .ducklake file locked by another process
# the lake's tables: the DuckDB contract without its key constraints (DuckLake has none; checked before COMMIT)
LAKE_DDL = {name: ddl.replace(" PRIMARY KEY", "") for name, ddl in store.TABLES_DDL.items()}
KEYS = {"sync_runs": "run_id", "provider_connections": "connection_id", "provider_switches": "switch_id"}
_SCHEMA = re.compile(r"[a-z0-9_-]+")


class LakeError(RuntimeError):
    """The lake cannot be attached or a district's schema cannot be used; the message names the lake."""


class LakeConflictError(LakeError):
    """DuckLake refused this transaction's commit: another writer of the same district committed after it began
    (or commits kept racing past MAX_RETRY_COUNT retries). Nothing of it was applied."""

    def __init__(self, schema: str, detail: str) -> None:
        self.schema, self.detail = schema, detail
        busy = "retry count" in detail.lower()
        cause = (f"the lake's commits kept racing this one past {MAX_RETRY_COUNT} retries" if busy else
                 "another run wrote this district while this one was applying it")
        super().__init__(
            f"ONEROSTER_WAREHOUSE=ducklake, district schema {schema!r}: {cause}; DuckLake refused this commit, so "
            "nothing of it was applied and the lake holds the other writer's snapshot. Two runs of one district "
            "must not overlap (the per-district run limit); run this one again: it plans against the new state. "
            f"(DuckLake: {detail})")


class LakeInvariantError(LakeError):
    """A key the DuckDB file enforces with a PRIMARY KEY would repeat in the lake: the transaction rolled back."""


def district_schema(district_id: str | None) -> str:
    """The lake schema of a district: its id (the districts file's), or `main` for the single district."""
    schema = (district_id or SINGLE_DISTRICT_SCHEMA).strip()
    if not _SCHEMA.fullmatch(schema) or schema == GUARD_SCHEMA:
        raise LakeError(f"{schema!r} cannot be a district schema of the lake (ids are [a-z0-9_-]+, not "
                        f"{GUARD_SCHEMA})")
    return schema


class _Lake:
    """The lake attached to this process's instance: its alias, connections open on it, districts checked (all of
    them at the first connection: `complete_districts`)."""

    def __init__(self, alias: str, settings: LakeSettings) -> None:
        self.alias, self.settings, self.users, self.ready, self.surveyed = alias, settings, 0, set(), False


class _Instance:
    def __init__(self) -> None:
        self.pid = os.getpid()
        spill = Path(tempfile.gettempdir()) / f"oneroster-lake-spill-{self.pid}"
        # capped from the start: DuckLake caches what it reads of the catalog, evicted at the cap (uncapped,
        # create_lake of 100 districts held 642 MB of it, and a later connection could not set a 128MB cap)
        self.root = duckdb.connect(":memory:", config={"temp_directory": str(spill),
                                                       "memory_limit": store.DEFAULT_MEMORY_LIMIT})
        self.lakes: dict[tuple[str, str], _Lake] = {}
        self.loaded: set[str] = set()

    def load(self, *names: str) -> None:
        for name in set(names) - self.loaded:
            self.root.execute(f"LOAD {sql_string(str(extension_file(name)))}")
            self.loaded.add(name)


_lock = threading.Lock()
_instance: _Instance | None = None


def _shared() -> _Instance:
    global _instance
    if _instance is None or _instance.pid != os.getpid():  # a forked child builds its own
        _instance = _Instance()
    return _instance


@atexit.register
def _close() -> None:
    if _instance is not None and _instance.pid == os.getpid():
        _instance.root.close()


@contextmanager
def _attach_lock(settings: LakeSettings) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock ATTACH_LOCK_KEY (a PostgreSQL catalog): one process attaches at a time, so
    the first creates the catalog before any other reads it."""
    import psycopg2  # noqa: PLC0415 (installed with dagster-postgres; only a PostgreSQL catalog needs it)

    try:
        pg = psycopg2.connect(settings.dsn, connect_timeout=30)
    except psycopg2.Error as error:
        raise LakeError(f"cannot connect to the lake's catalog ({settings.describe()}): {one_line(error)}") from None
    try:
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (ATTACH_LOCK_KEY,))
        yield
    finally:
        pg.close()  # ends the session: the lock goes with it


def _attach(instance: _Instance, settings: LakeSettings, wait: float) -> _Lake:
    instance.load("ducklake", *(["postgres_scanner"] if settings.is_postgres else []))
    taken = {lake.alias for lake in instance.lakes.values()}
    alias = next(name for name in ("lake", *(f"lake_{n}" for n in range(2, 1000))) if name not in taken)
    if settings.s3 is not None:
        instance.load("httpfs")
        try:  # a temporary secret of this process's instance, scoped to the data path
            instance.root.execute(settings.s3.secret_sql(f"{alias}_data", settings.data_path))
        except duckdb.Error as error:
            raise LakeError(f"cannot reach the lake's object store ({settings.describe()}): {one_line(error)}") \
                from None
    else:
        try:
            Path(settings.data_path.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LakeError(f"{DATA_PATH_VAR}={settings.data_path}: cannot create the folder: "
                            f"{error.strerror or error}") from None
    sql = (f"ATTACH {sql_string('ducklake:' + settings.attach_target)} AS {alias} "
           f"(DATA_PATH {sql_string(settings.data_path)})")
    deadline = time.monotonic() + wait
    with _attach_lock(settings) if settings.is_postgres else nullcontext():
        while True:
            try:
                instance.root.execute(sql)
                break
            except duckdb.Error as error:
                text = one_line(error)
                if "could not set lock" in text.lower() and time.monotonic() < deadline:
                    time.sleep(0.25)
                    continue
                raise LakeError(f"cannot attach the lake ({settings.describe()}): {text}") from None
        instance.root.execute(f"CREATE SCHEMA IF NOT EXISTS {alias}.{GUARD_SCHEMA}")
    for name, value in (("ducklake_max_retry_count", MAX_RETRY_COUNT), ("ducklake_retry_wait_ms", RETRY_WAIT_MS),
                        ("ducklake_retry_backoff", RETRY_BACKOFF)):
        instance.root.execute(f"SET {name} = {value}")
    return _Lake(alias, settings)


def _detach(instance: _Instance, lake: _Lake) -> None:
    try:
        instance.root.execute(f"DETACH {lake.alias}")
    except duckdb.Error as error:
        log.warning("could not detach the lake %s: %s", lake.settings.describe(), one_line(error))
        return
    del instance.lakes[lake.settings.key]


@contextmanager
def _cursor(settings: LakeSettings, wait: float | None = None) -> Iterator[tuple[duckdb.DuckDBPyConnection, _Lake]]:
    """A cursor of the process's instance with the lake attached (attached now if it is not)."""
    with _lock:
        instance = _shared()
        lake = instance.lakes.get(settings.key)
        if lake is None:
            for idle in [other for other in instance.lakes.values() if other.users == 0]:  # one idle lake at a
                _detach(instance, idle)  # time: an attached lake holds its whole catalog (~1.2 MB a district)
            lake = instance.lakes[settings.key] = _attach(instance, settings,
                                                          LOCK_WAIT_SECONDS if wait is None else wait)
        lake.users += 1
        con = instance.root.cursor()
    try:
        yield con, lake
    finally:
        con.close()
        with _lock:
            lake.users -= 1
            if lake.users == 0 and not settings.is_postgres:  # release the local catalog file's lock
                _detach(instance, lake)


@contextmanager
def connect(settings: LakeSettings, schema: str, memory_limit: str | None = store.DEFAULT_MEMORY_LIMIT,
            lock_wait_seconds: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection whose default schema is the district's (`schema`, see `district_schema`) in the lake: its
    tables created if missing, memory capped like the DuckDB file's (`store.prepared`), every transaction checked
    and guarded before COMMIT (see the module's notes). A refused commit is raised as LakeConflictError."""
    schema = district_schema(schema)
    with _cursor(settings, lock_wait_seconds) as (con, lake):
        try:
            if schema not in lake.ready and not lake.surveyed:  # one catalog query for every district of the lake
                lake.ready |= complete_districts(con, lake.alias)  # (a run of 100 districts: not one per district)
                lake.surveyed = True
            if schema not in lake.ready:
                ensure_district(con, lake.alias, schema)
                lake.ready.add(schema)
            con.execute(f"USE {lake.alias}.{ident(schema)}")
            store.BEFORE_COMMIT[con] = lambda c: _before_commit(c, lake.alias, schema)
            with store.prepared(con, memory_limit, ensure=False) as con:
                con.execute(f"SET threads = {threads_for(con)}")
                yield con
        except duckdb.Error as error:
            text = one_line(error)
            if "Transaction conflict" in text or "maximum retry count" in text:
                raise LakeConflictError(schema, text.split("Failed to commit DuckLake transaction.")[-1].strip()
                                        or text) from None
            raise
        finally:
            store.BEFORE_COMMIT.pop(con, None)


def threads_for(con: duckdb.DuckDBPyConnection) -> int:
    """DuckDB threads for the memory cap set on `con`: one per MEMORY_PER_THREAD, at least 1, at most the CPUs."""
    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMGT]?)i?B", limit.strip()).groups()
    size = float(number) * 1024 ** "BKMGT".index(unit or "B")
    return max(1, min(os.cpu_count() or 1, round(size / MEMORY_PER_THREAD)))


def ensure_district(con: duckdb.DuckDBPyConnection, alias: str, schema: str, attempts: int = 3) -> bool:
    """Create the district's schema, its tables (LAKE_DDL) and its guard row when any is missing, in one
    transaction; True when something was created. Another process creating the same district at the same time
    makes one of the two commits conflict: that one checks again (it finds everything there)."""
    for attempt in range(attempts):
        if schema in complete_districts(con, alias, schema):
            return False
        try:
            with store.transaction(con):
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {alias}.{ident(schema)}")
                con.execute(f"USE {alias}.{ident(schema)}")
                for ddl in LAKE_DDL.values():
                    con.execute(ddl)
                guard = f"{alias}.{GUARD_SCHEMA}.{ident(schema)}"
                con.execute(f"CREATE TABLE IF NOT EXISTS {guard} (district VARCHAR NOT NULL, writes BIGINT NOT NULL, "
                            "written_at TIMESTAMPTZ)")
                con.execute(f"INSERT INTO {guard} SELECT ?, 0, now() WHERE NOT EXISTS (SELECT 1 FROM {guard})",
                            [schema])
            return True
        except duckdb.Error as error:
            if "conflict" not in str(error).lower() or attempt + 1 == attempts:
                raise
            time.sleep(0.2 * (attempt + 1))
    return False


def complete_districts(con: duckdb.DuckDBPyConnection, alias: str, schema: str | None = None) -> set[str]:
    """The district schemas of the lake (only `schema`, if given) holding every table of the contract with its
    columns, its view and its guard table. One query of the catalog's own tables (the DuckLake format's
    ducklake_schema / _table / _column / _view): `duckdb_tables()` would describe every table of the lake, and a
    query of each district's tables costs ~20 catalog round trips per table. The guard table is created with its
    row in one transaction (`ensure_district`); a row deleted since is refused at the next commit."""
    meta = f"__ducklake_metadata_{alias}"
    only = "AND (s.schema_name = $s OR s.schema_name = $guard AND t.table_name = $s)" if schema else ""
    rows = con.execute(f"""
        SELECT s.schema_name, t.table_name, count(c.column_id)
        FROM {meta}.ducklake_schema s JOIN {meta}.ducklake_table t ON t.schema_id = s.schema_id
        LEFT JOIN {meta}.ducklake_column c ON c.table_id = t.table_id AND c.end_snapshot IS NULL
             AND c.parent_column IS NULL
        WHERE s.end_snapshot IS NULL AND t.end_snapshot IS NULL {only}
        GROUP BY ALL
        UNION ALL
        SELECT s.schema_name, v.view_name, NULL
        FROM {meta}.ducklake_schema s JOIN {meta}.ducklake_view v ON v.schema_id = s.schema_id
        WHERE s.end_snapshot IS NULL AND v.end_snapshot IS NULL {'AND s.schema_name = $s' if schema else ''}""",
        {"s": schema, "guard": GUARD_SCHEMA} if schema else {}).fetchall()
    shapes: dict[str, set] = {}
    for name, table, columns in rows:
        shapes.setdefault(name, set()).add((table, columns))
    guards, expected = shapes.pop(GUARD_SCHEMA, set()), store._schema_shape()
    return {name for name, shape in shapes.items() if expected <= shape and (name, 3) in guards}


def invariant_violations(con: duckdb.DuckDBPyConnection, limit: int = 5,
                         tables: Iterable[str] | None = None) -> list[str]:
    """The keys of KEYS (of `tables` only, if given) that repeat in the district's tables (`table.column = value`,
    at most `limit`); [] when every key is unique, as the DuckDB file's PRIMARY KEYs guarantee."""
    checked = [(table, column) for table, column in KEYS.items() if tables is None or table in tables]
    if not checked:
        return []
    union = " UNION ALL ".join(
        f"SELECT '{table}.{column}' AS key, {column}::VARCHAR AS value FROM {table} GROUP BY {column} "
        f"HAVING count(*) > 1" for table, column in checked)
    return [f"{key} = {value}" for key, value in con.execute(f"{union} LIMIT {int(limit)}").fetchall()]


def _before_commit(con: duckdb.DuckDBPyConnection, alias: str, schema: str) -> None:
    """Run inside every transaction of a district connection just before its COMMIT: check the keys of the tables
    the transaction inserted into (`store.KEYED_INSERTS`, noted by the only three statements that insert a key:
    each lake statement costs ~20 catalog round trips per table), then update the district's guard row (two such
    transactions overlapping make DuckLake refuse the later commit)."""
    repeated = invariant_violations(con, tables=store.KEYED_INSERTS.get(con, ()))
    if repeated:
        raise LakeInvariantError(f"district schema {schema!r}: a key would repeat ({'; '.join(repeated)}): the "
                                 "transaction was rolled back, nothing of it applied")
    updated = con.execute(f"UPDATE {alias}.{GUARD_SCHEMA}.{ident(schema)} SET writes = writes + 1, "
                          "written_at = now()").fetchall()[0][0]
    if updated != 1:
        raise LakeError(f"district schema {schema!r}: its guard row {GUARD_SCHEMA}.{schema} is missing or repeated "
                        f"({updated} rows): the transaction was rolled back; run create_lake for the district")


def create_lake(settings: LakeSettings, schemas: Iterable[str] = ()) -> dict:
    """The setup step before concurrent writers: attach (creating the catalog and the guard schema if new), then
    create each district schema of `schemas` that is missing, one after another. Returns
    {'created_schemas': [...], 'snapshot_id': the lake's current snapshot}."""
    created = []
    with _cursor(settings) as (con, lake):
        for schema in map(district_schema, schemas):
            if ensure_district(con, lake.alias, schema):
                created.append(schema)
            lake.ready.add(schema)
        con.execute(f"USE {lake.alias}")
        snapshot = snapshot_at(con)
    return {"created_schemas": created, "snapshot_id": snapshot}


@contextmanager
def reader(settings: LakeSettings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection of this process's instance with the lake attached (as `lake` for the first lake a process
    attaches): query any district as `lake.<district>.<table>`, and across districts (`across_districts_sql`)."""
    with _cursor(settings) as (con, lake):
        con.execute(f"USE {lake.alias}")
        yield con


def district_schemas(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The district schemas of the lake `con` reads (`reader`): those holding the contract's tables."""
    meta = "__ducklake_metadata_" + con.execute("SELECT current_database()").fetchall()[0][0]
    return [row[0] for row in con.execute(f"""
        SELECT s.schema_name FROM {meta}.ducklake_schema s JOIN {meta}.ducklake_table t ON t.schema_id = s.schema_id
        WHERE s.end_snapshot IS NULL AND t.end_snapshot IS NULL AND t.table_name IN ('students', 'buildings',
              'sync_runs') GROUP BY 1 HAVING count(*) = 3 ORDER BY 1""").fetchall()]


def across_districts_sql(con: duckdb.DuckDBPyConnection, table: str, schemas: Iterable[str] | None = None) -> str:
    """One SELECT of `table` in every district schema (`schemas`, default `district_schemas`) of the lake `con`
    reads (`reader`), the schema first as `district_id`: what a query across districts reads, straight from the
    lake (e.g. `SELECT district_id, count(*) FROM (<this>) GROUP BY 1`; hundreds of districts: `rows_per_district`)."""
    if table not in store.TABLES_DDL:
        raise LakeError(f"{table!r} is not a table of the warehouse")
    alias = con.execute("SELECT current_database()").fetchall()[0][0]
    parts = [f"SELECT {sql_string(district_schema(s))} AS district_id, * FROM {alias}.{ident(s)}.{table}"
             for s in (district_schemas(con) if schemas is None else schemas)]
    if not parts:
        raise LakeError("the lake has no district schema yet")
    return " UNION ALL BY NAME ".join(parts)


def rows_per_district(con: duckdb.DuckDBPyConnection, sql: str, schemas: Iterable[str] | None = None,
                      params: list | None = None) -> Iterator[tuple]:
    """`sql` (unqualified table names) in each district schema (`schemas`, default all) of the lake `con` reads
    (`reader`), one at a time: its rows, the district first; the cursor's schema left as it was. The memory of one
    district: one statement over all (`across_districts_sql`) holds every table it scans (~6 MB each, or more)."""
    alias = con.execute("SELECT current_database()").fetchall()[0][0]
    before = con.execute("SELECT current_schema()").fetchall()[0][0]
    try:
        for schema in (district_schemas(con) if schemas is None else schemas):
            con.execute(f"USE {alias}.{ident(district_schema(schema))}")
            for row in con.execute(sql, params or []).fetchall():
                yield (schema, *row)
    finally:
        con.execute(f"USE {alias}.{ident(before)}")


def students_in_building_as_of(con: duckdb.DuckDBPyConnection, building_sis: str, at: datetime) -> list[dict]:
    """Time travel: the students linked to the building `building_sis` (student_buildings) as the district's
    connection `con` would have read them at `at` (its students rows then), by student_id. Reaches back as far as
    the lake keeps snapshots (`lake_maintenance.expire_snapshots`)."""
    return store.query_dicts(con, """
        SELECT s.student_id, s.sourced_id, s.given_name, s.family_name, s.grade, s.status, l.is_primary
        FROM student_buildings l AT (TIMESTAMP => $at)
        JOIN students s AT (TIMESTAMP => $at) ON s.student_id = l.student_id
        WHERE l.building_sis = $sis ORDER BY s.student_id""", {"at": at, "sis": building_sis})


def snapshot_at(con: duckdb.DuckDBPyConnection, at: datetime | None = None) -> int | None:
    """The id of the lake's snapshot current at `at` (None: now), on a connection of `connect` or `reader`."""
    alias = con.execute("SELECT current_database()").fetchall()[0][0]
    where = "WHERE snapshot_time <= ?" if at is not None else ""
    return con.execute(f"SELECT max(snapshot_id) FROM ducklake_snapshots({sql_string(alias)}) {where}",
                       [at] if at is not None else []).fetchall()[0][0]


__all__ = ["LakeConflictError", "LakeError", "LakeInvariantError", "LakeSettings", "LakeUnavailable", "connect",
           "create_lake", "district_schema", "reader", "rows_per_district", "students_in_building_as_of"]
