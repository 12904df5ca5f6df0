"""A value dropped from a kept record (issue 25: Rejection kind `value_dropped`) is recorded in `rejected_records`
with its kind, and is no rejection: it neither makes a pull incomplete, nor keeps an old raw row, nor counts in
`pull_reports.rejected`. An existing DuckDB file gains the `kind` column, its earlier rows `rejected`."""

from __future__ import annotations

import duckdb

from oneroster_pipeline.client.normalize import REJECTED, VALUE_DROPPED, Rejection
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.pulls import completeness_verdict, identified_rejections, unidentified_rejections

from .staging import later, memory_store, org, rows, student, sync_orgs, sync_students
from .test_pulls import report


def dropped(sourced_id: str | None, field: str = "dateLastModified") -> Rejection:
    return Rejection("user", sourced_id, "GET /students offset 0, item 3", field, "set to NULL, record kept",
                     VALUE_DROPPED)


def test_a_dropped_value_is_not_a_rejection_for_the_verdict_or_the_kept_rows():
    real = Rejection("user", "u9", "users.csv line 4", "status", "unknown value 'archived'")
    assert real.kind == REJECTED
    assert completeness_verdict(report(), [dropped("u1"), dropped(None, "email")]).complete
    assert identified_rejections("students", [dropped("u1"), real]) == ["u9"]
    assert unidentified_rejections("students", [dropped(None), real]) == []


def test_dropped_values_are_recorded_with_their_kind_and_counted_apart(tmp_path):
    with memory_store() as con:
        sync_orgs(con, tmp_path, [org("s1")])
        real = Rejection("user", "b", "GET /students offset 0, item 1", "status", "unknown value 'archived'")
        outcome = sync_students(con, tmp_path, [student("a", "s1", date_last_modified=None)], now=later(1),
                                rejections=[dropped("a"), real, dropped("a", "email")])
        assert outcome.outcome == "applied" and rows(con, "SELECT sourced_id FROM students") == [("a",)]
        assert rows(con, "SELECT sourced_id, field, kind FROM rejected_records ORDER BY kind, field") == [
            ("b", "status", "rejected"), ("a", "dateLastModified", "value_dropped"), ("a", "email", "value_dropped")]
        assert rows(con, "SELECT complete, rejected, rejected_by_file FROM pull_reports WHERE collection = "
                         "'students'") == [(True, 1, "{}")]


def test_an_existing_file_gains_the_kind_column_and_its_rows_are_rejections(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:  # rejected_records as it was before the kind column
        old.execute("""CREATE TABLE rejected_records (
            run_id VARCHAR, collection VARCHAR NOT NULL, sourced_id VARCHAR, location VARCHAR, field VARCHAR,
            reason VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL)""")
        old.execute("INSERT INTO rejected_records VALUES ('r1', 'students', 'u1', 'users.csv line 2', "
                    "'dateLastModified', 'not an ISO 8601 date-time', now())")
    with store.connect(path) as con:
        assert con.execute("SELECT sourced_id, kind FROM rejected_records").fetchall() == [("u1", "rejected")]
        store.insert_rows(con, "rejected_records", [{"collection": "students", "sourced_id": "u2", "reason": "x",
                                                     "recorded_at": later(1)}])
        assert con.execute("SELECT sourced_id, kind FROM rejected_records ORDER BY 1").fetchall() == [
            ("u1", "rejected"), ("u2", "rejected")]
