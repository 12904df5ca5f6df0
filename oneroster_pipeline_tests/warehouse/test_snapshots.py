"""Cross-district snapshots: two district DuckDB files synced with the warehouse's own functions, published as
Parquet and queried as one view per table with `district_id`; re-publish replaces; a reader during 20 publishes never
fails or sees a partial file; a crash's temp file is never read; the command line; and a query while another process
holds a district's DuckDB file open for writing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oneroster_pipeline.warehouse import snapshots, store
from oneroster_pipeline.warehouse.snapshots import (
    SNAPSHOT_TABLES,
    SnapshotError,
    open_cross_district,
    publish_snapshot,
    remove_snapshot,
    snapshot_file,
)

from .staging import later, org, student, sync_orgs, sync_students

REPO = Path(__file__).resolve().parents[2]

NORTH_SCHOOLS = [org("n1", "North High"), org("n2", "North Middle")]
NORTH_STUDENTS = [student("a", "n1"), student("b", "n1"), student("c", "n2"), student("d", "n1", "n2", primary="n2"),
                  student("x", "nowhere")]  # x: no school org, ignored
SOUTH_SCHOOLS = [org("s1", "South Elementary")]
SOUTH_STUDENTS = [student("p", "s1"), student("q", "s1")]
README_SQL = """
SELECT s.district_id, b.name AS building, count(*) AS students
FROM students s JOIN buildings b USING (district_id, building_id)
WHERE s.status = 'active'
GROUP BY ALL ORDER BY ALL"""


def make_district(path: Path, stage: Path, schools: list[dict], students: list[dict]) -> Path:
    """A district's own DuckDB file, synced by the warehouse's building and student sync."""
    stage.mkdir(parents=True, exist_ok=True)
    with store.connect(path) as con:
        sync_orgs(con, stage, schools)
        outcome = sync_students(con, stage, students)
        assert outcome.outcome == "applied"
    return path


def publish(path: Path, district_id: str, root: Path) -> dict[str, int]:
    with store.connect(path) as con:
        return publish_snapshot(con, district_id, root)


def counts(con, table: str) -> dict[str, int]:
    return dict(con.execute(f"SELECT district_id, count(*) FROM {table} GROUP BY ALL").fetchall())


def contract(table: str) -> list[tuple[str, str]]:
    with duckdb.connect(":memory:") as scratch:
        store.ensure_schema(scratch)
        return [row[:2] for row in scratch.execute(f"DESCRIBE {table}").fetchall()]


@pytest.fixture
def districts(tmp_path) -> dict[str, Path]:
    return {"north": make_district(tmp_path / "north.duckdb", tmp_path / "stage-n", NORTH_SCHOOLS, NORTH_STUDENTS),
            "south": make_district(tmp_path / "south.duckdb", tmp_path / "stage-s", SOUTH_SCHOOLS, SOUTH_STUDENTS)}


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "snapshots"


def test_two_districts_are_one_view_per_table_with_district_id(districts, root):
    published = {d: publish(path, d, root) for d, path in districts.items()}
    assert published["north"] == {"oneroster_orgs": 3, "buildings": 2, "students": 4, "student_buildings": 5,
                                  "ignored_students": 1}
    assert published["south"] == {"oneroster_orgs": 2, "buildings": 1, "students": 2, "student_buildings": 2,
                                  "ignored_students": 0}
    with open_cross_district(root) as con:
        for table in SNAPSHOT_TABLES:
            assert [row[:2] for row in con.execute(f"DESCRIBE {table}").fetchall()] == [
                *contract(table), ("district_id", "VARCHAR")], table
            assert counts(con, table) == {d: n for d in published if (n := published[d][table])}, table
        # the README's example: students per district and building
        assert con.execute(README_SQL).fetchall() == [
            ("north", "North High", 2), ("north", "North Middle", 2), ("south", "South Elementary", 2)]
        # each district's own ids (both start at 1): district_id tells them apart
        assert con.execute("SELECT district_id, sourced_id FROM students WHERE student_id = 1 ORDER BY 1").fetchall() \
            == [("north", "a"), ("south", "p")]
        assert con.execute("SELECT district_id, sourced_id, reason FROM ignored_students").fetchall() == [
            ("north", "x", "no_school_org")]


def test_republishing_replaces_the_district_and_leaves_no_temp_file(districts, root, tmp_path):
    for d, path in districts.items():
        publish(path, d, root)
    with store.connect(districts["south"]) as con:
        sync_students(con, tmp_path / "stage-s", [*SOUTH_STUDENTS, student("r", "s1"), student("t", "s1")],
                      now=later(1))
        assert publish_snapshot(con, "south", root)["students"] == 4
    with open_cross_district(root) as con:
        assert counts(con, "students") == {"north": 4, "south": 4}
        assert counts(con, "buildings") == {"north": 2, "south": 1}
    for table in SNAPSHOT_TABLES:
        assert sorted(p.name for p in snapshot_file(root, table, "south").parent.iterdir()) == ["data.parquet"]


def test_a_district_published_later_shows_up_in_the_next_query(districts, root):
    publish(districts["north"], "north", root)
    with open_cross_district(root) as con:
        assert counts(con, "students") == {"north": 4}
        publish(districts["south"], "south", root)
        assert counts(con, "students") == {"north": 4, "south": 2}


def test_no_snapshot_yet_gives_empty_views_with_the_tables_columns(tmp_path):
    with open_cross_district(tmp_path / "nothing-here") as con:
        for table in SNAPSHOT_TABLES:
            assert [row[:2] for row in con.execute(f"DESCRIBE {table}").fetchall()] == [
                *contract(table), ("district_id", "VARCHAR")]
            assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]


def test_a_reader_during_20_publishes_never_fails_or_sees_a_partial_file(tmp_path, root):
    # two versions of the same district, published alternately under one id
    small = make_district(tmp_path / "small.duckdb", tmp_path / "stage-1", NORTH_SCHOOLS, NORTH_STUDENTS[:2])
    big = make_district(tmp_path / "big.duckdb", tmp_path / "stage-2", NORTH_SCHOOLS,
                        [student(f"s{i}", "n1", "n2") for i in range(3000)])
    valid = {"students": {2, 3000}, "student_buildings": {2, 6000}}  # rows of each version
    publish(small, "north", root)
    seen, errors, done = [], [], threading.Event()

    def read() -> None:
        while not done.is_set():
            try:  # a new connection each time too: creating the views reads the files' schemas
                with open_cross_district(root) as con:
                    for table in valid:
                        seen.append((table, con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]))
            except Exception as error:  # noqa: BLE001 - any failure of the reader is the finding
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    cons = [duckdb.connect(str(small), read_only=True), duckdb.connect(str(big), read_only=True)]
    try:
        # at least 20 publishes, on until the reader has read 10 times while publishing (a busy machine), and an even
        # number of them, so the big version is the last one published
        i = 0
        while i < 20 or i % 2 or (len(seen) < 10 and i < 400 and not errors):
            assert publish_snapshot(cons[i % 2], "north", root)["students"] == (2, 3000)[i % 2]
            i += 1
        during = len(seen)
        deadline = time.monotonic() + 30
        while len(seen) < during + 4 and not errors and time.monotonic() < deadline:  # a few reads after the last
            time.sleep(0.01)
    finally:
        done.set()
        reader.join(timeout=60)
        for con in cons:
            con.close()
    assert errors == []
    assert during >= 10, during  # the reader really ran while publishing
    for table, rows in valid.items():
        found = {n for t, n in seen if t == table}
        assert found <= rows, (table, found)
    assert seen[-1] == ("student_buildings", 6000) or seen[-2] == ("student_buildings", 6000)  # the last: big


def test_a_crashs_temp_file_is_never_read_and_a_stale_one_is_removed(districts, root):
    publish(districts["north"], "north", root)
    folder = snapshot_file(root, "students", "north").parent
    (folder / ".tmp-crashed.parquet").write_bytes(b"PAR1 half a file")  # not even Parquet
    extra = pa.Table.from_pylist([{"student_id": 99, "sourced_id": "ghost"}])
    pq.write_table(extra, folder / ".tmp-recent.parquet")  # a valid file under a temp name: still never read
    old = time.time() - snapshots.STALE_TEMP_SECONDS - 60
    os.utime(folder / ".tmp-crashed.parquet", (old, old))
    with open_cross_district(root) as con:
        assert counts(con, "students") == {"north": 4}
        assert con.execute("SELECT count(*) FROM students WHERE sourced_id = 'ghost'").fetchall() == [(0,)]
    publish(districts["north"], "north", root)
    # the stale leftover is gone; a recent one may be another publish in progress, so it stays
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-recent.parquet", "data.parquet"]


def test_a_failed_publish_replaces_nothing(districts, root, tmp_path):
    publish(districts["north"], "north", root)
    before = snapshot_file(root, "students", "north").read_bytes()
    broken = tmp_path / "broken.duckdb"
    make_district(broken, tmp_path / "stage-b", NORTH_SCHOOLS, NORTH_STUDENTS[:1])
    with store.connect(broken) as con:
        con.execute("DROP TABLE ignored_students")  # the last table: every other file is already written
        with pytest.raises(duckdb.CatalogException):
            publish_snapshot(con, "north", root)
    assert snapshot_file(root, "students", "north").read_bytes() == before
    for table in SNAPSHOT_TABLES:
        assert [p.name for p in snapshot_file(root, table, "north").parent.iterdir()] == ["data.parquet"]


def test_remove_snapshot_and_invalid_ids(districts, root):
    for d, path in districts.items():
        publish(path, d, root)
    assert remove_snapshot("south", root) == list(SNAPSHOT_TABLES)
    assert remove_snapshot("south", root) == []
    with open_cross_district(root) as con:
        assert counts(con, "students") == {"north": 4}
    assert not (root / "students" / "district_id=south").exists()
    for bad in ("../north", "North", "", "a/b", "a=b"):
        with pytest.raises(SnapshotError, match="not valid"), duckdb.connect(":memory:") as con:
            publish_snapshot(con, bad, root)
    with pytest.raises(SnapshotError, match="not a table"):
        open_cross_district(root, tables=["sync_secrets"])


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oneroster_pipeline.warehouse.snapshots", *args],
                          check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_the_command_line_prints_the_result(districts, root):
    for d, path in districts.items():
        publish(path, d, root)
    # the README's command and query, as written there
    readme = (REPO / "README.md").read_text()
    assert f'.venv/bin/python -m oneroster_pipeline.warehouse.snapshots "{README_SQL}"' in readme
    shown = cli(README_SQL, env={snapshots.SNAPSHOT_DIR_VAR: str(root)})
    assert shown.returncode == 0, shown.stderr
    assert [line.split("│")[1:4] for line in shown.stdout.splitlines() if "South Elementary" in line] == [
        [" south       ", " South Elementary ", "        2 "]]
    assert shown.stdout.strip() in readme  # the README shows this very output
    sql = "SELECT district_id, count(*) AS students FROM students GROUP BY ALL ORDER BY 1"
    table = cli("--root", str(root), sql)
    assert table.returncode == 0, table.stderr
    assert "north" in table.stdout and "south" in table.stdout and "students" in table.stdout
    # the root from ONEROSTER_SNAPSHOT_DIR, CSV output
    as_csv = cli("--csv", sql, env={snapshots.SNAPSHOT_DIR_VAR: str(root)})
    assert (as_csv.returncode, as_csv.stdout) == (0, "district_id,students\nnorth,4\nsouth,2\n"), as_csv.stderr
    summary = cli("--csv", "--root", str(root))  # no SQL: rows per table and district
    assert "buildings,north,2" in summary.stdout.replace('"', "") and "students,south,2" in summary.stdout
    failed = cli("--root", str(root), "SELECT * FROM no_such_table")
    assert failed.returncode == 1 and "query failed" in failed.stderr and "no_such_table" in failed.stderr


HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])  # a running sync: the write connection, mid-transaction
con.execute("BEGIN TRANSACTION")
con.execute("DELETE FROM students")
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_query_works_while_a_sync_holds_the_district_file(districts, root):
    for d, path in districts.items():
        publish(path, d, root)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(districts["north"])], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        # the district's DuckDB file is locked: even a read-only open fails
        with pytest.raises(duckdb.IOException, match="(?i)lock"):
            duckdb.connect(str(districts["north"]), read_only=True)
        started = time.monotonic()
        with open_cross_district(root) as con:
            assert counts(con, "students") == {"north": 4, "south": 2}
        result = cli("--csv", "--root", str(root), "SELECT count(*) AS n FROM students WHERE district_id = 'north'")
        assert (result.returncode, result.stdout) == (0, "n\n4\n"), result.stderr
        assert time.monotonic() - started < store.LOCK_WAIT_SECONDS  # no waiting on the lock either
        assert holder.poll() is None  # the sync was holding the file the whole time
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
