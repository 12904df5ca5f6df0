"""The DuckLake backend in one process, on a local `.ducklake` catalog: a district's schema has exactly the DuckDB
contract's tables and columns, the unchanged sync logic leaves it row for row as it leaves a DuckDB file, a failed
apply leaves the previous snapshot current, the keys DuckLake cannot enforce are checked, time travel reads an
earlier state, and maintenance says what it did."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from oneroster_pipeline.warehouse import lake, lake_maintenance, store
from oneroster_pipeline.warehouse.alerts import Alert, send_alert
from oneroster_pipeline.warehouse.backends import Warehouse
from oneroster_pipeline.warehouse.lake_settings import LakeSettings
from oneroster_pipeline.warehouse.policy import HoldPolicy, SwitchPolicy
from oneroster_pipeline.warehouse.provider_switch import (
    Connection,
    activate_connection,
    apply_switch,
    build_crosswalk,
    rebuild_student_tables,
    require_active_connection,
)
from oneroster_pipeline.warehouse.pulls import apply_student_pull
from oneroster_pipeline_tests.warehouse.staging import (
    district_org,
    later,
    org,
    rows,
    stage,
    student,
    sync_orgs,
    sync_students,
)

from .conftest import lake_env, needs_lake
from .workers import differences

pytestmark = needs_lake

OLD = Connection("oneroster-v1p2-old", "old provider", "oneroster", "https://old.example", "1.2")
NEW = Connection("classlink-v1p1-new", "new provider", "classlink", "https://new.example", "1.1")


def warehouses(tmp_path, lake_settings, schema="north") -> list[Warehouse]:
    return [Warehouse("ducklake", lake=lake_settings, schema=schema, district_id=schema),
            Warehouse("duckdb", duckdb_path=str(tmp_path / "files" / f"{schema}.duckdb"), district_id=schema)]


def scenario(con, folder) -> list:
    """A district's life on one connection: first sync, a second with changes, held deactivations, a preview, an
    approved hold, a provider switch and its rebuild, an alert. Returns what each step returned (to compare)."""
    seen = []
    activate_connection(con, OLD, later(0))
    seen.append(sync_orgs(con, folder, [org("s1", "North Elementary", identifier="1001"),
                                        org("s2", "South Middle", identifier="1002"), org("s3", status="tobedeleted")]))
    first = [student(f"u{i}", "s1" if i % 3 else "s2", *(["s2"] if i % 7 == 0 else [])) for i in range(40)]
    first += [student("orphan", "nowhere"), student("leaving", "s3")]
    seen.append(sync_students(con, folder, first).result)
    second = [student(f"u{i}", "s1", given_name=f"Renamed {i}") if i < 5 else student(f"u{i}", "s2")
              for i in range(3, 45)]  # u0-u2 gone, u40-u44 new, some renamed, every other one moved
    seen.append(sync_students(con, folder, second, now=later(1), mode="delta").plan)
    strict = HoldPolicy(max_deactivate=1, max_deactivate_pct=1.0)
    held = sync_students(con, folder, second[5:], now=later(2), policy=strict)
    seen.append((held.outcome, held.decision.diff_hash, held.plan))
    seen.append(apply_student_pull(con, stage(folder, "students", second[3:]), "preview-run", later(3),
                                   strict, preview=True).plan)
    seen.append(sync_students(con, folder, second[5:], now=later(4), policy=strict,
                              approved_hash=held.decision.diff_hash).outcome)
    report = build_crosswalk(con, "sw1", NEW, stage(folder, "orgs", [district_org(), org("N1", "North Elementary"),
                                                                      org("N2", "South Middle", identifier="1002")]),
                             stage(folder, "students", [student(f"x{i}", "N2", identifier=f"ID-u{i}")
                                                        for i in range(5, 45)]),
                             SwitchPolicy(max_unmatched_pct=100.0, max_ambiguous=100), later(5))
    seen.append((report.status, report.counts))
    seen.append(apply_switch(con, "sw1", "switch-run", later(6), approved=True))
    seen.append(rebuild_student_tables(con, NEW.connection_id, later(7), "rebuild-run", 100.0, 10**6).result)
    store.upsert_sync_run(con, "run", job_name="full_sync", outcome="applied")
    store.upsert_sync_run(con, "run", students_created=3)
    return seen


def test_the_sync_logic_leaves_a_lake_schema_row_for_row_as_a_duckdb_file(tmp_path, local_lake):
    results = []
    for warehouse in warehouses(tmp_path, local_lake):
        folder = tmp_path / "staging" / warehouse.backend
        folder.mkdir(parents=True)
        with warehouse.connect() as con:
            results.append(scenario(con, folder))
        send_alert(Alert("sync_held", "job", "run", "subject", "message"), warehouse)
    assert results[0] == results[1]
    with lake.connect(local_lake, "north") as lake_con, duckdb.connect(str(tmp_path / "files" / "north.duckdb"),
                                                                       read_only=True) as file_con:
        assert differences(lake_con, file_con, without={"sync_alerts": ("alerted_at",)}) == []
        assert rows(lake_con, "SELECT count(*) FROM id_history")[0][0] > 0
        assert rows(lake_con, "SELECT count(*) FROM sync_alerts")[0][0] == 1
        assert rows(lake_con, "SELECT count(*) FROM student_sourced_ids WHERE NOT is_current")[0][0] > 0


def test_a_district_schema_holds_exactly_the_contract_tables_and_its_guard_lies_beside_it(tmp_path, local_lake):
    with lake.connect(local_lake, "north"), lake.reader(local_lake) as con:
        tables = rows(con, "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = "
                           "current_database() UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
                           "WHERE database_name = current_database()")
    assert sorted(t for s, t in tables if s == "north") == sorted(store.TABLES_DDL)
    assert [(s, t) for s, t in tables if s != "north"] == [(lake.GUARD_SCHEMA, "north")]
    assert not any("PRIMARY KEY" in ddl or "UNIQUE" in ddl for ddl in lake.LAKE_DDL.values())


def test_the_districts_complete_are_found_by_one_catalog_query_and_an_incomplete_one_is_completed(local_lake):
    lake.create_lake(local_lake, ["a", "b-2", "c"])
    with lake.reader(local_lake) as con:
        alias = con.execute("SELECT current_database()").fetchall()[0][0]
        assert lake.complete_districts(con, alias) == {"a", "b-2", "c"}
        con.execute(f'DROP TABLE {alias}."b-2".sync_alerts')  # a district whose creation was cut short
        con.execute(f"ALTER TABLE {alias}.c.students DROP COLUMN email")  # or whose table lost a column
        assert lake.complete_districts(con, alias) == {"a"}
        assert lake.complete_districts(con, alias, "a") == {"a"}
        assert lake.complete_districts(con, alias, "c") == set()
    assert local_lake.key not in lake._shared().lakes  # a local catalog is detached when unused: nothing known of it
    with lake.connect(local_lake, "b-2") as con:  # every other district found complete at once; b-2 completed
        assert con.execute("SELECT count(*) FROM sync_alerts").fetchall() == [(0,)]
    with lake.reader(local_lake) as con:
        assert lake.complete_districts(con, con.execute("SELECT current_database()").fetchall()[0][0]) == {"a", "b-2"}
    with lake.connect(local_lake, "a") as con:  # a guard row deleted by hand: the next write says so
        con.execute(f"DELETE FROM {con.execute('SELECT current_database()').fetchall()[0][0]}.oneroster_guard.a")
        with pytest.raises(lake.LakeError, match="guard row"):
            with store.transaction(con):
                store.upsert_sync_run(con, "r1", job_name="full_sync")
        assert con.execute("SELECT count(*) FROM sync_runs").fetchall() == [(0,)]


def test_a_failed_apply_leaves_the_previous_snapshot_current(tmp_path, local_lake):
    with lake.connect(local_lake, "main") as con:
        sync_orgs(con, tmp_path, [org("s1")])
        sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1")])
        before, tables = lake.snapshot_at(con), {t: rows(con, f"SELECT * FROM {t} ORDER BY ALL")
                                                 for t in store.TABLES_DDL}

        def fail(done):
            raise RuntimeError("the run died before its commit")

        with pytest.raises(RuntimeError, match="died"):
            apply_student_pull(con, stage(tmp_path, "students", [student("c", "s1")]), "r2", later(1),
                               HoldPolicy(), before_commit=fail)
        assert lake.snapshot_at(con) == before
        assert {t: rows(con, f"SELECT * FROM {t} ORDER BY ALL") for t in store.TABLES_DDL} == tables


def test_a_key_the_duckdb_file_enforces_is_checked_before_commit(tmp_path, local_lake):
    with lake.connect(local_lake, "main") as con:
        store.upsert_sync_run(con, "run-1", job_name="full_sync")
        require_active_connection(con, type("S", (), {"needs_demo_provider": True, "provider": "demo",
                                                      "version": None})(), later(0))
        before = lake.snapshot_at(con)
        with pytest.raises(lake.LakeInvariantError, match=r"sync_runs.run_id = run-1"):
            with store.transaction(con):  # a writer that inserts a key notes its table (as the three writers do)
                con.execute("INSERT INTO sync_runs (run_id) VALUES ('run-1')")
                store.KEYED_INSERTS.setdefault(con, set()).add("sync_runs")
        with pytest.raises(lake.LakeInvariantError, match=r"provider_connections.connection_id"):
            with store.transaction(con):
                con.execute("INSERT INTO provider_connections SELECT * FROM provider_connections")
                store.KEYED_INSERTS.setdefault(con, set()).add("provider_connections")
        assert lake.snapshot_at(con) == before
        assert rows(con, "SELECT count(*) FROM sync_runs") == [(1,)]
        with store.transaction(con):  # the writers note what they insert; a new transaction starts with nothing
            assert store.KEYED_INSERTS.get(con) is None
            store.upsert_sync_run(con, "run-2", job_name="full_sync")
            assert store.KEYED_INSERTS.get(con) == {"sync_runs"}
            store.upsert_sync_run(con, "run-2", outcome="applied")  # an update inserts nothing
        assert rows(con, "SELECT count(*) FROM sync_runs") == [(2,)]


def test_every_statement_that_inserts_a_key_notes_its_table_for_the_lake_check():
    """The lake checks a key only in the tables a transaction inserted into (store.KEYED_INSERTS): a new INSERT into
    a keyed table that does not note it would go unchecked."""
    package = Path(lake.__file__).parents[1]
    found = {}
    for path in package.rglob("*.py"):
        text = path.read_text()
        for table in lake.KEYS:
            if re.search(rf"INSERT INTO {table}\b", text):
                found[f"{path.relative_to(package)}:{table}"] = (
                    text.count(f'KEYED_INSERTS.setdefault(con, set()).add("{table}")') >=
                    len(re.findall(rf"INSERT INTO {table}\b", text)))
    assert len(found) == 3 and all(found.values()), found


def test_time_travel_reads_the_students_of_a_building_as_they_were(tmp_path, local_lake):
    with lake.connect(local_lake, "main") as con:
        sync_orgs(con, tmp_path, [org("s1"), org("s2")])
        sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1"), student("c", "s2")])
        time.sleep(0.01)
        between = datetime.now(timezone.utc)
        time.sleep(0.01)
        sync_students(con, tmp_path, [student("a", "s2"), student("b", "s1", given_name="Bea"),
                                      student("c", "s2")], now=later(1))
        then = lake.students_in_building_as_of(con, "s1", between)
        assert [(s["sourced_id"], s["given_name"]) for s in then] == [("a", "Given a"), ("b", "Given b")]
        now = lake.students_in_building_as_of(con, "s1", datetime.now(timezone.utc))
        assert [(s["sourced_id"], s["given_name"]) for s in now] == [("b", "Bea")]


def test_maintenance_says_what_it_did(tmp_path, local_lake):
    with lake.connect(local_lake, "north") as con:
        sync_orgs(con, tmp_path, [org("s1")])
        for hour in range(3):
            sync_students(con, tmp_path, [student(f"u{i}", "s1", grades=[str(hour)]) for i in range(30)],
                          now=later(hour))
    flushed = lake_maintenance.flush_inlined_data(local_lake, "north")
    assert flushed.counts["rows_flushed"] > 0
    merged = lake_maintenance.merge_adjacent_files(local_lake, "north")
    assert merged.counts["files_merged"] >= merged.counts["files_written"] > 0
    stats = lake_maintenance.lake_stats(local_lake)
    expired = lake_maintenance.expire_snapshots(local_lake, older_than_days=0)
    assert expired.counts == {"snapshots_expired": stats["snapshots"] - 1, "snapshots_kept": 1}
    cleaned = lake_maintenance.cleanup_old_files(local_lake, older_than_days=0)
    assert cleaned.counts["files_deleted"] > 0
    after = lake_maintenance.lake_stats(local_lake)
    assert after["snapshots"] == 1 and after["files_to_clean_up"] == 0
    with lake.connect(local_lake, "north") as con:  # the current state is untouched
        assert rows(con, "SELECT count(*), min(grade), max(grade) FROM students") == [(30, "2", "2")]


def test_a_process_keeps_one_idle_lake_attached_and_leaves_the_one_it_moved_on_from(tmp_path, postgres_server):
    """Each attached lake holds its whole catalog in memory: a process syncing districts of several lakes (a batched
    run over a districts file with many lakes) attaches the next lake only after detaching the idle one."""
    first, second = (LakeSettings.from_env(lake_env("postgres:" + postgres_server.new_database("lake").libpq,
                                                    tmp_path / f"data-{n}")) for n in (1, 2))

    def attached() -> set[str]:
        return {lk.settings.key for lk in lake._shared().lakes.values()}

    with lake.connect(first, "north") as con:
        store.upsert_sync_run(con, "r1", job_name="full_sync")
    assert first.key in attached()  # a PostgreSQL lake stays attached while the process stays with it
    with lake.connect(second, "south") as con:
        assert first.key not in attached() and second.key in attached()
        with lake.connect(first, "north") as again:  # a lake still in use is never detached under it
            assert again.execute("SELECT run_id FROM sync_runs").fetchall() == [("r1",)]
            assert con.execute("SELECT count(*) FROM sync_runs").fetchall() == [(0,)]
            assert {first.key, second.key} <= attached()
