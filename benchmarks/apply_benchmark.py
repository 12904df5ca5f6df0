"""Benchmark: the DuckDB apply of a student pull alone (`pulls.apply_student_pull`), no provider, no HTTP.

    .venv/bin/python benchmarks/apply_benchmark.py --students 300000 1000000 [--memory-limit 128MB] [--dump DIR]

Per size it writes, once, synthetic Parquet staging files in USER_SCHEMA (40 schools, a district org, ~3% of the
students in two schools, ~0.5% with no school org): pull 1, and pull 2 = pull 1 with ~1% of the students changed
(names, grade, email, a school move), ~0.5% removed and ~0.2% new. Then, each in a fresh process (so its peak RSS
is its own): (a) the first sync: org pull + building sync (untimed), then `apply_student_pull(pull 1)` timed into
the empty warehouse; (b) the second sync: a copy of (a)'s database, then `apply_student_pull(pull 2)` timed. Both
run under `store.connect`'s memory limit (default 128MB) with a hold policy that holds nothing, so the whole
apply runs (`--default-holds`: the default HoldPolicy, which holds the second sync's deactivations). `--dump DIR` writes every table the apply touches (sorted) to DIR/<size>/<phase>/<table>.parquet, to
compare two versions of the code row for row (`--compare A B`). With ONEROSTER_WAREHOUSE=ducklake (and
ONEROSTER_DUCKLAKE_CATALOG / ONEROSTER_DUCKLAKE_DATA_PATH) each size applies into a new district schema of that lake
instead (the second sync into the first's schema), e.g. to `--compare` a lake's dump with a DuckDB file's.
Not a test: numbers depend on the machine (and on what else runs on it: `uptime` is printed beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from step_phases import _status  # noqa: E402 (this process's VmRSS / VmHWM)

SCHOOLS = 40
DUMPED = {  # table -> sort key (every column, so equal tables dump equal files)
    "oneroster_users": "sourced_id",
    "students": "student_id",
    "student_buildings": "student_id, building_id",
    "ignored_students": "sourced_id, reason",
    "student_changes": "run_id, student_id, change, field",
    "sync_diffs": "run_id, sourced_id, change, field",
    "sync_holds": "run_id",
    "pull_reports": "run_id, collection",
}


def write_pulls(students: int, folder: Path) -> None:
    """orgs.parquet, pull1.parquet, pull2.parquet (USER_SCHEMA) for `students` students."""
    import duckdb
    import pyarrow.parquet as pq

    from oneroster_pipeline.client.schemas import ORG_SCHEMA, USER_SCHEMA

    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    orgs = con.sql(f"""
        SELECT 'dist-1' AS sourced_id, 'active' AS status, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS date_last_modified,
               'District' AS name, 'district' AS type, 'D1' AS identifier, NULL::VARCHAR AS parent_sourced_id,
               NULL::VARCHAR AS legacy_sourced_id
        UNION ALL
        SELECT printf('sch-%03d', i), 'active', TIMESTAMPTZ '2026-01-01 00:00:00+00', 'School ' || i, 'school',
               'S' || i, 'dist-1', NULL
        FROM range({SCHOOLS}) t(i)""").to_arrow_table()
    pq.write_table(orgs.cast(ORG_SCHEMA), folder / "orgs.parquet")
    base = f"""
        SELECT printf('stu-%08d', i) AS sourced_id, 'active' AS status,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' AS date_last_modified,
               'user' || i AS username, 'Given' || (i % 5000) AS given_name, 'Family' || (i % 20011) AS family_name,
               CASE WHEN i % 3 = 0 THEN 'M' || (i % 97) END AS middle_name,
               'user' || i || '@example.org' AS email, 'ID' || i AS identifier, true AS enabled_user,
               ['student'] AS roles,
               CASE WHEN i % 200 = 7 THEN ['dist-1']
                    WHEN i % 33 = 5 THEN [printf('sch-%03d', i % {SCHOOLS}), printf('sch-%03d', (i + 1) % {SCHOOLS}),
                                          'dist-1']
                    ELSE [printf('sch-%03d', i % {SCHOOLS}), 'dist-1'] END AS org_sourced_ids,
               CASE WHEN i % 33 = 5 THEN printf('sch-%03d', (i + 1) % {SCHOOLS}) END AS primary_org_sourced_id,
               [lpad(((i % 12) + 1)::VARCHAR, 2, '0')] AS grades, NULL::VARCHAR AS legacy_sourced_id,
               NULL::VARCHAR AS user_master_identifier
        FROM range({students}) t(i)"""
    con.execute(f"COPY ({base} ORDER BY sourced_id) TO '{folder / 'raw1.parquet'}' (FORMAT parquet)")
    # pull 2: 0.5% removed (i % 200 = 13), 1% changed (i % 100 = 42: a field each, by i % 5), 0.2% new
    con.execute(f"""
        COPY (
            SELECT sourced_id, status, date_last_modified, username,
                   CASE WHEN i % 100 = 42 AND i % 5 = 0 THEN given_name || 'x' ELSE given_name END AS given_name,
                   CASE WHEN i % 100 = 42 AND i % 5 = 1 THEN family_name || 'y' ELSE family_name END AS family_name,
                   middle_name,
                   CASE WHEN i % 100 = 42 AND i % 5 = 2 THEN 'new.' || email ELSE email END AS email,
                   identifier, enabled_user, roles,
                   CASE WHEN i % 100 = 42 AND i % 5 = 3 THEN [printf('sch-%03d', (i + 7) % {SCHOOLS}), 'dist-1']
                        ELSE org_sourced_ids END AS org_sourced_ids,
                   primary_org_sourced_id,
                   CASE WHEN i % 100 = 42 AND i % 5 = 4 THEN ['KG'] ELSE grades END AS grades,
                   legacy_sourced_id, user_master_identifier
            FROM ({base.replace("FROM range", ", i FROM range")})
            WHERE i % 200 <> 13
            UNION ALL
            SELECT * EXCLUDE (i) FROM ({base.replace("FROM range", ", i FROM range").replace(
                f"range({students})", f"range({students}, {students + students // 500})")})
            ORDER BY sourced_id
        ) TO '{folder / 'raw2.parquet'}' (FORMAT parquet)""")
    for n in (1, 2):  # the exact schema stage_batches writes
        table = pq.read_table(folder / f"raw{n}.parquet")
        pq.write_table(table.select(USER_SCHEMA.names).cast(USER_SCHEMA), folder / f"pull{n}.parquet")
        (folder / f"raw{n}.parquet").unlink()
    con.close()


def staged(collection: str, path: Path, now: datetime):
    import pyarrow.parquet as pq

    from oneroster_pipeline.client.paging import PullReport
    from oneroster_pipeline.warehouse.pulls import StagedPull

    rows = pq.ParquetFile(path).metadata.num_rows
    report = PullReport(collection=collection, endpoint=f"/{collection}", page_size=1000, reported_total=rows,
                        first_reported_total=rows, received=rows, rows=rows, pages=rows // 1000 + 1,
                        complete=True, incomplete_reason=None)
    return StagedPull(collection, path, rows, report, [], "bench", "full", None, now)


def child(phase: str, folder: Path, database: Path, memory_limit: str | None, dump: Path | None) -> None:
    from oneroster_pipeline.warehouse import store
    from oneroster_pipeline.warehouse.buildings import sync_buildings
    from oneroster_pipeline.warehouse.policy import HoldPolicy
    from oneroster_pipeline.warehouse.pulls import apply_org_pull, apply_student_pull

    policy = HoldPolicy() if os.environ.get("APPLY_BENCH_DEFAULT_HOLDS") else HoldPolicy(
        max_deactivate_pct=100.0, max_deactivate=10**9, building_max_deactivate_pct=100.0,
        building_max_deactivate=10**9)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    if os.environ.get("ONEROSTER_WAREHOUSE") == "ducklake":  # the district schema named after the work folder
        from oneroster_pipeline.warehouse.backends import Warehouse

        lake = Warehouse.from_env({**os.environ, store.MEMORY_LIMIT_VAR: memory_limit or ""},
                                  district_id=database.parent.name.lower())
        opened = lake.connect()
    else:
        opened = store.connect(database, memory_limit=memory_limit)
    with opened as con:
        if phase == "first":
            apply_org_pull(con, staged("orgs", folder / "orgs.parquet", start), "orgs", start)
            with store.transaction(con):
                sync_buildings(con, start)
            pull, now, run_id = staged("students", folder / "pull1.parquet", start), start, "first"
        else:
            now = start + timedelta(days=1)
            pull, run_id = staged("students", folder / "pull2.parquet", now), "second"
        rss_before = _status("VmHWM")
        started = time.perf_counter()
        outcome = apply_student_pull(con, pull, run_id, now, policy)
        seconds = time.perf_counter() - started
        rss = _status("VmHWM")
        if dump:
            target = dump / phase
            target.mkdir(parents=True, exist_ok=True)
            for table, key in DUMPED.items():
                con.execute(f"COPY (SELECT * FROM {table} ORDER BY {key}) TO '{target / table}.parquet'")
    print(json.dumps({"phase": phase, "seconds": round(seconds, 2), "peak_rss_mb": round(rss),
                      "rss_before_apply_mb": round(rss_before), "outcome": outcome.outcome,
                      "plan": outcome.plan.as_metadata(),
                      "result": outcome.result and {"imported": outcome.result.imported,
                                                    "multi_building": outcome.result.multi_building,
                                                    "ignored": outcome.result.ignored_by_reason}}))


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(a: Path, b: Path) -> int:
    import duckdb

    con, bad = duckdb.connect(), 0
    for left in sorted(a.rglob("*.parquet")):
        right = b / left.relative_to(a)
        diff = con.execute(f"""SELECT (SELECT count(*) FROM (FROM '{left}' EXCEPT ALL FROM '{right}')),
                                      (SELECT count(*) FROM (FROM '{right}' EXCEPT ALL FROM '{left}')),
                                      (SELECT count(*) FROM '{left}')""").fetchall()[0]
        ok = diff[0] == 0 and diff[1] == 0
        bad += not ok
        print(f"{'same' if ok else 'DIFFERENT'} {left.relative_to(a)} ({diff[2]} rows; only-left {diff[0]}, "
              f"only-right {diff[1]})")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, nargs="+", default=[300_000])
    parser.add_argument("--memory-limit", default=None, help="default: store.DEFAULT_MEMORY_LIMIT (128MB)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "oneroster-apply-bench",
                        help="where the staging files are kept between runs")
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--default-holds", action="store_true")
    parser.add_argument("--child", nargs=4, metavar=("PHASE", "FOLDER", "DATABASE", "DUMP"))
    parser.add_argument("--compare", nargs=2, type=Path)
    args = parser.parse_args()
    if args.compare:
        sys.exit(1 if compare(*args.compare) else 0)
    if args.child:
        phase, folder, database, dump = args.child
        child(phase, Path(folder), Path(database), args.memory_limit, Path(dump) if dump != "-" else None)
        return
    limit = ["--memory-limit", args.memory_limit] if args.memory_limit else []
    if args.default_holds:
        os.environ["APPLY_BENCH_DEFAULT_HOLDS"] = "1"
    for students in args.students:
        folder = args.data / str(students)
        if not (folder / "pull2.parquet").exists():
            started = time.perf_counter()
            write_pulls(students, folder)
            print(f"staging files for {students} students written in {time.perf_counter() - started:.1f} s")
        for attempt in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="oneroster-apply-") as work:
                first_db, second_db = Path(work) / "first.duckdb", Path(work) / "second.duckdb"
                dump = str(args.dump / str(students)) if args.dump else "-"
                first = run_child(*limit, "--child", "first", str(folder), str(first_db), dump)
                if first_db.exists():  # a lake's second sync applies into the first's schema
                    shutil.copy(first_db, second_db)
                second = run_child(*limit, "--child", "second", str(folder), str(second_db), dump)
            load = os.getloadavg()
            for result in (first, second):
                print(f"{students:>8} {result['phase']:<6} sync: {result['seconds']:>6.2f} s  peak RSS "
                      f"{result['peak_rss_mb']} MB (before apply {result['rss_before_apply_mb']} MB)  "
                      f"{result['outcome']}  {result['plan']}  {result['result']}  load {load[0]:.2f}")


if __name__ == "__main__":
    main()
