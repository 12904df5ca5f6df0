"""Student sync: plan the next student tables from the staged users and the buildings, then apply them."""

# Set-based SQL run inside the caller's transaction (no dagster import); a student whose school is not a building is
# recorded in `ignored_students` with a reason.

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from .people import build_users
from .store import query_dicts

# why a fetched student has no building (docs/reference.md, `ignored_students`): an active school org of theirs has no building
# yet (run building sync); their only school org(s) are tobedeleted (building sync creates no building for them);
# none of their orgs is a school
IGNORED_REASONS = ("school_not_a_building", "school_tobedeleted", "no_school_org")


@dataclass
class StudentSyncPlan:
    """What a student sync would change, computed before anything is applied."""

    active_before: int = 0
    incoming: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    reactivated: int = 0
    newly_ignored: int = 0

    def as_metadata(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class StudentSyncResult:
    plan: StudentSyncPlan
    imported: int = 0
    multi_building: int = 0
    ignored_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def ignored(self) -> int:
        return sum(self.ignored_by_reason.values())


_STUDENT_FIELDS = (
    "building_id", "building_sis", "given_name", "family_name", "middle_name", "username", "email",
    "identifier", "grade", "enabled_user", "status",
)


def _one_org_rows(columns: str) -> str:
    """`UNION ALL` the users of exactly one org that is a building (`u`), joined to it (`l`): `columns` of each."""
    return f"""
        UNION ALL
        SELECT {columns}
        FROM _users u JOIN buildings l ON l.building_sis = u.org_sourced_ids[1] WHERE len(u.org_sourced_ids) = 1"""


def plan_student_sync(con: duckdb.DuckDBPyConnection, now: datetime, person_key: str | None = None) -> StudentSyncPlan:
    """Compute the next `students` state from `oneroster_users` and `buildings` into temp tables, and count it.
    With `person_key`, the records of one person are one student (people.py: `_users`).

    Students keep their `student_id` (by sourcedId) forever; one absent from `oneroster_users` stays, with
    status 'inactive' and `deactivated_at`; one that returns is reactivated under the same id. `_next_students`
    holds only the rows that change (with their old status and building, and the changed fields of an update), so
    the diff, the holds and the apply never re-join `students`; the students absent from it stay as they are.
    """
    build_users(con, person_key)
    # one scan of the users: each membership carries the user's primary org (no join back to oneroster_users). The
    # primary building (issue 25): the primary org (normalize.py: primaryOrg, else the student role's roleType
    # primary) if it is a building, else the building with the lowest sourcedId, never the provider's order.
    # A user of one org (every 1.2 record of one role, many 1.1 ones) needs no ranking: a plain join on the few
    # buildings (1,000,000 such students: links 1.0 -> 0.2 s, _incoming 1.0 -> 0.6 s). While a building_sis repeats
    # (a broken state the building_sis_unique check reports) every user takes the ranked path, as before.
    sis_unique = con.execute("SELECT count(*) = count(DISTINCT building_sis) FROM buildings").fetchall()[0][0]
    # the users ranked: everyone, or (every building_sis unique) those of several orgs; the others are _one_org_rows
    ranked_users = "(SELECT * FROM _users WHERE len(org_sourced_ids) > 1)" if sis_unique else "_users"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _building_links AS
        SELECT m.sourced_id, b.building_id, b.building_sis, m.pos::INTEGER AS pos,
               row_number() OVER (PARTITION BY m.sourced_id
                                  ORDER BY (m.org = m.primary_org) DESC NULLS LAST, m.org) = 1
                   AS is_primary
        FROM (
            SELECT sourced_id, primary_org_sourced_id AS primary_org, unnest(org_sourced_ids) AS org,
                   unnest(range(1, len(org_sourced_ids) + 1)) AS pos
            FROM {ranked_users}) m
        JOIN buildings b ON b.building_sis = m.org
        QUALIFY row_number() OVER (PARTITION BY m.sourced_id, b.building_id ORDER BY m.pos) = 1
        {_one_org_rows("u.sourced_id, l.building_id, l.building_sis, 1::INTEGER, true") if sis_unique else ""}
        """
    )
    incoming = ("u.sourced_id, l.building_id, l.building_sis, u.given_name, u.family_name, u.middle_name, u.username, "
                "u.email, u.identifier, u.grades[1] AS grade, u.enabled_user, coalesce(u.status, 'active') AS status")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _incoming AS
        SELECT {incoming}
        FROM {ranked_users} u JOIN _building_links l ON l.sourced_id = u.sourced_id AND l.is_primary
        {_one_org_rows(incoming) if sis_unique else ""}
        """
    )
    changed = (f"({', '.join(f'i.{f}' for f in _STUDENT_FIELDS)}) "
               f"IS DISTINCT FROM ({', '.join(f'e.{f}' for f in _STUDENT_FIELDS)})")
    next_values = {f: f"CASE WHEN i.sourced_id IS NULL THEN e.{f} ELSE i.{f} END"
                   for f in _STUDENT_FIELDS if f != "status"}
    created = "e.sourced_id IS NULL"
    updated = f"(i.sourced_id IS NOT NULL AND e.sourced_id IS NOT NULL AND {changed})"
    inactive_now = "(i.sourced_id IS NULL OR i.status <> 'active')"
    next_values["status"] = "CASE WHEN i.sourced_id IS NULL THEN 'inactive' ELSE i.status END"
    next_values["updated_at"] = (f"CASE WHEN {created} OR {updated} OR (i.sourced_id IS NULL AND e.status <> "
                                 "'inactive') THEN $now ELSE e.updated_at END")
    next_values["deactivated_at"] = f"CASE WHEN {inactive_now} THEN coalesce(e.deactivated_at, $now) END"
    # the changed fields of an update, each as {field, old, new} (the old values are gone once applied)
    field_changes = ", ".join(
        f"CASE WHEN i.{f} IS DISTINCT FROM e.{f} THEN "
        f"{{'field': '{f}', 'old': e.{f}::VARCHAR, 'new': i.{f}::VARCHAR}} END"
        for f in _STUDENT_FIELDS)
    # a row to write: new, or any column differs from the stored row (unchanged rows are not rewritten)
    dirty = (f"{created} OR ({', '.join(next_values.values())}) "
             f"IS DISTINCT FROM ({', '.join(f'e.{c}' for c in next_values)})")
    # only the rows to write are kept (every created, updated, deactivated or reactivated row is one of them): the
    # unchanged students are neither materialised nor rewritten. student_id stays NULL for a new student here:
    # numbered below, in sourcedId order after the highest id
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _next_students AS
        SELECT * FROM (
        SELECT e.student_id AS student_id,
               coalesce(i.sourced_id, e.sourced_id) AS sourced_id,
               {", ".join(f"{v} AS {c}" for c, v in next_values.items() if c in _STUDENT_FIELDS)},
               coalesce(e.created_at, $now) AS created_at,
               {next_values["updated_at"]} AS updated_at,
               {next_values["deactivated_at"]} AS deactivated_at,
               {created} AS _created,
               {updated} AS _updated,
               {inactive_now} AND NOT {created} AND e.deactivated_at IS NULL AS _deactivated,
               NOT {inactive_now} AND e.deactivated_at IS NOT NULL AS _reactivated,
               {dirty} AS _dirty,
               e.status AS _old_status,
               e.building_sis AS _old_building_sis,
               CASE WHEN {updated} THEN list_filter([{field_changes}], lambda c: c IS NOT NULL) END AS _changes
        FROM _incoming i
        FULL OUTER JOIN students e ON e.sourced_id = i.sourced_id)
        WHERE _dirty OR _created OR _updated OR _deactivated OR _reactivated
        """,
        {"now": now},
    )
    con.execute(
        """
        UPDATE _next_students n SET student_id = ids.student_id
        FROM (SELECT sourced_id, (SELECT coalesce(max(student_id), 0) FROM students)
                                 + row_number() OVER (ORDER BY sourced_id) AS student_id
              FROM _next_students WHERE _created) ids
        WHERE n._created AND n.sourced_id = ids.sourced_id
        """
    )
    _plan_ignored(con, now)
    _plan_diff(con)
    counts = con.execute(
        """
        SELECT (SELECT count(*) FROM students WHERE deactivated_at IS NULL), (SELECT count(*) FROM _incoming),
               count(*) FILTER (WHERE _created), count(*) FILTER (WHERE _updated),
               count(*) FILTER (WHERE _deactivated), count(*) FILTER (WHERE _reactivated),
               (SELECT count(*) FROM _diff WHERE change = 'ignore')
        FROM _next_students
        """
    ).fetchall()[0]
    return StudentSyncPlan(*counts)


def apply_student_sync(
    con: duckdb.DuckDBPyConnection, plan: StudentSyncPlan, now: datetime, run_id: str | None,
    hold_deactivations: bool = False,
) -> StudentSyncResult:
    """Write the planned state: the diff into `student_changes`, then the three student tables.

    With `hold_deactivations`, students the plan would deactivate keep their current row (and their change
    stays out of the history): additions, updates and reactivations still apply.
    """
    if hold_deactivations:
        con.execute("CREATE OR REPLACE TEMP TABLE _held AS SELECT sourced_id FROM _next_students WHERE _deactivated")
        con.execute("DELETE FROM _next_students WHERE _deactivated")
        con.execute("""
            INSERT INTO _next_students BY NAME
            SELECT e.*, false AS _created, false AS _updated, false AS _deactivated, false AS _reactivated,
                   false AS _dirty
            FROM students e SEMI JOIN _held h ON h.sourced_id = e.sourced_id""")
        con.execute("DELETE FROM _diff WHERE sourced_id IN (SELECT sourced_id FROM _held)")
    con.execute(
        """
        INSERT INTO student_changes BY NAME
        SELECT $run_id AS run_id, $now AS changed_at, student_id, sourced_id, change, field, old_value, new_value
        FROM _diff WHERE change <> 'ignore'
        """,
        {"now": now, "run_id": run_id},
    )
    # only the rows that differ are rewritten: the others stay as they are
    con.execute("DELETE FROM students WHERE student_id IN (SELECT student_id FROM _next_students WHERE _dirty)")
    con.execute(
        f"""
        INSERT INTO students BY NAME
        SELECT student_id, sourced_id, {", ".join(_STUDENT_FIELDS)}, created_at, updated_at, deactivated_at
        FROM _next_students WHERE _dirty
        """
    )
    con.execute("DELETE FROM student_buildings")
    con.execute(
        """
        INSERT INTO student_buildings BY NAME
        SELECT s.student_id, l.sourced_id, l.building_id, l.building_sis, l.is_primary,
               l.pos AS provider_position
        FROM _building_links l JOIN students s ON s.sourced_id = l.sourced_id
        """
    )
    con.execute("DELETE FROM ignored_students")
    con.execute("INSERT INTO ignored_students BY NAME SELECT * FROM _next_ignored")
    ignored = {r["reason"]: r["n"] for r in query_dicts(
        con, "SELECT reason, count(*) AS n FROM ignored_students GROUP BY reason")}
    imported, multi = con.execute(
        """
        SELECT (SELECT count(*) FROM students WHERE deactivated_at IS NULL),
               -- student_buildings is _building_links with student ids: a student in more than one building has
               -- a link that is not their primary one (no aggregation over the whole table)
               (SELECT count(DISTINCT sourced_id) FILTER (WHERE NOT is_primary) FROM _building_links)
        """
    ).fetchall()[0]
    return StudentSyncResult(
        plan=plan, imported=imported, multi_building=multi,
        ignored_by_reason={reason: ignored.get(reason, 0) for reason in IGNORED_REASONS},
    )


def _plan_diff(con: duckdb.DuckDBPyConnection) -> None:
    """`_diff`: the record-level change the plan makes, one row per insert, deactivation and reactivation, one per
    changed field of an update, and one per student newly ignored (or ignored for a new reason)."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _diff AS
        SELECT student_id, sourced_id, building_sis, change, 'status' AS field, _old_status AS old_value,
               status AS new_value, NULL::VARCHAR AS reason
        FROM (
            SELECT student_id, sourced_id, building_sis, status, _old_status,
                   CASE WHEN _created THEN 'insert' WHEN _deactivated THEN 'deactivate'
                        WHEN _reactivated THEN 'reactivate' END AS change
            FROM _next_students WHERE _created OR _deactivated OR _reactivated)
        WHERE change IS NOT NULL
        UNION ALL
        SELECT student_id, sourced_id, building_sis, 'update', c.field, c.old, c.new, NULL
        FROM (SELECT student_id, sourced_id, building_sis, _deactivated OR _reactivated AS lifecycle,
                     unnest(_changes) AS c
              FROM _next_students WHERE _updated)
        WHERE NOT (lifecycle AND c.field = 'status')
        UNION ALL
        SELECT NULL, n.sourced_id, NULL, 'ignore', NULL, NULL, NULL, n.reason
        FROM _next_ignored n ANTI JOIN ignored_students i ON i.sourced_id = n.sourced_id AND i.reason = n.reason
        """
    )


def _plan_ignored(con: duckdb.DuckDBPyConnection, now: datetime) -> None:
    """`_next_ignored`: every fetched student with no building, with the reason a person can act on.

    school_not_a_building: an org of the student is a school that is not tobedeleted (so building sync would create
    its building); school_tobedeleted: the student's school org(s) are all tobedeleted (building sync creates no
    building for them: the provider is removing them); no_school_org: no org of the student is a school (each
    named with its type, or as missing from the org pull). A missing name or status never changes the reason.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _next_ignored AS
        WITH org_labels AS (  -- one small map, sourcedId -> (kind, "id (name, status)" | "id (type)")
            SELECT map(list(sourced_id), list({
                       'kind': CASE WHEN type <> 'school' OR type IS NULL THEN 'other'
                                    WHEN status = 'tobedeleted' THEN 'tobedeleted' ELSE 'school' END,
                       'label': CASE WHEN type = 'school'
                                     THEN sourced_id || ' (' || coalesce(name, 'no name') || ', '
                                          || coalesce(status, 'no status') || ')'
                                     ELSE sourced_id || ' (' || coalesce(type, 'no type') || ')' END})) AS labels
            FROM oneroster_orgs
        ), unmatched AS (
            SELECT u.sourced_id, u.given_name, u.family_name, u.org_sourced_ids,
                   list_transform(coalesce(u.org_sourced_ids, []), lambda org: coalesce(
                       map_extract_value(n.labels, org), {'kind': 'other', 'label': org || ' (not in the org pull)'}))
                       AS orgs
            FROM _users u ANTI JOIN _building_links l ON l.sourced_id = u.sourced_id
            CROSS JOIN org_labels n
        ), classified AS (
            SELECT *, list_filter(orgs, lambda o: o.kind <> 'other') AS schools,
                   CASE WHEN list_bool_or(list_transform(orgs, lambda o: o.kind = 'school')) THEN 'school_not_a_building'
                        WHEN list_bool_or(list_transform(orgs, lambda o: o.kind = 'tobedeleted'))
                            THEN 'school_tobedeleted'
                        ELSE 'no_school_org' END AS reason
            FROM unmatched
        )
        SELECT sourced_id, given_name, family_name, org_sourced_ids, reason,
               CASE reason
                    WHEN 'school_not_a_building'
                    THEN 'school org(s) with no building: '
                         || array_to_string(list_transform(schools, lambda o: o.label), '; ')
                         || ' - run building sync to create buildings for active schools'
                    WHEN 'school_tobedeleted'
                    THEN 'school org(s) marked tobedeleted by the provider, so building sync creates no building: '
                         || array_to_string(list_transform(schools, lambda o: o.label), '; ')
                         || ' - if the school is still open, ask the provider to set its status to active'
                    ELSE 'orgs are not schools: '
                         || coalesce(nullif(array_to_string(list_transform(orgs, lambda o: o.label), ', '), ''),
                                     '(none)')
               END AS detail,
               $now AS recorded_at
        FROM classified
        """,
        {"now": now},
    )


def repeated_student_ids(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The sourced_id and student_id values held by more than one row of students (compared exactly, as stored):
    column, value, rows."""
    return query_dicts(con, """
        SELECT 'sourced_id' AS column, sourced_id AS value, count(*) AS rows FROM students
        GROUP BY sourced_id HAVING count(*) > 1
        UNION ALL
        SELECT 'student_id', student_id::VARCHAR, count(*) FROM students
        GROUP BY student_id HAVING count(*) > 1
        ORDER BY 1, 2""")


def students_without_building(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The students whose building_id is no building, by student_id: student_id, sourced_id, building_id."""
    return query_dicts(con, """
        SELECT s.student_id, s.sourced_id, s.building_id FROM students s
        ANTI JOIN buildings b ON b.building_id = s.building_id ORDER BY s.student_id""")


def ignored_student_count(con: duckdb.DuckDBPyConnection, reason: str) -> int:
    """How many fetched students are ignored for `reason` (one of IGNORED_REASONS)."""
    return con.execute("SELECT count(*) FROM ignored_students WHERE reason = ?", [reason]).fetchall()[0][0]
