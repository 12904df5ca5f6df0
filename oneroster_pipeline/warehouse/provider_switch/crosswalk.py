"""The crosswalk of a provider switch: stage the new connection's pull and match its schools and students to the
registry rule by rule (one-to-one only; a shared key is ambiguous), into `id_crosswalk` and `provider_switches`."""

from __future__ import annotations

from datetime import datetime

import duckdb

from .. import store
from ..policy import SwitchPolicy
from ..pulls import StagedPull
from .connections import Connection, active_connection, register
from .errors import SwitchError
from .report import CrosswalkReport, summarise


def _norm(expr: str) -> str:
    """Case-, space- and punctuation-insensitive text (NULL for empty)."""
    return f"nullif(trim(regexp_replace(lower({expr}), '[^a-z0-9]+', ' ', 'g')), '')"


def _text(expr: str) -> str:
    return f"nullif(lower(trim({expr})), '')"


# rule -> (key on the old side, key on the new side); the legacy rule matches the new record's previous
# sourcedId (Infinite Campus 1.2 metadata.ic.legacysourceId) to the old record's sourcedId
_BUILDING_KEYS = {
    "sourced_id": ("b.building_sis", "o.sourced_id"),
    "legacy_sourced_id": ("b.building_sis", "o.legacy_sourced_id"),
    "identifier": (_text("r.identifier"), _text("o.identifier")),
    "name": (_norm("b.name"), _norm("o.name")),
}
_STUDENT_KEYS = {
    "sourced_id": ("e.sourced_id", "u.sourced_id"),
    "legacy_sourced_id": ("e.sourced_id", "u.legacy_sourced_id"),
    "identifier": (_text("e.identifier"), _text("u.identifier")),
    "username": (_text("e.username"), _text("u.username")),
    "email": (_text("e.email"), _text("u.email")),
}


def _match(con: duckdb.DuckDBPyConnection, rules: tuple[str, ...]) -> None:
    """Match `_xw_old` (internal_id, old_id, k_<rule>) to `_xw_new` (new_id, k_<rule>) into `_xw_result`."""
    con.execute("CREATE OR REPLACE TEMP TABLE _xw_result (old_id VARCHAR, new_id VARCHAR, internal_id BIGINT, "
                "rule VARCHAR, status VARCHAR, detail VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE _xw_old_left AS SELECT * FROM _xw_old")
    con.execute("CREATE OR REPLACE TEMP TABLE _xw_new_left AS SELECT * FROM _xw_new")
    for rule in rules:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _xw_pairs AS
            SELECT o.old_id, o.internal_id, n.new_id,
                   count(*) OVER (PARTITION BY o.old_id) AS n_new, count(*) OVER (PARTITION BY n.new_id) AS n_old
            FROM _xw_old_left o JOIN _xw_new_left n ON o.k_{rule} = n.k_{rule}
            WHERE o.k_{rule} IS NOT NULL""")
        con.execute(f"""
            INSERT INTO _xw_result
            SELECT old_id, new_id, internal_id, '{rule}',
                   CASE WHEN n_new = 1 AND n_old = 1 THEN 'matched' ELSE 'ambiguous' END,
                   CASE WHEN n_new > 1 THEN n_new || ' new records share this {rule}'
                        WHEN n_old > 1 THEN n_old || ' existing records share this {rule}' END
            FROM _xw_pairs""")
        con.execute("DELETE FROM _xw_old_left WHERE old_id IN (SELECT old_id FROM _xw_pairs)")
        con.execute("DELETE FROM _xw_new_left WHERE new_id IN (SELECT new_id FROM _xw_pairs)")
    tried = ", ".join(rules)
    con.execute(f"""
        INSERT INTO _xw_result
        SELECT old_id, NULL, internal_id, NULL, 'unmatched', 'no record of the new connection matches by {tried}'
        FROM _xw_old_left""")
    con.execute(f"""
        INSERT INTO _xw_result
        SELECT NULL, new_id, NULL, NULL, 'unmatched', 'new to the district by {tried}: ' || new_detail
        FROM _xw_new_left""")


def _save(con, switch_id: str, entity: str, old_id: str, new_id: str, now: datetime) -> None:
    con.execute(
        """INSERT INTO id_crosswalk SELECT ?, ?, ?, ?, old_id, new_id, internal_id, rule, status, detail, ?
           FROM _xw_result ORDER BY status, old_id, new_id""",
        [switch_id, entity, old_id, new_id, now])


def _load_switch_raw(con, table: str, switch_id: str, pull: StagedPull, now: datetime) -> None:
    con.execute(f"DELETE FROM {table}")
    con.execute(
        f"""INSERT INTO {table} BY NAME
            SELECT ? AS switch_id, *, ? AS provider, ? AS fetched_at FROM read_parquet(?)
            QUALIFY row_number() OVER (PARTITION BY sourced_id) = 1""",
        [switch_id, pull.label, now, str(pull.path)])


def build_crosswalk(con: duckdb.DuckDBPyConnection, switch_id: str, new: Connection, orgs: StagedPull,
                    students: StagedPull, policy: SwitchPolicy, now: datetime) -> CrosswalkReport:
    """Stage the new connection's pull and match it to the registry; writes `id_crosswalk`, `provider_switches`.

    Raises SwitchError (nothing written) when there is nothing to switch from, the connection is already active,
    or the new pull is incomplete.
    """
    incomplete = [f"{p.collection}: {p.verdict.reason}" for p in (orgs, students) if not p.verdict.complete]
    if incomplete:
        raise SwitchError(f"the new connection's pull is incomplete ({'; '.join(incomplete)}): a crosswalk needs "
                          "every school and student; fix the connection and build it again")
    with store.transaction(con):
        old = active_connection(con)
        if old is None:
            raise SwitchError("no connection is active yet: there is nothing to switch from. Run building sync and "
                              "student sync against the configured connection instead.")
        if old["connection_id"] == new.connection_id:
            raise SwitchError(f"{new.label} [{new.connection_id}] is already the active connection: nothing to "
                              "switch. Change the ONEROSTER_* variables to the new provider first.")
        register(con, new, "candidate", now)
        _load_switch_raw(con, "switch_orgs", switch_id, orgs, now)
        _load_switch_raw(con, "switch_users", switch_id, students, now)
        ids = [old["connection_id"], new.connection_id]

        keys = _BUILDING_KEYS
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _xw_old AS
            SELECT b.building_id AS internal_id, b.building_sis AS old_id,
                   {", ".join(f"{keys[r][0]} AS k_{r}" for r in policy.school_rules)}
            FROM buildings b LEFT JOIN oneroster_orgs r ON r.sourced_id = b.building_sis""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _xw_new AS
            SELECT o.sourced_id AS new_id, o.name || ' (' || coalesce(o.identifier, 'no identifier') || ')' AS new_detail,
                   {", ".join(f"{keys[r][1]} AS k_{r}" for r in policy.school_rules)}
            FROM switch_orgs o WHERE o.type = 'school'""")
        _match(con, policy.school_rules)
        _save(con, switch_id, "building", *ids, now)

        keys = _STUDENT_KEYS
        old_cols = ", ".join(f"{keys[r][0]} AS k_{r}" for r in policy.student_rules)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _xw_old AS
            SELECT e.student_id AS internal_id, e.sourced_id AS old_id, {old_cols} FROM students e
            UNION ALL  -- fetched but ignored students have no student_id; their ignored_students row follows them
            SELECT NULL, e.sourced_id, {old_cols}
            FROM oneroster_users e ANTI JOIN students s ON s.sourced_id = e.sourced_id""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _xw_new AS
            SELECT u.sourced_id AS new_id,
                   concat_ws(' ', u.given_name, u.family_name) || ' (' || coalesce(u.identifier, 'no identifier')
                       || ') arrives as a new student on the next sync' AS new_detail,
                   {", ".join(f"{keys[r][1]} AS k_{r}" for r in policy.student_rules)}
            FROM switch_users u""")
        _match(con, policy.student_rules)
        _save(con, switch_id, "student", *ids, now)

        report = CrosswalkReport(switch_id, old, new, "ready")
        summarise(con, report, policy)
        c = report.counts
        con.execute(
            "INSERT INTO provider_switches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            [switch_id, now, old["connection_id"], new.connection_id, new.label, report.status,
             "; ".join(report.reasons) or None, orgs.rows, students.rows, students.started_at, True,
             c["buildings_matched"], c["buildings_ambiguous"], c["buildings_unmatched"], c["schools_unmatched"],
             c["students_matched"], c["students_ambiguous"], c["students_unmatched_old"],
             c["students_unmatched_new"]])
        store.KEYED_INSERTS.setdefault(con, set()).add("provider_switches")
    return report
