"""The warehouse a district's sync writes, on either backend: one `Warehouse` value and its `connect()`, the
connection every sync function takes. Framework-free; the Dagster layer builds one per district.

- `duckdb` (the default): the district's DuckDB file (`store.connect`), exactly as before.
- `ducklake`: the district's schema of one lake (`lake.connect`): the same tables and columns, the same sync logic.

    warehouse = Warehouse.from_env(env, duckdb_path=config.duckdb_path_of(env), district_id=district.id)
    with warehouse.connect() as con:
        apply_student_pull(con, pull, run_id, now, policy.hold)
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from . import lake as lakes
from . import store
from .lake_settings import WAREHOUSE_VAR, LakeSettings, backend_of


@dataclass(frozen=True)
class Warehouse:
    """Where one district's tables live: a DuckDB file (`duckdb_path`) or a schema (`schema`) of a lake."""

    backend: str  # 'duckdb' | 'ducklake'
    duckdb_path: str | None = None
    lake: LakeSettings | None = None
    schema: str = lakes.SINGLE_DISTRICT_SCHEMA
    memory_limit: str | None = None
    district_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], duckdb_path: str | None = None,
                 district_id: str | None = None) -> Warehouse:
        """The warehouse `env` configures (`ONEROSTER_WAREHOUSE`, and the ONEROSTER_DUCKLAKE_* variables for a lake)
        for the district `district_id` (None: the single district). `duckdb_path` is the DuckDB file of `env` (the
        caller's rule: config.duckdb_path_of), used by the duckdb backend only. A bad value is a SettingsError."""
        memory_limit = (env.get(store.MEMORY_LIMIT_VAR) or "").strip() or None
        if backend_of(env) == "duckdb":
            if not duckdb_path:
                raise ValueError(f"{WAREHOUSE_VAR}=duckdb needs the DuckDB file's path")
            return cls("duckdb", duckdb_path=str(duckdb_path), memory_limit=memory_limit, district_id=district_id)
        return cls("ducklake", lake=LakeSettings.from_env(env), schema=lakes.district_schema(district_id),
                   memory_limit=memory_limit, district_id=district_id)

    @property
    def is_lake(self) -> bool:
        return self.backend == "ducklake"

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short write connection to the district's tables (created if missing), memory capped at
        ONEROSTER_DUCKDB_MEMORY_LIMIT: `store.connect` for a file, `lake.connect` for a lake."""
        limit = self.memory_limit or store.DEFAULT_MEMORY_LIMIT
        if self.is_lake:
            with lakes.connect(self.lake, self.schema, memory_limit=limit) as con:
                yield con
        else:
            with store.connect(self.duckdb_path, memory_limit=limit) as con:
                yield con

    def staging_dir(self, run_id: str, step: str) -> Path:
        """The folder a step stages its pull in: beside the DuckDB file, or (a lake, whose data path may be shared
        or remote) in this machine's temporary folder. The district's id keeps districts of one run apart."""
        name = f"{run_id}-{self.district_id}-{step}" if self.district_id else f"{run_id}-{step}"
        if self.is_lake:
            return Path(tempfile.gettempdir()) / "oneroster-staging" / name
        return Path(self.duckdb_path).parent / "staging" / name

    def describe(self) -> str:
        """Where the tables are, without secrets (for a run's log)."""
        if self.is_lake:
            return f"{self.lake.describe()}, schema {self.schema}"
        return f"DuckDB file {self.duckdb_path}"


# a run's own bookkeeping (its sync_runs row, an alert) that a lake refused because another run of the district
# committed meanwhile (LakeConflictError) is written again, after 1 s, then 2 s
BOOKKEEPING_ATTEMPTS = 3
T = TypeVar("T")


def write_bookkeeping(connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
                      write: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`write(con)` on a connection of `connect()` (committed when it closes), run again on a new one when a lake
    refuses the commit, at most BOOKKEEPING_ATTEMPTS times in all; the last refusal is raised. Only for writes that
    are safe to repeat: a refused transaction applied nothing, and the run's own row or alert conflicts with no one's
    plan. A sync's apply is never repeated this way (its plan was made against a state that no longer exists)."""
    for attempt in range(1, BOOKKEEPING_ATTEMPTS):
        try:
            with connect() as con:
                return write(con)
        except lakes.LakeConflictError:
            time.sleep(attempt)
    with connect() as con:  # the last attempt: its refusal is raised
        return write(con)
