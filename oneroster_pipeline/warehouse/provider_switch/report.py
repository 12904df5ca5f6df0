"""What a crosswalk found: its counts, each defined once (`COUNTS`), the rules that matched, and one line of text for
the run's log (`summary_line`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from .. import store
from ..policy import SwitchPolicy
from .connections import Connection

# Every count of a crosswalk and what it counts. An existing record (a building, a student, an ignored record) and
# a record of the new connection each end up in exactly one of matched / ambiguous / unmatched, so each total is
# the sum of its parts; a match pairs one existing record with one new record.
COUNTS: dict[str, str] = {
    "buildings_total": "rows of buildings = buildings_matched + buildings_ambiguous + buildings_unmatched",
    "buildings_matched": "buildings paired one-to-one with a school of the new connection (they take its id; "
                         "by rule: building_rules)",
    "buildings_ambiguous": "buildings whose key several schools (or several buildings) share: they keep their id",
    "buildings_unmatched": "buildings no school of the new connection matches: kept (building_sync flags them)",
    "schools_pulled": "schools of the new connection = buildings_matched + schools_ambiguous + schools_unmatched",
    "schools_ambiguous": "new schools whose key several buildings (or several schools) share",
    "schools_unmatched": "new schools no building matches: building_sync creates a building for each active one",
    "students_total": "rows of students, active and inactive = students_matched + students_ambiguous + "
                      "students_unmatched_old",
    "students_matched": "students paired one-to-one with a record of the new connection (they keep their "
                        "student_id and take its id; by rule: student_rules)",
    "students_ambiguous": "students whose key several new records (or several students) share: they keep their id",
    "students_unmatched_old": "students no record of the new connection matches: kept, inactive after the rebuild",
    "ignored_total": "records of the current connection's last student pull that are not students "
                     "(ignored_students says why) = ignored_matched + ignored_ambiguous + ignored_unmatched_old",
    "ignored_matched": "ignored records paired one-to-one with a new record (by rule: ignored_rules)",
    "ignored_ambiguous": "ignored records whose key several new records (or several records) share",
    "ignored_unmatched_old": "ignored records no new record matches",
    "students_pulled": "student records of the new connection = students_matched + ignored_matched + "
                       "students_ambiguous_new + students_unmatched_new",
    "students_ambiguous_new": "new records whose key several new records (or several existing ones) share",
    "students_unmatched_new": "new records no existing record matches: new students on the next sync",
}


@dataclass
class CrosswalkReport:
    switch_id: str
    old: dict
    new: Connection
    status: str  # 'ready' | 'blocked'
    reasons: list[str] = field(default_factory=list)  # thresholds exceeded: approvable
    counts: dict[str, int] = field(default_factory=dict)  # COUNTS' keys
    rules_used: dict[str, dict[str, int]] = field(default_factory=dict)  # building|student|ignored -> rule -> matched
    ambiguous: list[dict] = field(default_factory=list)  # samples (≤ 50) for the UI
    unmatched: list[dict] = field(default_factory=list)


def summarise(con: duckdb.DuckDBPyConnection, report: CrosswalkReport, policy: SwitchPolicy) -> None:
    """Fill the report's counts, rules, threshold verdict and samples from `id_crosswalk` (its switch_id)."""
    sid = report.switch_id
    # an existing record: a building, a student (it has a student_id) or an ignored record (it has none)
    old = store.query_dicts(con, """
        SELECT CASE WHEN entity = 'building' THEN 'building' WHEN internal_id IS NULL THEN 'ignored'
                    ELSE 'student' END AS side, status, rule, count(DISTINCT old_id) AS n
        FROM id_crosswalk WHERE switch_id = ? AND old_id IS NOT NULL GROUP BY ALL""", [sid])
    new = store.query_dicts(con, """
        SELECT entity, status, count(DISTINCT new_id) AS n
        FROM id_crosswalk WHERE switch_id = ? AND new_id IS NOT NULL AND status <> 'matched' GROUP BY ALL""", [sid])

    def n_old(side: str, status: str) -> int:
        return sum(r["n"] for r in old if r["side"] == side and r["status"] == status)

    def n_new(entity: str, status: str) -> int:
        return sum(r["n"] for r in new if r["entity"] == entity and r["status"] == status)

    def count(sql: str) -> int:
        return con.execute(sql, [sid] if "?" in sql else []).fetchall()[0][0]

    c = report.counts = {
        "buildings_total": count("SELECT count(*) FROM buildings"),
        "buildings_matched": n_old("building", "matched"), "buildings_ambiguous": n_old("building", "ambiguous"),
        "buildings_unmatched": n_old("building", "unmatched"),
        "schools_pulled": count("SELECT count(*) FROM switch_orgs WHERE switch_id = ? AND type = 'school'"),
        "schools_ambiguous": n_new("building", "ambiguous"), "schools_unmatched": n_new("building", "unmatched"),
        "students_total": count("SELECT count(*) FROM students"),
        "students_matched": n_old("student", "matched"), "students_ambiguous": n_old("student", "ambiguous"),
        "students_unmatched_old": n_old("student", "unmatched"),
        "ignored_total": count("SELECT count(*) FROM oneroster_users e ANTI JOIN students s "
                               "ON s.sourced_id = e.sourced_id"),
        "ignored_matched": n_old("ignored", "matched"), "ignored_ambiguous": n_old("ignored", "ambiguous"),
        "ignored_unmatched_old": n_old("ignored", "unmatched"),
        "students_pulled": count("SELECT count(*) FROM switch_users WHERE switch_id = ?"),
        "students_ambiguous_new": n_new("student", "ambiguous"),
        "students_unmatched_new": n_new("student", "unmatched"),
    }
    for side in ("building", "student", "ignored"):
        report.rules_used[side] = {r["rule"]: r["n"] for r in old if r["side"] == side and r["status"] == "matched"}
    for entity, total, unmatched, ambiguous in (
            ("building", c["buildings_total"], c["buildings_unmatched"], c["buildings_ambiguous"]),
            ("student", c["students_total"], c["students_unmatched_old"],
             c["students_ambiguous"] + c["ignored_ambiguous"])):
        if total and 100.0 * unmatched / total > policy.max_unmatched_pct:
            report.reasons.append(f"{unmatched} of {total} {entity}s ({100.0 * unmatched / total:.1f}%) match no "
                                  f"record of the new connection (max {policy.max_unmatched_pct:g}%)")
        if ambiguous > policy.max_ambiguous:
            ignored = c["ignored_ambiguous"] if entity == "student" else 0
            report.reasons.append(f"{ambiguous} {entity}s match ambiguously (max {policy.max_ambiguous})"
                                  + (f"; {ignored} of them ignored records" if ignored else ""))
    report.status = "blocked" if report.reasons else "ready"
    sample = """SELECT entity, old_id, new_id, internal_id, rule, detail FROM id_crosswalk
                WHERE switch_id = ? AND status = ? ORDER BY entity, old_id NULLS LAST, new_id LIMIT 50"""
    report.ambiguous = store.query_dicts(con, sample, [sid, "ambiguous"])
    report.unmatched = store.query_dicts(con, sample, [sid, "unmatched"])


def _by_rule(rules: dict[str, int]) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in sorted(rules.items(), key=lambda item: (-item[1], item[0]))) or "none"


def summary_line(report: CrosswalkReport) -> str:
    """The crosswalk's counts in one line (the run's log: what a command-line user sees of the preview)."""
    c, rules = report.counts, report.rules_used
    line = (
        f"crosswalk {report.switch_id} {report.status}: "
        f"buildings {c['buildings_total']} = {c['buildings_matched']} matched (by {_by_rule(rules['building'])}) "
        f"+ {c['buildings_ambiguous']} ambiguous + {c['buildings_unmatched']} unmatched; "
        f"new schools {c['schools_pulled']} = {c['buildings_matched']} matched + {c['schools_ambiguous']} ambiguous "
        f"+ {c['schools_unmatched']} unmatched; "
        f"students {c['students_total']} = {c['students_matched']} matched (by {_by_rule(rules['student'])}) "
        f"+ {c['students_ambiguous']} ambiguous + {c['students_unmatched_old']} unmatched; "
        f"ignored records {c['ignored_total']} = {c['ignored_matched']} matched + {c['ignored_ambiguous']} "
        f"ambiguous + {c['ignored_unmatched_old']} unmatched; "
        f"new student records {c['students_pulled']} = {c['students_matched'] + c['ignored_matched']} matched + "
        f"{c['students_ambiguous_new']} ambiguous + {c['students_unmatched_new']} unmatched"
    )
    return line + (f"; blocked because {'; '.join(report.reasons)}" if report.reasons else "")


def connections_by_first_seen(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every provider connection the district has seen, oldest first: connection_id, label, status, activated_at,
    retired_at."""
    return store.query_dicts(con, "SELECT connection_id, label, status, activated_at, retired_at "
                                  "FROM provider_connections ORDER BY first_seen_at")


def crosswalk_query(switch_id: str) -> str:
    """The query a person runs to review a crosswalk's records (shown in the run's metadata)."""
    return f"SELECT * FROM id_crosswalk WHERE switch_id = '{switch_id.replace(chr(39), '')}' ORDER BY entity, status"
