"""A full disk: the run's outcome, its `sync_runs` row and the tables agree (issue 24, observation 9).

With a few MB free on the DuckDB file's volume a run failed (`Detached database ..., but CHECKPOINT during DETACH
failed`) while `sync_runs` said `applied` and the sync's changes were in the tables once space was freed. What is
durable decides: a COMMIT that succeeded is in the write-ahead log (replayed when the file is next opened), so a
checkpoint that fails after it is a warning and the run succeeds, `applied`; a failure before or at COMMIT rolls back
(the `sync_runs` row of an applied sync commits with the sync), so the run fails saying the disk is full and naming
the file, and no `applied` row exists for it.

Through Dagster against the demo provider over real HTTP on loopback, with a real full filesystem: a small tmpfs the
test mounts (root only; skipped with the reason elsewhere), filled to leave a little space before each sync.
"""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from oneroster_pipeline.defs.alerts.hooks import step_errors
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline_tests.full_disk import fill, small_volume

from .sync_harness import STUDENT_CONTENT, SyncHarness, demo_provider, oneroster_for

SHAPE = DistrictShape(schools=3, students=2000, seed=17)
VOLUME_SIZE = "32m"
STUDENTS = f"SELECT {STUDENT_CONTENT} FROM students ORDER BY student_id"
FULL = {"oneroster/sync_mode": "full"}  # a full pull: the apply rewrites the users table (a WAL of ~1 MB)
# free space left before each sync: from nothing (staging fails) through a WAL that does not fit (the COMMIT fails)
# and one that fits with no room for the checkpoint after it, to enough for both
LEAVE_KB = (0, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 4096, 8192)


@pytest.fixture
def volume(tmp_path):
    with small_volume(tmp_path / "volume", VOLUME_SIZE) as mounted:
        yield mounted


def step_warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)
            if entry.level >= 30 and entry.dagster_event is None]


def test_a_full_disk_never_leaves_the_run_and_its_record_disagreeing(volume):
    with demo_provider(SHAPE) as provider:
        harness = SyncHarness(volume, oneroster_for(provider))
        assert harness.run("full_sync").success
        regular = provider.district.students_in_category("regular", limit=20)
        seen = set()
        for leave_kb in LEAVE_KB:
            name = f"Full-Disk-{leave_kb}"
            for sourced_id in regular:
                provider.district.update_student(sourced_id, givenName=name)
            before = harness.rows(STUDENTS)
            filler = fill(volume, leave_kb * 1024)
            result = harness.run("student_sync", raise_on_error=False, tags=FULL)
            filler.unlink()  # space freed: what the run committed is in the file or its write-ahead log

            renamed = harness.scalar("SELECT count(*) FROM students WHERE given_name = ?", [name])
            outcome = [row[0] for row in harness.rows("SELECT outcome FROM sync_runs WHERE run_id = ?",
                                                      [result.run_id])]
            errors = "; ".join(step_errors(harness.instance, result.run_id))
            warnings = "; ".join(step_warnings(harness.instance, result.run_id))
            case = (leave_kb, result.success, renamed, outcome, errors[:600], warnings[:600])
            if renamed:  # committed: recorded as applied, and the run succeeded (a failed checkpoint only warns)
                assert renamed == len(regular) and outcome == ["applied"] and result.success, case
                if "could not checkpoint" in warnings:
                    assert "the disk is full" in warnings and harness.database in warnings, case
                    seen.add("committed, checkpoint failed: a warning")
                else:
                    seen.add("committed and checkpointed")
            else:  # rolled back: the tables as they were, no 'applied' row, and the run failed saying why
                assert harness.rows(STUDENTS) == before and "applied" not in outcome and not result.success, case
                assert "the disk is full (no space left on device) writing " + str(volume) in errors, case
                if f"student_sync_assets: WarehouseWriteError: ONEROSTER_DUCKDB_PATH={harness.database}" in errors:
                    assert "rolled back" in errors, case
                    seen.add("the student apply failed and rolled back")
                else:
                    seen.add("failed before applying (staging or an earlier step)")
            with duckdb.connect(harness.database) as con:  # the next try starts from a checkpointed file
                con.execute("CHECKPOINT")
        assert seen == {"committed, checkpoint failed: a warning", "committed and checkpointed",
                        "the student apply failed and rolled back",
                        "failed before applying (staging or an earlier step)"}, seen

        result = harness.run("student_sync", tags=FULL)  # with space again, the next run is exact
        assert result.success
        assert harness.scalar("SELECT count(*) FROM students WHERE given_name = ?", [name]) == len(regular)
