"""The shared DuckDB instance (warehouse/duckdb_files.py): a file is attached while connections use it and then
released exactly as closing a connection did; the schema check repairs an old file; a file this process already
has open through its own instance is shared, not refused."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from oneroster_pipeline.warehouse import duckdb_files, store

OPEN_FOR_WRITING = """
import sys, duckdb
try:
    con = duckdb.connect(sys.argv[1])
except duckdb.IOException as error:
    print("locked" if "lock" in str(error).lower() else f"error: {error}")
else:
    print("opened", con.execute("SELECT count(*) FROM sync_alerts").fetchall()[0][0])
"""


def open_in_another_process(path) -> str:
    done = subprocess.run([sys.executable, "-c", OPEN_FOR_WRITING, str(path)], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def add_alert(con, subject: str) -> None:
    store.insert_rows(con, "sync_alerts", [{"alerted_at": "2026-11-29 00:00:00+00", "job_name": "j", "run_id": "r",
                                            "kind": "k", "subject": subject, "message": "m"}])


def pull_reports_columns(con) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND table_name = 'pull_reports'").fetchall()}

def test_the_file_is_locked_while_a_connection_is_open_and_released_with_its_data_when_it_closes(tmp_path):
    path = tmp_path / "district.duckdb"
    with store.connect(path) as con:
        add_alert(con, "first")
        assert open_in_another_process(path) == "locked"
    # closed: detached and checkpointed, another process opens it and sees the committed row
    assert open_in_another_process(path) == "opened 1"
    with store.connect(path) as con:
        assert con.execute("SELECT subject FROM sync_alerts").fetchall() == [("first",)]


def test_nested_connections_share_the_attached_file_until_the_last_one_closes(tmp_path):
    path = tmp_path / "district.duckdb"
    with store.connect(path) as outer:
        with store.connect(path) as inner:
            add_alert(inner, "inner")
        # the inner one closed: the outer one still works on the same file and sees the inner one's commit
        assert outer.execute("SELECT count(*) FROM sync_alerts").fetchall()[0][0] == 1
        add_alert(outer, "outer")
        assert open_in_another_process(path) == "locked"
    assert open_in_another_process(path) == "opened 2"


def test_two_files_at_once_stay_apart(tmp_path):
    north, south = tmp_path / "north.duckdb", tmp_path / "south.duckdb"
    with store.connect(north) as a, store.connect(south) as b:
        add_alert(a, "north")
        add_alert(b, "south")
        add_alert(b, "south again")
    assert open_in_another_process(north) == "opened 1"
    assert open_in_another_process(south) == "opened 2"


def test_a_file_this_process_has_open_through_its_own_instance_is_shared_not_refused(tmp_path):
    path = tmp_path / "district.duckdb"
    with store.connect(path) as con:
        add_alert(con, "before")
    held = duckdb.connect(str(path))  # e.g. a notebook or a test holding the file in this process
    try:
        with store.connect(path) as con:
            add_alert(con, "while held")
        assert held.execute("SELECT count(*) FROM sync_alerts").fetchall()[0][0] == 2
    finally:
        held.close()


def test_a_cursor_reads_the_same_database_in_its_own_transaction(tmp_path):
    path = tmp_path / "district.duckdb"
    with store.connect(path) as con:
        add_alert(con, "committed")
        con.execute("BEGIN TRANSACTION")
        add_alert(con, "not yet committed")
        other = duckdb_files.cursor(con)
        try:
            assert other.execute("SELECT subject FROM sync_alerts").fetchall() == [("committed",)]
        finally:
            other.close()
        con.execute("ROLLBACK")


def test_the_schema_check_adds_what_an_old_file_lacks(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:  # a file from before pull_reports gained its last column
        old.execute(store.TABLES_DDL["pull_reports"].split(";")[0])
        old.execute("ALTER TABLE pull_reports DROP COLUMN rejected_by_file")
    with store.connect(path) as con:
        columns = pull_reports_columns(con)
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    assert "rejected_by_file" in columns
    assert set(store.TABLES_DDL) - {"student_sourced_ids"} <= tables


def test_a_path_problem_still_names_the_variable(tmp_path):
    (tmp_path / "a_folder.duckdb").mkdir()
    with pytest.raises(store.DuckDBPathError, match="ONEROSTER_DUCKDB_PATH=.*a_folder.duckdb: .*directory"):
        with store.connect(tmp_path / "a_folder.duckdb"):
            pass


def count_schema_checks(monkeypatch) -> list:
    checks: list = []
    real = store.ensure_schema
    monkeypatch.setattr(store, "ensure_schema", lambda con: (checks.append(1), real(con))[1])
    return checks


def test_the_schema_is_checked_once_per_attachment_and_not_again_for_a_file_as_this_process_left_it(
        tmp_path, monkeypatch):
    path = tmp_path / "district.duckdb"
    checks = count_schema_checks(monkeypatch)
    with store.connect(path) as outer:
        add_alert(outer, "first")
        with store.connect(path) as inner:  # the same attachment: already checked
            add_alert(inner, "second")
    assert len(checks) == 1
    with store.connect(path) as con:  # detached and attached again, nobody wrote it meanwhile
        assert con.execute("SELECT count(*) FROM sync_alerts").fetchall()[0][0] == 2
    assert len(checks) == 1


def test_a_file_another_program_changed_is_checked_again_and_repaired(tmp_path, monkeypatch):
    path = tmp_path / "district.duckdb"
    with store.connect(path) as con:
        add_alert(con, "first")
    checks = count_schema_checks(monkeypatch)
    with duckdb.connect(str(path)) as other:  # e.g. a migration script or a notebook that dropped a column
        other.execute("ALTER TABLE pull_reports DROP COLUMN rejected_by_file")
    with store.connect(path) as con:
        columns = pull_reports_columns(con)
    assert checks == [1] and "rejected_by_file" in columns
    path.unlink()  # a new file at the same path: checked, and created in full
    with store.connect(path) as con:
        add_alert(con, "new file")
    assert checks == [1, 1]


def test_a_change_left_only_in_the_write_ahead_log_is_checked_again(tmp_path, monkeypatch):
    path = tmp_path / "district.duckdb"
    with store.connect(path) as con:
        add_alert(con, "first")
    checks = count_schema_checks(monkeypatch)
    with duckdb.connect(str(path)) as other:  # a writer that ended without checkpointing (as one that died would)
        other.execute("PRAGMA disable_checkpoint_on_shutdown")
        other.execute("ALTER TABLE pull_reports DROP COLUMN rejected_by_file")
    assert path.with_name(path.name + ".wal").exists()
    with store.connect(path) as con:
        columns = pull_reports_columns(con)
    assert checks == [1] and "rejected_by_file" in columns
