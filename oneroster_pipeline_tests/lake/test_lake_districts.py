"""Many writers, one lake: a PostgreSQL catalog (a throwaway Debian PostgreSQL) and a local data path.

Three districts on three different providers (demo providers over loopback HTTP: the spec 1.2, ClassLink's 1.1
with OAuth 1.0a, Aeries' 1.2) are synced by three processes at once into three schemas of one lake, each pull also
applied to the district's own DuckDB file: every schema equals its file row for row. A second sync's changes are
visible, and the first state is read back by time travel ("students of building X as of <time>"). Two applies of
one district at once apply once: DuckLake refuses the later commit (LakeConflictError), even when both transactions
only insert (two building syncs creating the same school), which DuckLake alone would let through."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.demo import personas
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings
from oneroster_pipeline.warehouse import lake, store
from oneroster_pipeline.warehouse.backends import Warehouse
from oneroster_pipeline.warehouse.lake_settings import LakeSettings
from oneroster_pipeline.warehouse.pulls import apply_org_pull, apply_student_pull, stage_pull

from .conftest import needs_lake
from .workers import (
    CLIENT_ID,
    CLIENT_SECRET,
    POLICY,
    DistrictJob,
    apply_students_once,
    differences,
    open_district,
    record_run,
    run_in_processes,
    sync_buildings_once,
    sync_district,
)

pytestmark = needs_lake

DISTRICTS = {  # id: (persona, OneRoster version, shape)
    "north": ("spec", "1.2", DistrictShape(schools=3, students=240, seed=11)),
    "south": ("classlink", "1.1", DistrictShape(schools=4, students=300, seed=12)),
    "east-2": ("aeries", "1.2", DistrictShape(schools=2, students=180, seed=13)),
}
T1 = datetime(2026, 9, 1, 6, 0, tzinfo=timezone.utc)
T2 = T1 + timedelta(days=1)
BUILDING_QUERY = """
    SELECT s.student_id, s.sourced_id, s.given_name, s.family_name, s.grade, s.status, l.is_primary
    FROM student_buildings l JOIN students s ON s.student_id = l.student_id
    WHERE l.building_sis = ? ORDER BY s.student_id"""


def provider(persona: str, shape: DistrictShape) -> DemoProvider:
    auth = personas.PERSONAS[persona].auth
    return DemoProvider(shape, DemoSettings(persona=persona, auth=auth, client_id=CLIENT_ID,
                                            client_secret=CLIENT_SECRET, page_cap=70))


def job(district: str, running: DemoProvider, version: str, lake_settings: LakeSettings, tmp_path) -> DistrictJob:
    auth = running.settings.auth
    return DistrictJob(district, running.base_url(version), auth, running.token_url if auth == "oauth2" else None,
                       [Warehouse("ducklake", lake=lake_settings, schema=district, district_id=district),
                        Warehouse("duckdb", duckdb_path=str(tmp_path / "files" / f"{district}.duckdb"),
                                  district_id=district)],
                       str(tmp_path / "staging" / district))


def assert_exact(lake_settings: LakeSettings, district: str, path) -> None:
    with lake.connect(lake_settings, district) as lake_con, duckdb.connect(str(path), read_only=True) as file_con:
        assert differences(lake_con, file_con) == [], f"district {district}: the lake differs from its DuckDB file"


def test_three_districts_synced_at_once_into_one_lake_each_exact_then_changed_and_read_back(tmp_path, pg_lake):
    with provider(*DISTRICTS["north"][::2]) as north, provider(*DISTRICTS["south"][::2]) as south, \
            provider(*DISTRICTS["east-2"][::2]) as east:
        running = {"north": north, "south": south, "east-2": east}
        jobs = {d: job(d, running[d], DISTRICTS[d][1], pg_lake, tmp_path) for d in DISTRICTS}
        # a new catalog: the three processes' first attaches take turns (the advisory lock), then write at once
        results = run_in_processes([(sync_district, jobs[d], f"run-1-{d}", T1) for d in DISTRICTS])
        assert [r["ok"] for r in results] == [True] * 3, [r.get("trace") for r in results]
        assert {r["mode"] for r in results} == {"full"}
        for d in DISTRICTS:
            assert_exact(pg_lake, d, tmp_path / "files" / f"{d}.duckdb")
        with lake.reader(pg_lake) as con:
            assert lake.district_schemas(con) == sorted(DISTRICTS)
            per_district = dict(con.execute(
                f"SELECT district_id, count(*) FROM ({lake.across_districts_sql(con, 'students')}) GROUP BY 1"
            ).fetchall())
            schema = con.execute("SELECT current_schema()").fetchall()
            one_by_one = list(lake.rows_per_district(con, "SELECT count(*), min(sourced_id) FROM students"))
            assert con.execute("SELECT current_schema()").fetchall() == schema  # left as it was
        assert set(per_district) == set(DISTRICTS) and min(per_district.values()) > 150
        assert [(d, n) for d, n, _ in one_by_one] == sorted(per_district.items())  # the same counts, in order
        for d, _, first in one_by_one:  # each district's own rows
            assert first in running[d].district.student_ids()

        # the state after the first sync, kept: the DuckDB files as they are now, and the time
        for d in DISTRICTS:
            shutil.copy(tmp_path / "files" / f"{d}.duckdb", tmp_path / "files" / f"{d}-first.duckdb")
        time.sleep(0.05)
        between = datetime.now(timezone.utc)
        time.sleep(0.05)

        # the providers change: a student of north moves school and is renamed, south opens a school, one student
        # of east-2 leaves (a full pull sees it)
        district = north.district
        mover = district.student_ids()[0]
        old_school, *_ = district.student_orgs(district.student_index(mover))
        new_school = next(s for s in district.school_ids() if s != old_school)
        district.update_student(mover, orgs=[new_school], givenName="Moved")
        added = south.district.add_school("Harbor Academy")
        leaver = east.district.student_ids()[5]
        east.district.remove_student(leaver)
        jobs["east-2"].forced_mode = "full"
        results = run_in_processes([(sync_district, jobs[d], f"run-2-{d}", T2) for d in DISTRICTS])
        assert [r["ok"] for r in results] == [True] * 3, [r.get("trace") for r in results]
        assert {r["district"]: r["mode"] for r in results} == {"north": "delta", "south": "delta", "east-2": "full"}
        for d in DISTRICTS:
            assert_exact(pg_lake, d, tmp_path / "files" / f"{d}.duckdb")

    with lake.connect(pg_lake, "north") as con:  # the second sync's changes are the current state
        assert con.execute("SELECT building_sis, given_name FROM students WHERE sourced_id = ?",
                           [mover]).fetchall() == [(new_school, "Moved")]
        now_in_old = store.query_dicts(con, BUILDING_QUERY, [old_school])
        then_in_old = lake.students_in_building_as_of(con, old_school, between)
    with duckdb.connect(str(tmp_path / "files" / "north-first.duckdb"), read_only=True) as first:
        assert then_in_old == store.query_dicts(first, BUILDING_QUERY, [old_school])  # time travel: the first state
    assert mover in {s["sourced_id"] for s in then_in_old} and mover not in {s["sourced_id"] for s in now_in_old}
    with lake.connect(pg_lake, "south") as con:
        assert con.execute("SELECT count(*) FROM buildings WHERE building_sis = ?", [added]).fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM students WHERE building_sis = ?", [added]).fetchall()[0][0] > 0
    with lake.connect(pg_lake, "east-2") as con:
        assert con.execute("SELECT status FROM students WHERE sourced_id = ?", [leaver]).fetchall() == [("inactive",)]
        assert lake.snapshot_at(con, between) < lake.snapshot_at(con)


def test_two_applies_of_one_district_at_once_apply_once(tmp_path, pg_lake):
    with provider("spec", DistrictShape(schools=3, students=200, seed=21)) as running:
        the_job = job("west", running, "1.2", pg_lake, tmp_path)
        lake_house, file_house = the_job.warehouses
        first = sync_district(the_job, "run-first", T1)  # the district's first sync, on both, in this process
        assert first["ok"], first.get("trace")
        running.district.update_student(running.district.student_ids()[3], givenName="Changed")
        with open_source(the_job.settings()) as source:  # the next pull, staged once, applied twice at once
            pull = stage_pull(source, "students", tmp_path / "pull")
    results = run_in_processes([(apply_students_once, lake_house, pull, "run-a", T2),
                                (apply_students_once, lake_house, pull, "run-b", T2)])
    assert sorted(r["ok"] for r in results) == [False, True], results
    winner, loser = sorted(results, key=lambda r: not r["ok"])
    assert loser["type"] == "LakeConflictError", loser
    assert "another run wrote this district" in loser["error"] and "nothing of it was applied" in loser["error"]
    with file_house.connect() as con:  # the lake holds one apply: the DuckDB file after that one apply
        apply_student_pull(con, pull, winner["run_id"], T2, POLICY.hold,
                           before_commit=lambda done: record_run(con, winner["run_id"], outcome=done.outcome))
    assert_exact(pg_lake, "west", file_house.duckdb_path)
    with lake.connect(pg_lake, "west") as con:
        assert con.execute("SELECT run_id FROM pull_reports WHERE fetched_at = ?", [T2]).fetchall() == [
            (winner["run_id"],)]
        assert con.execute("SELECT given_name FROM students WHERE given_name = 'Changed'").fetchall() == [
            ("Changed",)]


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "without the guard"])
def test_two_building_syncs_of_one_district_at_once(tmp_path, pg_lake, guarded):
    """Both transactions only insert the same new buildings: DuckLake alone sees no conflict and both commit (the
    building repeats); the guard makes the later one fail."""
    with provider("spec", DistrictShape(schools=3, students=30, seed=31)) as running:
        lake_house = job("west", running, "1.2", pg_lake, tmp_path).warehouses[0]
        with open_source(job("west", running, "1.2", pg_lake, tmp_path).settings()) as source:
            orgs = stage_pull(source, "orgs", tmp_path / "pull")
    with lake_house.connect() as con:
        apply_org_pull(con, orgs, "orgs-run", T1)
    results = run_in_processes([(sync_buildings_once, lake_house, "run-a", T1, guarded),
                                (sync_buildings_once, lake_house, "run-b", T1, guarded)])
    with lake.connect(pg_lake, "west") as con:
        repeated = con.execute("SELECT count(*) - count(DISTINCT building_sis) FROM buildings").fetchall()[0][0]
        schools = con.execute("SELECT count(*) FROM oneroster_orgs WHERE type = 'school' AND status = 'active'"
                              ).fetchall()[0][0]
    if guarded:
        assert sorted(r["ok"] for r in results) == [False, True], results
        assert next(r for r in results if not r["ok"])["type"] == "LakeConflictError"
        assert repeated == 0
    else:  # what the guard is for: DuckLake lets both insert-only commits through
        assert [r["ok"] for r in results] == [True, True], results
        assert repeated == schools > 0


def test_a_new_catalog_opened_by_four_processes_at_once(pg_lake):
    """The first ATTACH creates the catalog's tables; four processes doing it at once take turns (an advisory lock),
    then each creates its own district's schema."""
    results = run_in_processes([(open_district, pg_lake, f"d{i}") for i in range(4)])
    assert results == [{"ok": True, "students": 0}] * 4, results
    with lake.reader(pg_lake) as con:
        assert lake.district_schemas(con) == ["d0", "d1", "d2", "d3"]


def test_create_lake_is_the_setup_step_before_the_writers(pg_lake):
    first = lake.create_lake(pg_lake, ["north", "south"])
    assert first["created_schemas"] == ["north", "south"] and first["snapshot_id"] > 0
    again = lake.create_lake(pg_lake, ["north", "south", "east"])
    assert again["created_schemas"] == ["east"] and again["snapshot_id"] > first["snapshot_id"]
    assert lake.create_lake(pg_lake, ["east"]) == {"created_schemas": [], "snapshot_id": again["snapshot_id"]}
