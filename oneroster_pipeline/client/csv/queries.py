"""The SQL of the CSV pulls, run by DuckDB over the staged tables of reading.py.

`SQL_SETUP` defines the macros (text trimmed as the REST normaliser sees it, ids kept as given, comma lists,
normalize's role rule);
`org_query` and `student_query` select the rows of a pull in file order (1.2: roles.csv aggregated per user by
`roles_by_user` and joined to users.csv), `repeated` marking a sourcedId seen on an earlier row.
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from .. import normalize
from ..normalize import Rejection
from .reading import MISSING, LineIndex, StagedFile

__all__ = ["SQL_SETUP", "org_query", "roles_by_user", "student_query"]

# every character Python's str.strip() removes: what normalize calls whitespace (written out: scanning every code
# point for str.isspace() took 0.1 s of each process's start; a test checks the two agree)
WHITESPACE = "".join(map(chr, (*range(0x9, 0xE), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                              0x2028, 0x2029, 0x202F, 0x205F, 0x3000)))

SQL_SETUP = (
    "SET TimeZone = 'UTC'",
    "SET preserve_insertion_order = true",
    # text as the REST normaliser sees it: trimmed, empty -> NULL
    "CREATE OR REPLACE MACRO txt(x) AS NULLIF(trim(x, ' ' || chr(9) || chr(10) || chr(13)), '')",
    # a sourcedId as normalize._id sees it: opaque, kept as given; NULL when empty or whitespace only
    f"CREATE OR REPLACE MACRO sid(x) AS CASE WHEN trim(x, '{WHITESPACE}') = '' THEN NULL ELSE x END",
    # a list without repeats, first occurrence kept, order kept
    "CREATE OR REPLACE MACRO uniq(l) AS list_filter(l, lambda v, i: list_position(l, v) = i)",
    # a comma separated cell -> its trimmed, non-empty, distinct items in order
    "CREATE OR REPLACE MACRO csv_list(s) AS "
    "uniq(list_filter(list_transform(string_split(coalesce(s, ''), ','), lambda v: txt(v)), lambda v: v IS NOT NULL))",
    # a comma separated cell of sourcedIds -> its ids as given (sid), non-empty, distinct, in order
    "CREATE OR REPLACE MACRO id_list(s) AS "
    "uniq(list_filter(list_transform(string_split(coalesce(s, ''), ','), lambda v: sid(v)), lambda v: v IS NOT NULL))",
    # normalize's role rule, to tell in SQL the users that are not students (skipped) from those the student pull
    # must see: a student, or a user with no role or a role outside the vocabulary (rejected by normalize._role)
    "CREATE OR REPLACE MACRO role_norm(r) AS lower(trim(r, '"
    + WHITESPACE + "'))",
    "CREATE OR REPLACE MACRO role_known(r) AS list_contains(['" + "', '".join(sorted(normalize.ROLES)) + "'], "
    f"role_norm(r)) OR regexp_full_match(role_norm(r), '{normalize.EXT_PATTERN}')",
    "CREATE OR REPLACE MACRO pulled_as_student(roles) AS len(roles) = 0 OR "
    "list_bool_or(list_transform(roles, lambda r: role_norm(r) = 'student' OR NOT role_known(r)))",
)


def org_query(orgs: StagedFile) -> tuple[str, list]:
    """Every row of orgs.csv, in file order."""
    table = orgs.table
    return f"""
        SELECT rec, rec IN (SELECT rec FROM {table}_repeats) AS repeated,
               sid("sourcedId") AS sourced_id, txt(status) AS status,
               txt("dateLastModified") AS date_text,
               TRY_CAST(txt("dateLastModified") AS TIMESTAMPTZ) AS date_last_modified,
               txt(name) AS name, txt(type) AS type, txt(identifier) AS identifier,
               sid("parentSourcedId") AS parent_sourced_id, txt(legacy) AS legacy_sourced_id
        FROM {table}
        ORDER BY rec""", []


def student_query(version: str, users_file: StagedFile, by_user: str | None,
                  modified_since: datetime | None) -> tuple[str, list]:
    """The rows the student pull must see: students, and users whose roles cannot be told (normalize rejects them);
    1.2 joins `by_user` (the table of `roles_by_user`); with `modified_since`, later or empty dateLastModified."""
    users = users_file.table
    if version == "1.1":
        roles = """CASE WHEN txt(role) IS NULL THEN []::VARCHAR[] ELSE [lower(txt(role))] END"""
        orgs, primary, join, unknown_role = 'id_list("orgSourcedIds")', "NULL::VARCHAR", "", "false"
        master = "NULL::VARCHAR"  # userMasterIdentifier is a 1.2 column
    else:  # normalize's primary org: primaryOrgSourcedId, else the student role's primary org (roles.csv)
        roles, orgs = "coalesce(uniq(r.roles), []::VARCHAR[])", "coalesce(uniq(r.orgs), []::VARCHAR[])"
        primary = 'coalesce(sid(u."primaryOrgSourcedId"), r.primary_org)'
        join = f'LEFT JOIN {by_user} r ON r.user_id = sid(u."sourcedId")'
        unknown_role = "sourced_id IS NULL"  # no id: its roles cannot be known, so it is reported
        master = 'txt(u."userMasterIdentifier")'  # NULL when users.csv has no such column (reading.py)
    since, params = "", []
    if modified_since is not None:
        since, params = " AND (date_last_modified IS NULL OR date_last_modified > ?)", [_utc(modified_since)]
    return f"""
        SELECT * FROM (
              SELECT u.rec, u.rec IN (SELECT rec FROM {users}_repeats) AS repeated,
                     sid(u."sourcedId") AS sourced_id, txt(u.status) AS status,
                     txt(u."dateLastModified") AS date_text,
                     TRY_CAST(txt(u."dateLastModified") AS TIMESTAMPTZ) AS date_last_modified,
                     txt(u.username) AS username, txt(u."givenName") AS given_name,
                     txt(u."familyName") AS family_name, txt(u."middleName") AS middle_name,
                     txt(u.email) AS email, txt(u.identifier) AS identifier,
                     {master} AS user_master_identifier,
                     txt(u."enabledUser") AS enabled_text, {roles} AS roles, {orgs} AS org_sourced_ids,
                     {primary} AS primary_org_sourced_id, csv_list(u.grades) AS grades,
                     txt(u.legacy) AS legacy_sourced_id
              FROM {users} u {join})
        WHERE (pulled_as_student(roles) OR {unknown_role}){since}
        ORDER BY rec""", params


def roles_by_user(con: duckdb.DuckDBPyConnection, roles: StagedFile) -> str:
    """roles.csv aggregated per user (once): roles and orgs in file order (the provider's order, as REST keeps
    roles[]), and the org of the student role whose roleType is primary (the lowest org sourcedId if several, as
    normalize's `_user_row`). Rows without userSourcedId or role are rejections of the student pull."""
    table = "roles_by_user"
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall()[0][0]:
        con.execute(f"""
            CREATE TABLE {table} AS
            SELECT user_id, list_transform(items, lambda x: x.role) AS roles,
                   list_filter(list_transform(items, lambda x: x.org), lambda o: o IS NOT NULL) AS orgs, primary_org
            FROM (SELECT user_id,  -- list_sort of a plain list: an ordered aggregate would not spill to disk
                         list_sort(list({{'rec': rec, 'role': role, 'org': org}})) AS items,
                         min(org) FILTER (WHERE is_primary AND role_norm(role) = 'student') AS primary_org
                  FROM (SELECT rec, sid("userSourcedId") AS user_id, lower(txt(role)) AS role,
                               sid("orgSourcedId") AS org,
                               coalesce(role_norm("roleType") = 'primary', false) AS is_primary
                        FROM {roles.table})
                  WHERE user_id IS NOT NULL AND role IS NOT NULL
                  GROUP BY user_id)""")
        bad = con.execute(f"""
            SELECT rec, sid("sourcedId"), CASE WHEN sid("userSourcedId") IS NULL THEN 'userSourcedId'
                                                 ELSE 'role' END
            FROM {roles.table} WHERE sid("userSourcedId") IS NULL OR txt(role) IS NULL ORDER BY rec""").fetchall()
        lines = LineIndex(roles)
        roles.file_rejections = roles.file_rejections + [
            Rejection("role", sourced_id, f"{roles.name} line {lines.line_of(rec)}", column, MISSING)
            for rec, sourced_id, column in bad]
    return table


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
