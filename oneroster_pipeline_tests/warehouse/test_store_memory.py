"""DuckDB runs under a memory cap (ONEROSTER_DUCKDB_MEMORY_LIMIT) and the sync stays correct beneath it."""

import os

import duckdb
import pytest

from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.warehouse import store

from ..defs.sync_harness import SyncHarness, demo_provider, oneroster_for


def connect_as_configured(path):
    """store.connect with the limit the environment sets (the core reads no variable: its caller passes it)."""
    return store.connect(path, memory_limit=os.environ.get(store.MEMORY_LIMIT_VAR))


def memory_limit_of(path) -> str:
    with connect_as_configured(path) as con:
        return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def test_memory_limit_defaults_to_128mb_and_follows_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(store.MEMORY_LIMIT_VAR, raising=False)
    default = memory_limit_of(tmp_path / "a.duckdb")
    monkeypatch.setenv(store.MEMORY_LIMIT_VAR, "1GB")
    raised = memory_limit_of(tmp_path / "a.duckdb")
    assert (default, raised) == ("122.0 MiB", "953.6 MiB")  # DuckDB shows 128MB and 1GB in MiB


def test_a_bad_memory_limit_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(store.MEMORY_LIMIT_VAR, "lots")
    with pytest.raises(ValueError, match="ONEROSTER_DUCKDB_MEMORY_LIMIT='lots'"):
        memory_limit_of(tmp_path / "b.duckdb")


def test_running_out_of_the_limit_names_the_variable_and_keeps_the_tables(tmp_path, monkeypatch):
    monkeypatch.setenv(store.MEMORY_LIMIT_VAR, "16MB")
    path = tmp_path / "c.duckdb"
    with connect_as_configured(path) as con:
        con.execute("CREATE TABLE kept AS SELECT 1 AS x")
    with pytest.raises(store.MemoryLimitError, match="raise ONEROSTER_DUCKDB_MEMORY_LIMIT") as raised:
        with connect_as_configured(path) as con, store.transaction(con):
            con.execute("DELETE FROM kept")
            con.execute("SELECT string_agg(i::VARCHAR, ',' ORDER BY i DESC) FROM range(20000000) t(i)")
    assert "15.2 MiB" in str(raised.value) and "the tables are as they were" in str(raised.value)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT x FROM kept").fetchall() == [(1,)]


def test_running_out_after_a_commit_does_not_claim_the_tables_unchanged(tmp_path, monkeypatch):
    """A sync step commits, then a statement after it (a preview, the snapshot) runs out: the commit stays, and the
    error must not say that the tables are as before."""
    monkeypatch.setenv(store.MEMORY_LIMIT_VAR, "16MB")
    path = tmp_path / "d.duckdb"
    with pytest.raises(store.MemoryLimitError) as raised:
        with connect_as_configured(path) as con:
            with store.transaction(con):
                con.execute("CREATE TABLE applied AS SELECT 2 AS x")
            con.execute("SELECT string_agg(i::VARCHAR, ',' ORDER BY i DESC) FROM range(20000000) t(i)")
    assert "committed before stays" in str(raised.value) and "as they were" not in str(raised.value)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT x FROM applied").fetchall() == [(2,)]


def test_student_sync_before_building_sync_ignores_everyone_with_their_schools_in_order(tmp_path, monkeypatch):
    """No building yet: every student is ignored, the detail names each school org in the provider's order."""
    monkeypatch.setenv(store.MEMORY_LIMIT_VAR, "48MB")
    with demo_provider(DistrictShape(schools=3, students=400, seed=5)) as provider:
        harness = SyncHarness(tmp_path, oneroster_for(provider))
        harness.run("student_sync", raise_on_error=False)
    ignored = harness.rows("SELECT sourced_id, reason, detail FROM ignored_students")
    users = {sid: orgs for sid, orgs in harness.rows("SELECT sourced_id, org_sourced_ids FROM oneroster_users")}
    schools = dict(harness.rows("SELECT sourced_id, name FROM oneroster_orgs WHERE type = 'school'"))
    assert harness.scalar("SELECT count(*) FROM students") == 0
    assert {sid for sid, _, _ in ignored} == set(users)
    for sid, reason, detail in ignored:
        in_order = [org for org in users[sid] if org in schools]
        if in_order:
            assert reason in ("school_not_a_building", "school_tobedeleted")  # the closed school: tobedeleted
            listed = detail.split(": ", 1)[1].split(" - ")[0]
            assert [part.split(" (")[0] for part in listed.split("; ")] == in_order, detail
            assert f"{in_order[0]} ({schools[in_order[0]]}, " in detail
        else:
            assert reason == "no_school_org" and "orgs are not schools" in detail
    assert any(len([o for o in users[sid] if o in schools]) > 1 for sid, _, _ in ignored), "no two-school student"


def test_staging_pauses_the_cyclic_gc_and_restores_it(tmp_path):
    """stage_batches runs its source with the cyclic GC off (a page's thousands of dicts would trigger collections
    costing as much as normalising them), and leaves it as it found it, also when the source fails."""
    import gc

    import pyarrow as pa

    schema = pa.schema([("sourced_id", pa.string())])
    seen = []

    def batches(fail: bool = False):
        for i in range(3):
            seen.append(gc.isenabled())
            yield pa.table({"sourced_id": [f"s{i}"]}, schema=schema)
        if fail:
            raise RuntimeError("the provider went away")

    assert gc.isenabled()
    assert store.stage_batches(batches(), tmp_path / "a.parquet", schema) == 3
    assert seen == [False] * 3 and gc.isenabled()
    with pytest.raises(RuntimeError):
        store.stage_batches(batches(fail=True), tmp_path / "b.parquet", schema)
    assert gc.isenabled()
    gc.disable()  # a caller that runs with it off keeps it off
    try:
        store.stage_batches(batches(), tmp_path / "c.parquet", schema)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_staging_writes_in_order_and_a_write_failure_reaches_the_caller(tmp_path, monkeypatch):
    """The Parquet file is written by a thread of its own: every batch lands, in order; a batch the writer fails
    to write fails stage_batches itself (that error, not a later one), and the source is not drained further."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("sourced_id", pa.string())])
    batches = [pa.table({"sourced_id": [f"s{i}-{j}" for j in range(i % 3)]}, schema=schema) for i in range(50)]
    assert store.stage_batches(iter(batches), tmp_path / "a.parquet", schema) == sum(b.num_rows for b in batches)
    assert pq.read_table(tmp_path / "a.parquet").column("sourced_id").to_pylist() == \
        [v for b in batches for v in b.column("sourced_id").to_pylist()]

    written, pulled = [], []
    write_table = pq.ParquetWriter.write_table

    def failing_write(self, table, *args, **kwargs):
        written.append(table)
        if len(written) == 5:
            raise OSError("No space left on device")
        return write_table(self, table, *args, **kwargs)

    def source():
        for i in range(1000):
            pulled.append(i)
            yield pa.table({"sourced_id": [str(i)]}, schema=schema)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing_write)
    with pytest.raises(OSError, match="No space left"):
        store.stage_batches(source(), tmp_path / "b.parquet", schema)
    assert len(written) == 5 and len(pulled) < 100  # the failure stopped the pull (the queue holds a few batches)
