"""Apply a built crosswalk (keep every building_id and student_id, rewrite the provider ids, record id_history),
and rebuild the student tables from the stored raw tables of the active connection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from .. import store
from ..people import current_person_key
from ..students import StudentSyncResult, apply_student_sync, plan_student_sync
from .connections import active_connection
from .errors import SwitchBlocked, SwitchError


@dataclass
class SwitchResult:
    switch_id: str
    old_connection_id: str
    new_connection_id: str
    buildings_rewritten: int
    students_rewritten: int
    ignored_rewritten: int
    students_kept_unmatched: int


def latest_switch(con: duckdb.DuckDBPyConnection) -> dict | None:
    rows = store.query_dicts(con, "SELECT * FROM provider_switches ORDER BY built_at DESC LIMIT 1")
    return rows[0] if rows else None


def switch_to_apply(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """The switch_id of the crosswalk a run applies: the one that run built (its switch_id is the run's id), else the
    latest one built; None before any crosswalk."""
    own = con.execute("SELECT switch_id FROM provider_switches WHERE switch_id = ?", [run_id]).fetchall()
    if own:
        return own[0][0]
    latest = latest_switch(con)
    return latest["switch_id"] if latest else None


def apply_switch(con: duckdb.DuckDBPyConnection, switch_id: str, run_id: str | None, now: datetime,
                 approved: bool = False) -> SwitchResult:
    """Apply a built crosswalk in one transaction (see the notes atop provider_switch/__init__.py); nothing is deleted.

    Raises SwitchBlocked when the crosswalk exceeded a threshold and `approved` is false, SwitchError when it is
    not the latest crosswalk, was applied already, or the active connection changed since it was built.
    """
    with store.transaction(con):
        rows = store.query_dicts(con, "SELECT * FROM provider_switches WHERE switch_id = ?", [switch_id])
        if not rows:
            raise SwitchError(f"no crosswalk {switch_id}: build id_crosswalk first")
        switch = rows[0]
        latest = latest_switch(con)
        if switch["status"] == "applied":
            raise SwitchError(f"crosswalk {switch_id} was applied at {switch['applied_at']}")
        if latest["switch_id"] != switch_id:
            raise SwitchError(f"crosswalk {switch_id} is not the latest ({latest['switch_id']}): apply that one")
        if switch["status"] == "blocked" and not approved:
            raise SwitchBlocked(switch["reasons"].split("; "))
        active = active_connection(con)
        if active is None or active["connection_id"] != switch["old_connection_id"]:
            raise SwitchError("the active connection changed since the crosswalk was built: build it again")
        synced = con.execute("SELECT max(fetched_at) FROM pull_reports").fetchall()[0][0]
        if synced is not None and synced > switch["built_at"]:
            raise SwitchError(f"a sync ran at {synced} after the crosswalk was built ({switch['built_at']}): its "
                              "records are not in the crosswalk; build it again (run provider_switch)")
        staged = con.execute("SELECT count(*) FROM switch_users WHERE switch_id = ?", [switch_id]).fetchall()[0][0]
        if staged != switch["students_pulled"]:
            raise SwitchError("the staged pull of the new connection was replaced: build the crosswalk again")
        students_before = con.execute("SELECT count(*) FROM students").fetchall()[0][0]
        params = {"now": now}
        con.execute("""CREATE OR REPLACE TEMP TABLE _xw AS
                       SELECT * FROM id_crosswalk WHERE switch_id = $sid AND status = 'matched'""", {"sid": switch_id})
        con.execute("""
            INSERT INTO id_history
            SELECT switch_id, entity, internal_id, old_id, new_id, rule, old_connection_id, new_connection_id, $now
            FROM _xw WHERE old_id IS DISTINCT FROM new_id""", {"now": now})
        buildings = _count(con, """
            UPDATE buildings b SET building_sis = x.new_id, updated_at = $now FROM _xw x
            WHERE x.entity = 'building' AND b.building_id = x.internal_id AND b.building_sis <> x.new_id""", params)
        students = _count(con, """
            UPDATE students s SET sourced_id = x.new_id, updated_at = $now FROM _xw x
            WHERE x.entity = 'student' AND s.student_id = x.internal_id AND s.sourced_id <> x.new_id""", params)
        con.execute("""UPDATE students s SET building_sis = b.building_sis FROM buildings b
                       WHERE b.building_id = s.building_id AND s.building_sis <> b.building_sis""")
        con.execute("""UPDATE student_buildings l SET sourced_id = s.sourced_id FROM students s
                       WHERE s.student_id = l.student_id AND l.sourced_id <> s.sourced_id""")
        con.execute("""UPDATE student_buildings l SET building_sis = b.building_sis FROM buildings b
                       WHERE b.building_id = l.building_id AND l.building_sis <> b.building_sis""")
        ignored = _count(con, """
            UPDATE ignored_students i SET sourced_id = x.new_id FROM _xw x
            WHERE x.entity = 'student' AND i.sourced_id = x.old_id AND i.sourced_id <> x.new_id""", {})
        for raw, staged_table in (("oneroster_orgs", "switch_orgs"), ("oneroster_users", "switch_users")):
            con.execute(f"DELETE FROM {raw}")
            con.execute(f"INSERT INTO {raw} BY NAME SELECT * EXCLUDE (switch_id) FROM {staged_table} "
                        "WHERE switch_id = ?", [switch_id])
        store.insert_rows(con, "pull_reports", [{
            "run_id": run_id, "collection": collection, "provider": switch["new_label"],
            "endpoint": f"provider switch {switch_id}", "mode": "full", "modified_since": None,
            "started_at": switch["pulled_at"], "reported_total": None, "received": pulled, "kept": pulled,
            "duplicates": 0, "rejected": 0, "skipped": 0, "pages": None, "complete": True,
            "incomplete_reason": None, "fetched_at": now,
        } for collection, pulled in (("orgs", switch["orgs_pulled"]), ("students", switch["students_pulled"]))])
        con.execute("UPDATE provider_connections SET status = 'retired', retired_at = ? WHERE connection_id = ?",
                    [now, switch["old_connection_id"]])
        con.execute("UPDATE provider_connections SET status = 'active', activated_at = ?, retired_at = NULL "
                    "WHERE connection_id = ?", [now, switch["new_connection_id"]])
        con.execute("UPDATE provider_switches SET status = 'applied', applied_at = ?, applied_run_id = ? "
                    "WHERE switch_id = ?", [now, run_id, switch_id])
        _verify(con, students_before)
        kept = switch["students_unmatched_old"]
    return SwitchResult(switch_id, switch["old_connection_id"], switch["new_connection_id"], buildings, students,
                        ignored, kept)


def _count(con, sql: str, params: dict) -> int:
    return con.execute(sql, params).fetchall()[0][0]


def _verify(con: duckdb.DuckDBPyConnection, students_before: int) -> None:
    """Refuse (roll back) a switch that would lose a student or give two records one id."""
    problems = []
    if con.execute("SELECT count(*) FROM students").fetchall()[0][0] != students_before:
        problems.append("the number of students changed")
    for table, key in (("students", "sourced_id"), ("buildings", "building_sis")):
        dupes = [r[0] for r in con.execute(
            f"SELECT {key} FROM {table} GROUP BY 1 HAVING count(*) > 1 LIMIT 5").fetchall()]
        if dupes:
            problems.append(f"{table}.{key} would repeat: {', '.join(dupes)}")
    if problems:
        raise SwitchError("switch refused, nothing changed: " + "; ".join(problems) + ". Put the existing "
                          "records' ids first in the rule order (e.g. sourced_id) or review id_crosswalk.")


@dataclass
class RebuildResult:
    connection_id: str
    result: StudentSyncResult


def rebuild_student_tables(con: duckdb.DuckDBPyConnection, connection_id: str, now: datetime, run_id: str | None,
                           max_deactivate_pct: float = 10.0, max_deactivate: int = 500,
                           approved: bool = False) -> RebuildResult:
    """Recompute students, student_buildings and ignored_students from the stored raw tables (one transaction).

    Only the active connection can be rebuilt: the raw tables hold its snapshot. Deactivations above the
    thresholds (students the raw snapshot no longer has) need `approved`.
    """
    with store.transaction(con):
        active = active_connection(con)
        if active is None or active["connection_id"] != connection_id:
            rows = store.query_dicts(con, "SELECT status FROM provider_connections WHERE connection_id = ?",
                                     [connection_id])
            state = rows[0]["status"] if rows else "unknown"
            current = f"{active['label']} [{active['connection_id']}]" if active else "none"
            raise SwitchError(f"connection {connection_id} is {state}; the raw tables hold only the active "
                              f"connection's snapshot ({current}): backfill that partition instead")
        plan = plan_student_sync(con, now, current_person_key(con))
        if not approved and (plan.deactivated > max_deactivate or (
                plan.active_before and 100.0 * plan.deactivated / plan.active_before > max_deactivate_pct)):
            raise SwitchBlocked([f"the rebuild would deactivate {plan.deactivated} of {plan.active_before} active "
                                 f"students (max {max_deactivate_pct:g}% / {max_deactivate})"])
        result = apply_student_sync(con, plan, now, run_id)
    return RebuildResult(connection_id, result)
