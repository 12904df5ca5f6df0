"""Print what landed in the DuckDB file: `python -m oneroster_pipeline.summary [path]`. Without a path, the file the
configuration names (config.py: the environment and `.env`, as a run reads them)."""

from __future__ import annotations

import os
import sys

import duckdb

from oneroster_pipeline.config import Config, duckdb_path_of
from oneroster_pipeline.warehouse.store import TABLES_DDL

BREAKDOWNS = {
    "buildings": "SELECT status, count(*) FROM buildings GROUP BY 1 ORDER BY 1",
    "students": "SELECT status, count(*) FROM students GROUP BY 1 ORDER BY 1",
    "ignored_students": "SELECT reason, count(*) FROM ignored_students GROUP BY 1 ORDER BY 1",
    "sync_runs": "SELECT job_name || ': ' || outcome, count(*) FROM sync_runs GROUP BY 1 ORDER BY 1",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        path = args[0]
    else:
        config = Config.load()
        print(config.describe(), file=sys.stderr)
        path = duckdb_path_of(config.env)
    if not os.path.exists(path):
        print(f"no DuckDB file at {path}: run a sync first", file=sys.stderr)
        return 1
    with duckdb.connect(path, read_only=True) as con:
        existing = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        print(f"{path}:")
        for table in TABLES_DDL:
            if table not in existing:
                continue
            print(f"  {table:<18} {con.execute(f'SELECT count(*) FROM {table}').fetchall()[0][0]:>9} rows")
            for key, count in con.execute(BREAKDOWNS[table]).fetchall() if table in BREAKDOWNS else []:
                print(f"      {key:<28} {count:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
