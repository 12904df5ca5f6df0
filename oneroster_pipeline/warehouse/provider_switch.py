"""Provider change without losing identity: connection tracking, the crosswalk, applying a switch, rebuilding.

Framework-free (no dagster import); `provider_switch_assets.py` and `partitions.py` are the Dagster layer.

- **Connections.** Every sync names the configured connection (`connection_of(settings)`: provider, base URL
  without credentials, OneRoster version). While no connection is active, `require_active_connection` registers
  the configured one as a `candidate` and lets the sync run; `activate_connection` makes it `active` once its
  org pull or student sync applied (a failed first sync pins nothing, and a candidate never blocks another
  connection). Once a connection is active, `require_active_connection` refuses any sync whose configured
  connection is not that one (`ConnectionChanged`), so a changed environment never half-switches a district.
- **Crosswalk.** `build_crosswalk` stages the new connection's orgs and students (`switch_orgs`, `switch_users`),
  matches schools to buildings and students to students rule by rule (configurable order), and writes every
  record with the rule that matched it, or `ambiguous` / `unmatched`, to `id_crosswalk`. A rule matches only
  one-to-one pairs among the records still unmatched; a key shared by several records makes them all ambiguous
  (a later, weaker rule is not tried for them). Thresholds block the switch for a person to review.
- **Apply.** `apply_switch` (one transaction) keeps every `building_id` and `student_id`, rewrites `building_sis`,
  `students.sourced_id`, `student_buildings` and `ignored_students` to the new ids, records each old -> new id in
  `id_history`, replaces the raw tables with the new connection's pull, retires the old connection and activates
  the new one. Nothing is deleted: an unmatched old student keeps its id (the next sync marks it inactive), an
  unmatched new one arrives as a new student on the next sync.
- **Rebuild.** `rebuild_student_tables` recomputes `students`, `student_buildings` and `ignored_students` from
  the stored raw tables for the active connection (the backfill's unit of work).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from oneroster_pipeline.client.errors import redact_url

from . import store
from .policy import SwitchPolicy
from .pulls import StagedPull
from .students import StudentSyncResult, apply_student_sync, plan_student_sync

PROCEDURE = "README, section 'Changing provider'"


class ConnectionChanged(RuntimeError):
    """The configured connection is not the active one: syncs refuse until the switch is applied."""


class SwitchError(RuntimeError):
    """A switch cannot be built or applied (nothing was changed); the message says why and what to do."""


class SwitchBlocked(SwitchError):
    """The crosswalk exceeds a threshold: a person reviews `id_crosswalk` and approves with the run tag."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


# ---- connections ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Connection:
    """A provider connection as the district configured it (never a credential)."""

    connection_id: str  # short, stable, safe as a Dagster partition key: provider-version-hash
    label: str
    provider: str
    base_url: str | None
    version: str | None


def connection_of(settings) -> Connection:
    """The connection a `ConnectionSettings` points at.

    The built-in demo district is one connection whatever port it starts on; a CSV connection is the folder its
    exports are dropped into (dated exports in one folder are one connection).
    """
    if settings.needs_demo_provider:
        label, base_url = "demo (built-in demo district)", None
    elif not settings.is_rest:
        base_url = str(Path(settings.csv_path).expanduser().resolve().parent)
        label = f"csv {base_url}"
    else:
        base_url = redact_url(settings.base_url)
        label = settings.connection_label()
    version = settings.version
    digest = hashlib.sha1(label.encode()).hexdigest()[:8]
    connection_id = f"{settings.provider}-v{(version or 'x').replace('.', 'p')}-{digest}"
    return Connection(connection_id, label, settings.provider, base_url, version)


def active_connection(con: duckdb.DuckDBPyConnection) -> dict | None:
    rows = store.query_dicts(con, "SELECT * FROM provider_connections WHERE status = 'active'")
    return rows[0] if rows else None


def _register(con: duckdb.DuckDBPyConnection, connection: Connection, status: str, now: datetime) -> None:
    """Insert the connection if it is new (an existing row keeps its status)."""
    con.execute(
        """INSERT INTO provider_connections VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)
           ON CONFLICT (connection_id) DO NOTHING""",
        [connection.connection_id, connection.label, connection.provider, connection.base_url, connection.version,
         status, now, now if status == "active" else None])


def require_active_connection(connect, settings, now: datetime | None = None) -> tuple[Connection, bool]:
    """The sync guard: returns (the configured connection, whether it is the active one already).

    `connect` opens the warehouse (a context manager yielding a DuckDB connection). While no connection is active
    (a district's first sync, or first syncs that all failed), the configured connection is registered as a
    `candidate` and the sync may run: `activate_connection` makes it active once the sync applied. When a
    connection is active, a sync whose configured connection is another one raises ConnectionChanged naming both
    connections and the procedure; a candidate left by a failed sync never blocks a different connection.
    """
    connection = connection_of(settings)
    now = now or datetime.now().astimezone()
    with connect() as con, store.transaction(con):
        active = active_connection(con)
        if active is None:
            _register(con, connection, "candidate", now)
            return connection, False
        if active["connection_id"] == connection.connection_id:
            return connection, True
    raise _changed(connection, active)


def activate_connection(con: duckdb.DuckDBPyConnection, connection: Connection,
                        now: datetime | None = None) -> bool:
    """After a sync against `connection` applied: make it active when none is; True when this call activated it.

    Raises ConnectionChanged when another connection became active meanwhile (a concurrent first sync).
    """
    now = now or datetime.now().astimezone()
    with store.transaction(con):
        active = active_connection(con)
        if active is not None:
            if active["connection_id"] != connection.connection_id:
                raise _changed(connection, active)
            return False
        _register(con, connection, "active", now)
        con.execute("UPDATE provider_connections SET status = 'active', activated_at = ?, retired_at = NULL "
                    "WHERE connection_id = ?", [now, connection.connection_id])
    return True


def _changed(connection: Connection, active: dict) -> ConnectionChanged:
    return ConnectionChanged(
        f"The configured OneRoster connection changed: configured {connection.label} "
        f"[{connection.connection_id}], active {active['label']} [{active['connection_id']}] since "
        f"{active['activated_at']:%Y-%m-%d %H:%M %Z}. Building and student syncs refuse to run against a new "
        "connection until the provider switch is done: run the job provider_switch (it builds id_crosswalk from "
        "the configured connection and applies it), then backfill rebuild_student_tables for partition "
        f"{connection.connection_id} ({PROCEDURE}). If the change was not intended, restore the previous "
        "connection's environment variables.")


# ---- crosswalk -----------------------------------------------------------------------------------------------------
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


@dataclass
class CrosswalkReport:
    switch_id: str
    old: dict
    new: Connection
    status: str  # 'ready' | 'blocked'
    reasons: list[str] = field(default_factory=list)  # thresholds exceeded: approvable
    counts: dict[str, int] = field(default_factory=dict)
    rules_used: dict[str, dict[str, int]] = field(default_factory=dict)  # entity -> rule -> matched
    ambiguous: list[dict] = field(default_factory=list)  # samples (≤ 50) for the UI
    unmatched: list[dict] = field(default_factory=list)


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
        _register(con, new, "candidate", now)
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
        _summarise(con, report, policy)
        c = report.counts
        con.execute(
            "INSERT INTO provider_switches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            [switch_id, now, old["connection_id"], new.connection_id, new.label, report.status,
             "; ".join(report.reasons) or None, orgs.rows, students.rows, students.started_at, True,
             c["buildings_matched"], c["buildings_ambiguous"], c["buildings_unmatched"], c["schools_unmatched"],
             c["students_matched"], c["students_ambiguous"], c["students_unmatched_old"],
             c["students_unmatched_new"]])
    return report


def _summarise(con, report: CrosswalkReport, policy: SwitchPolicy) -> None:
    sid = report.switch_id
    rows = store.query_dicts(con, """
        SELECT entity, status, rule, old_id IS NOT NULL AS old_side, internal_id IS NOT NULL AS registered,
               count(DISTINCT coalesce(old_id, new_id)) AS n
        FROM id_crosswalk WHERE switch_id = ? GROUP BY ALL""", [sid])

    def n(entity, status, old_side=None, registered=None):
        return sum(r["n"] for r in rows if r["entity"] == entity and r["status"] == status
                   and (old_side is None or r["old_side"] == old_side)
                   and (registered is None or r["registered"] == registered))

    c = report.counts = {
        "buildings_total": con.execute("SELECT count(*) FROM buildings").fetchall()[0][0],
        "buildings_matched": n("building", "matched"), "buildings_ambiguous": n("building", "ambiguous", True),
        "buildings_unmatched": n("building", "unmatched", True), "schools_unmatched": n("building", "unmatched", False),
        "students_total": con.execute("SELECT count(*) FROM students").fetchall()[0][0],
        "students_matched": n("student", "matched"), "students_ambiguous": n("student", "ambiguous", True),
        "students_unmatched_old": n("student", "unmatched", True, True),
        "ignored_unmatched_old": n("student", "unmatched", True, False),
        "students_unmatched_new": n("student", "unmatched", False),
    }
    for entity in ("building", "student"):
        report.rules_used[entity] = {r["rule"]: r["n"] for r in rows
                                     if r["entity"] == entity and r["status"] == "matched"}
    for entity, total in (("building", c["buildings_total"]), ("student", c["students_total"])):
        unmatched = c["buildings_unmatched"] if entity == "building" else c["students_unmatched_old"]
        ambiguous = c[f"{entity}s_ambiguous"]
        if total and 100.0 * unmatched / total > policy.max_unmatched_pct:
            report.reasons.append(f"{unmatched} of {total} {entity}s ({100.0 * unmatched / total:.1f}%) match no "
                                  f"record of the new connection (max {policy.max_unmatched_pct:g}%)")
        if ambiguous > policy.max_ambiguous:
            report.reasons.append(f"{ambiguous} {entity}s match ambiguously (max {policy.max_ambiguous})")
    report.status = "blocked" if report.reasons else "ready"
    sample = """SELECT entity, old_id, new_id, internal_id, rule, detail FROM id_crosswalk
                WHERE switch_id = ? AND status = ? ORDER BY entity, old_id NULLS LAST, new_id LIMIT 50"""
    report.ambiguous = store.query_dicts(con, sample, [sid, "ambiguous"])
    report.unmatched = store.query_dicts(con, sample, [sid, "unmatched"])


# ---- apply ---------------------------------------------------------------------------------------------------------
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


def apply_switch(con: duckdb.DuckDBPyConnection, switch_id: str, run_id: str | None, now: datetime,
                 approved: bool = False) -> SwitchResult:
    """Apply a built crosswalk in one transaction (see the module docstring); nothing is deleted.

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


# ---- rebuild -------------------------------------------------------------------------------------------------------
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
        plan = plan_student_sync(con, now)
        if not approved and (plan.deactivated > max_deactivate or (
                plan.active_before and 100.0 * plan.deactivated / plan.active_before > max_deactivate_pct)):
            raise SwitchBlocked([f"the rebuild would deactivate {plan.deactivated} of {plan.active_before} active "
                                 f"students (max {max_deactivate_pct:g}% / {max_deactivate})"])
        result = apply_student_sync(con, plan, now, run_id)
    return RebuildResult(connection_id, result)
