"""One person, one student: providers that send one student record per (person, school) (Ed-Fi's OneRoster API:
a school-scoped sourcedId per record, the same `identifier`) are merged by a person key before the student plan.

A record's person key is its 1.2 `userMasterIdentifier` when it has one, else its `identifier` (trimmed; blank is
none). Ed-Fi sends `userMasterIdentifier` as null, so its records are keyed by `identifier`.

The plan reads `_users` (built here), never `oneroster_users` itself (which stays what the provider sent):
- without a person key, `_users` is `oneroster_users`;
- with one (ONEROSTER_PERSON_KEY, or the edfi profile's `identifier`), every record holding a key becomes one
  row per key: its sourced_id is the key (stable whichever schools the person is enrolled in, so a record leaving
  one school never deactivates a person still enrolled in another); active while any record is; its orgs are the
  orgs of its active records (of all records when none is active), in record order and once each, so every school
  is a `student_buildings` link; its primary org is the first primary stated by an active record (else the plan's
  rule picks one); its other fields are those of its first active record (lowest sourcedId). Records without a key
  stay as they are. The key merged by (`PERSON_KEYS`): `identifier` is the rule above (userMasterIdentifier, else
  identifier); `user_master_identifier` is userMasterIdentifier only (a record without one stays as it is).
`shared_person_keys` finds active student records sharing a person key (the rule above, whatever the merge uses)
whether or not they are merged (an asset check).
"""

from __future__ import annotations

import duckdb

from .store import query_dicts

# a configured person key (client/settings.py PERSON_KEYS maps ONEROSTER_PERSON_KEY to these names) -> the SQL of
# a record's key over oneroster_users (NULL: no key)
PERSON_KEYS = {
    "identifier": "coalesce(nullif(trim(user_master_identifier), ''), nullif(trim(identifier), ''))",
    "user_master_identifier": "nullif(trim(user_master_identifier), '')",
}
DETECTED_BY = "identifier"  # the rule `shared_person_keys` always applies: userMasterIdentifier, else identifier


def build_users(con: duckdb.DuckDBPyConnection, person_key: str | None) -> None:
    """The temp table `_users` the student plan reads: `oneroster_users`, merged by `person_key` when given."""
    if person_key is None:
        con.execute("CREATE OR REPLACE TEMP VIEW _users AS SELECT * FROM oneroster_users")
        return
    key = _column(person_key)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _users AS
        WITH keyed AS (
            SELECT *, {key} AS _person, coalesce(status, 'active') = 'active' AS _active
            FROM oneroster_users
        ), grouped AS (
            SELECT _person, bool_or(_active) AS _any_active, max(date_last_modified) AS _modified,
                   CASE WHEN bool_or(_active)
                        THEN flatten(list(org_sourced_ids ORDER BY sourced_id) FILTER (WHERE _active))
                        ELSE flatten(list(org_sourced_ids ORDER BY sourced_id)) END AS _orgs,
                   arg_min(primary_org_sourced_id, sourced_id)
                       FILTER (WHERE _active AND primary_org_sourced_id IS NOT NULL) AS _primary
            FROM keyed WHERE _person IS NOT NULL GROUP BY _person
        )
        SELECT k.* EXCLUDE (_person, _active, _any_active, _modified, _orgs, _primary) REPLACE (
                   k._person AS sourced_id,
                   CASE WHEN k._any_active THEN 'active' ELSE k.status END AS status,
                   k._modified AS date_last_modified,
                   list_filter(k._orgs, lambda org, i: list_position(k._orgs, org) = i) AS org_sourced_ids,
                   k._primary AS primary_org_sourced_id)
        FROM (SELECT * FROM keyed JOIN grouped USING (_person)) k
        QUALIFY row_number() OVER (PARTITION BY k._person ORDER BY NOT k._active, k.sourced_id) = 1
        UNION ALL BY NAME
        SELECT * EXCLUDE (_person, _active) FROM keyed WHERE _person IS NULL
        """
    )


def shared_person_keys(con: duckdb.DuckDBPyConnection, listed: int = 50) -> tuple[int, int, list[dict]]:
    """(people, their records, up to `listed` of them) among the active student records of `oneroster_users` that
    share a person key (userMasterIdentifier, else identifier): one person sent as several student records."""
    key = _column(DETECTED_BY)
    rows = query_dicts(
        con,
        f"""
        WITH keyed AS (
            SELECT {key} AS person_key, sourced_id, org_sourced_ids FROM oneroster_users
            WHERE coalesce(status, 'active') = 'active' AND {key} IS NOT NULL
        ), repeated AS (  -- the keys held more than once first: the lists are built for those alone (a count per
                          -- key costs a 1M-record pull ~1/3 of building every key's lists)
            SELECT person_key FROM keyed GROUP BY person_key HAVING count(*) > 1
        ), shared AS (
            SELECT person_key, list(sourced_id ORDER BY sourced_id) AS sourced_ids,
                   list_distinct(flatten(list(coalesce(org_sourced_ids, [])))) AS orgs
            FROM keyed SEMI JOIN repeated USING (person_key)
            GROUP BY person_key
        )
        SELECT (SELECT count(*) FROM shared) AS people,
               (SELECT coalesce(sum(len(sourced_ids)), 0) FROM shared) AS records,
               (SELECT list(s ORDER BY s.person_key) FROM (SELECT * FROM shared ORDER BY person_key LIMIT ?) s)
                   AS sample
        """, [listed])
    row = rows[0]
    sample = [{"person_key": s["person_key"], "sourced_ids": ", ".join(s["sourced_ids"]),
               "orgs": ", ".join(sorted(s["orgs"] or []))} for s in row["sample"] or []]
    return row["people"], int(row["records"]), sample


def current_person_key(con: duckdb.DuckDBPyConnection) -> str | None:
    """The person key the latest student pull was merged by (None: not merged, or no pull yet)."""
    rows = con.execute("SELECT person_key FROM pull_reports WHERE collection = 'students' "
                       "ORDER BY fetched_at DESC LIMIT 1").fetchall()
    return rows[0][0] if rows else None


def _column(person_key: str) -> str:
    """The SQL of a record's key by `person_key` (one of PERSON_KEYS)."""
    if person_key not in PERSON_KEYS:
        raise ValueError(f"unknown person key {person_key!r}; one of {', '.join(PERSON_KEYS)}")
    return PERSON_KEYS[person_key]
