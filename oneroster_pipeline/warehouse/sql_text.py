"""SQL text made from values the warehouse cannot pass as parameters (ATTACH targets, COPY paths, schema names): a
string literal and a quoted identifier, each quote doubled as DuckDB reads them."""

from __future__ import annotations

from pathlib import Path


def sql_string(value: str | Path) -> str:
    """`value` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
