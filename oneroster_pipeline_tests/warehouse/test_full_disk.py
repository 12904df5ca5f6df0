"""The store on a full disk (issue 24, observation 9), on a real full filesystem (a tmpfs mounted by the test).

A COMMIT that fails rolls back and raises a WarehouseWriteError that says the disk is full and names the file; a
checkpoint that fails after a COMMIT (when the last connection detaches the file) is a warning naming the file,
never an error, and loses nothing (the write-ahead log is replayed when the file is next opened); either way the
process keeps using the file (a failed DETACH left a stale attachment behind, whose alias no longer existed).
"""

from __future__ import annotations

import logging

import duckdb
import pytest

from oneroster_pipeline.warehouse import duckdb_files, store
from oneroster_pipeline_tests.full_disk import fill, small_volume

ROWS = 20_000


@pytest.fixture
def volume(tmp_path):
    with small_volume(tmp_path / "volume", "8m") as mounted:
        yield mounted


def _changed(path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM t WHERE s LIKE '%changed%'").fetchall()[0][0]


def test_a_full_disk_at_commit_or_checkpoint_keeps_what_was_committed_and_says_so(volume, caplog):
    path = volume / "oneroster.duckdb"
    with store.connect(path) as con:
        con.execute(f"CREATE TABLE t AS SELECT range AS i, 'x' || range AS s FROM range({ROWS})")
    seen = set()
    for leave_kb in range(0, 2048, 64):
        filler = fill(volume, leave_kb * 1024)
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING, logger=duckdb_files.__name__):
                with store.connect(path) as con, store.transaction(con):
                    con.execute("UPDATE t SET s = s || '-changed'")
            failure = None
        except store.duckdb_files.WarehouseWriteError as error:
            failure = error
        finally:
            filler.unlink()
        warned = " ".join(r.getMessage() for r in caplog.records if "could not checkpoint" in r.getMessage())
        if failure is not None:  # rolled back: nothing of it in the file, and the error names the disk and the file
            assert _changed(path) == 0, leave_kb
            text = str(failure)
            assert text.startswith(f"ONEROSTER_DUCKDB_PATH={path}: the disk is full (no space left on device) "
                                   f"writing {path}"), text
            assert "rolled back" in text and failure.disk_full
            seen.add("commit failed")
        else:  # committed: all of it is there once space is freed, a failed checkpoint only warned
            assert _changed(path) == ROWS, leave_kb
            if warned:
                assert f"ONEROSTER_DUCKDB_PATH={path}: could not checkpoint" in warned, warned
                assert "the disk is full" in warned and f"{path}.wal" in warned and "Nothing is lost" in warned
                seen.add("checkpoint failed")
            else:
                seen.add("committed and checkpointed")
        with store.connect(path) as con:  # the process goes on using the file; undo the change for the next try
            con.execute("UPDATE t SET s = replace(s, '-changed', '')")
            con.execute("CHECKPOINT")
        if len(seen) == 3:
            break
    assert seen == {"commit failed", "checkpoint failed", "committed and checkpointed"}, seen


def test_staging_on_a_full_disk_says_so_and_names_the_file(volume):
    import pyarrow as pa

    staged = volume / "staging" / "run-students" / "students.parquet"
    schema = pa.schema([("sourced_id", pa.string())])
    filler = fill(volume, 0)
    try:
        with pytest.raises(duckdb_files.WarehouseWriteError) as raised:
            store.stage_batches([pa.table({"sourced_id": [f"s-{i}" * 50 for i in range(50_000)]})], staged, schema)
    finally:
        filler.unlink()
    text = str(raised.value)
    assert text.startswith(f"the disk is full (no space left on device) writing {staged}: nothing was written to "
                           "the DuckDB file"), text
