"""The queries the Dagster layer shows or decides by (warehouse/reports.py and the switch to apply), on an in-memory
store: what each returns on an empty warehouse and on a few rows."""

from datetime import timedelta

import pytest

from oneroster_pipeline.warehouse import reports, store
from oneroster_pipeline.warehouse.provider_switch import switch_to_apply

from .staging import T0, memory_store


@pytest.fixture
def con():
    with memory_store() as con:
        yield con


def test_an_empty_warehouse_reports_nothing(con):
    assert reports.org_counts_by_type_and_status(con) == [] and reports.first_buildings(con) == []
    assert reports.first_students(con) == [] and reports.first_ignored_students(con) == []
    assert reports.diff_counts_by_change(con, "r1") == {} and reports.first_diff_rows(con, "r1") == []
    assert reports.recent_sync_durations(con, "student_sync") == []
    assert reports.recorded_outcome(con, "r1") is None and not reports.run_has_alert(con, "r1", "run_failure")
    assert switch_to_apply(con, "r1") is None


def test_a_runs_diff_by_change_and_disposition(con):
    diff = [("insert", "s1", None, "applied"), ("update", "s2", "grade", "applied"),
            ("update", "s2", "email", "applied"), ("deactivate", "s3", None, "held"),
            ("insert", "s9", None, "other-run")]
    store.insert_rows(con, "sync_diffs", [
        {"run_id": "r2" if disposition == "other-run" else "r1", "computed_at": T0,
         "disposition": "applied" if disposition == "other-run" else disposition, "sourced_id": sid,
         "change": change, "field": field} for change, sid, field, disposition in diff])
    assert reports.diff_counts_by_change(con, "r1") == {"insert": 1, "update": 1, "deactivate": 1}
    assert reports.diff_counts_by_change(con, "r1", "held") == {"deactivate": 1}
    assert [(r["change"], r["field"]) for r in reports.first_diff_rows(con, "r1", limit=2)] == [
        ("deactivate", None), ("insert", None)]
    assert reports.run_diff_query("r1") == "SELECT * FROM sync_diffs WHERE run_id = 'r1'"


def test_what_a_run_recorded(con):
    for i, (outcome, seconds) in enumerate([("applied", 10.0), ("held", 99.0), ("partially_held", 30.0),
                                            ("applied", None), (None, 5.0)]):
        store.upsert_sync_run(con, f"r{i}", job_name="student_sync", started_at=T0 + timedelta(days=i),
                              duration_seconds=seconds, outcome=outcome)
    assert reports.recent_sync_durations(con, "student_sync") == [30.0, 10.0]  # applied (or partly), latest first
    assert reports.recent_sync_durations(con, "building_sync") == []
    assert reports.recorded_outcome(con, "r1") == "held" and reports.recorded_outcome(con, "r4") is None
    store.insert_rows(con, "sync_alerts", [{"alerted_at": T0, "run_id": "r1", "kind": "run_failure", "message": "x"}])
    assert reports.run_has_alert(con, "r1", "run_failure") and not reports.run_has_alert(con, "r1", "check_failure")


def test_the_switch_a_run_applies_is_its_own_else_the_latest(con):
    for switch_id, hours in (("older", 0), ("latest", 1), ("run-7", -1)):
        store.insert_rows(con, "provider_switches", [{
            "switch_id": switch_id, "built_at": T0 + timedelta(hours=hours), "old_connection_id": "a",
            "new_connection_id": "b", "new_label": "B", "status": "built"}])
    assert switch_to_apply(con, "run-7") == "run-7" and switch_to_apply(con, "run-8") == "latest"
