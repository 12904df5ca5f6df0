"""What the warehouse shows of itself in a run's metadata and log: small previews of the tables a step wrote, the
diff a run recorded, the durations of recent runs, and what a run already recorded (its outcome, its alerts).
Read-only queries; framework-free (the Dagster layer turns the rows into markdown)."""

from __future__ import annotations

import duckdb

from .store import query_dicts


def org_counts_by_type_and_status(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """`oneroster_orgs` counted by type and status: rows of (type, status, orgs)."""
    return query_dicts(con, "SELECT type, status, count(*) AS orgs FROM oneroster_orgs GROUP BY ALL ORDER BY ALL")


def first_buildings(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[dict]:
    """The first `limit` buildings by building_id: building_id, name, building_sis, status."""
    return query_dicts(con, "SELECT building_id, name, building_sis, status FROM buildings ORDER BY building_id "
                            "LIMIT ?", [limit])


def first_students(con: duckdb.DuckDBPyConnection, limit: int = 10) -> list[dict]:
    """The first `limit` students by student_id, with their primary building and grade."""
    return query_dicts(con, "SELECT student_id, sourced_id, building_sis, given_name, family_name, grade, status "
                            "FROM students ORDER BY student_id LIMIT ?", [limit])


def first_ignored_students(con: duckdb.DuckDBPyConnection, limit: int = 10) -> list[dict]:
    """The first `limit` ignored students by reason and sourced_id: sourced_id, reason, detail."""
    return query_dicts(con, "SELECT sourced_id, reason, detail FROM ignored_students ORDER BY reason, sourced_id "
                            "LIMIT ?", [limit])


def _diff_of_run(run_id: str, disposition: str | None) -> tuple[str, list]:
    return ("run_id = ?" + (" AND disposition = ?" if disposition else ""),
            [run_id] + ([disposition] if disposition else []))


def diff_counts_by_change(con: duckdb.DuckDBPyConnection, run_id: str, disposition: str | None = None
                          ) -> dict[str, int]:
    """The students a run's recorded diff (`sync_diffs`; only `disposition`'s rows when given) changes, by change
    kind (insert, update, deactivate, reactivate, ignore)."""
    where, params = _diff_of_run(run_id, disposition)
    return {row["change"]: row["n"] for row in query_dicts(
        con, f"SELECT change, count(DISTINCT sourced_id) AS n FROM sync_diffs WHERE {where} GROUP BY 1", params)}


def first_diff_rows(con: duckdb.DuckDBPyConnection, run_id: str, disposition: str | None = None,
                    limit: int = 25) -> list[dict]:
    """The first `limit` rows of a run's recorded diff (only `disposition`'s when given), by change, sourced_id and
    field."""
    where, params = _diff_of_run(run_id, disposition)
    return query_dicts(con, f"""
        SELECT change, sourced_id, building_sis, field, old_value, new_value, reason FROM sync_diffs
        WHERE {where} ORDER BY change, sourced_id, field LIMIT ?""", [*params, limit])


def run_diff_query(run_id: str) -> str:
    """The query a person runs to read the whole diff a run recorded (shown in the run's metadata)."""
    return f"SELECT * FROM sync_diffs WHERE run_id = '{run_id.replace(chr(39), '')}'"


def recent_sync_durations(con: duckdb.DuckDBPyConnection, job_name: str, runs: int = 5) -> list[float]:
    """How long the latest `runs` syncs of `job_name` that applied (perhaps partly held) took, in seconds, latest
    first."""
    return [seconds for (seconds,) in con.execute(
        "SELECT duration_seconds FROM sync_runs WHERE job_name = ? AND outcome IN ('applied', 'partially_held') "
        "AND duration_seconds IS NOT NULL ORDER BY started_at DESC LIMIT ?", [job_name, runs]).fetchall()]


def recorded_outcome(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """The outcome the run's `sync_runs` row holds (applied, held, failed, canceled...); None without a row or an
    outcome yet."""
    rows = con.execute("SELECT outcome FROM sync_runs WHERE run_id = ?", [run_id]).fetchall()
    return rows[0][0] if rows else None


def run_has_alert(con: duckdb.DuckDBPyConnection, run_id: str, kind: str) -> bool:
    """Whether `sync_alerts` holds an alert of `kind` for the run."""
    return con.execute("SELECT count(*) FROM sync_alerts WHERE run_id = ? AND kind = ?",
                       [run_id, kind]).fetchall()[0][0] > 0
