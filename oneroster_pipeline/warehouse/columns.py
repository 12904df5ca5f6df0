"""The columns of every table and view, exactly as DuckDB creates them from `store.TABLES_DDL` (the one place they
are defined): name, type and whether it may be NULL, read off a scratch in-memory database once per process, so
what the Dagster layer shows of a table (`dagster/column_schema`) can never drift from the table itself."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import duckdb

from .store import TABLES_DDL


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB's data type: VARCHAR, BIGINT, TIMESTAMP WITH TIME ZONE, VARCHAR[] ...
    nullable: bool


@functools.cache
def _all_columns() -> Mapping[str, tuple[Column, ...]]:
    with duckdb.connect(":memory:") as scratch:
        for ddl in TABLES_DDL.values():
            scratch.execute(ddl)
        rows = scratch.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall()
    found: dict[str, list[Column]] = {}
    for table, name, kind, nullable in rows:
        found.setdefault(table, []).append(Column(name, kind, nullable == "YES"))
    return MappingProxyType({table: tuple(columns) for table, columns in found.items()})


def columns_of(table: str) -> tuple[Column, ...]:
    """The columns of `table` (a key of TABLES_DDL), in order; KeyError for a table the warehouse does not have."""
    return _all_columns()[table]


def tables() -> tuple[str, ...]:
    """Every table and view the warehouse creates."""
    return tuple(_all_columns())
