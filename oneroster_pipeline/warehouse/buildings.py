"""Building sync: the pre-existing buildings CSV and one building per active school org, never deleted; the
repeated building_sis values the `building_sis_unique` check reports."""

# Runs inside the caller's transaction (SQL over the DuckDB store, no dagster import).

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from .store import query_dicts


class BuildingsCsvError(ValueError):
    """The pre-existing buildings CSV cannot be loaded; the message names the file, line and column."""


@dataclass
class BuildingSyncResult:
    created: int = 0
    renamed: int = 0
    seeded_from_csv: int = 0
    school_missing: int = 0
    total: int = 0


def seed_buildings_from_csv(con: duckdb.DuckDBPyConnection, csv_path: str | Path, now: datetime) -> int:
    """Load pre-existing buildings (`name,building_sis`) into an empty registry, once, before the first sync."""
    if con.execute("SELECT count(*) FROM buildings").fetchall()[0][0]:
        return 0
    path = Path(csv_path)
    if not path.is_file():
        raise BuildingsCsvError(f"ONEROSTER_BUILDINGS_CSV: file not found: {path}")
    rows = con.execute(
        "SELECT * FROM read_csv(?, header = true, all_varchar = true)", [str(path)]
    )
    columns = [d[0] for d in rows.description]
    missing = {"name", "building_sis"} - set(columns)
    if missing:
        raise BuildingsCsvError(f"{path}: missing column(s) {sorted(missing)}; expected header name,building_sis")
    records = [dict(zip(columns, r)) for r in rows.fetchall()]
    seen: dict[str, int] = {}
    for line, record in enumerate(records, start=2):
        sis = (record["building_sis"] or "").strip()
        if not sis:
            raise BuildingsCsvError(f"{path}, line {line}: column building_sis is empty")
        if sis in seen:
            raise BuildingsCsvError(
                f"{path}, line {line}: building_sis {sis!r} repeats line {seen[sis]}"
            )
        seen[sis] = line
    con.executemany(
        "INSERT INTO buildings VALUES (?, ?, ?, 'active', ?, ?, NULL, 'buildings_csv')",
        [
            [i, (r["name"] or "").strip(), r["building_sis"].strip(), now, now]
            for i, r in enumerate(records, start=1)
        ],
    )
    return len(records)


def sync_buildings(con: duckdb.DuckDBPyConnection, now: datetime, flag_missing: bool = True) -> BuildingSyncResult:
    """Create a building per active school org without one, rename matched ones, flag vanished ones.

    Buildings are matched by `building_sis` = the school org's sourcedId, and never deleted. `flag_missing` is
    False after an incomplete org pull: a school absent from it is not known to be gone.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _active_schools AS
        SELECT sourced_id, name FROM oneroster_orgs WHERE type = 'school' AND status = 'active'
        """
    )
    renamed = con.execute(
        """
        UPDATE buildings b SET name = s.name, updated_at = $now
        FROM _active_schools s
        WHERE b.building_sis = s.sourced_id AND b.name IS DISTINCT FROM s.name
        """,
        {"now": now},
    ).fetchall()[0][0]
    reactivated = con.execute(
        """
        UPDATE buildings SET status = 'active', deactivated_at = NULL, updated_at = $now
        WHERE status <> 'active' AND origin = 'oneroster'
          AND building_sis IN (SELECT sourced_id FROM _active_schools)
        """,
        {"now": now},
    ).fetchall()[0][0]
    created = con.execute(
        """
        INSERT INTO buildings
        SELECT (SELECT coalesce(max(building_id), 0) FROM buildings) + row_number() OVER (ORDER BY s.sourced_id),
               s.name, s.sourced_id, 'active', $now, $now, NULL, 'oneroster'
        FROM _active_schools s ANTI JOIN buildings b ON b.building_sis = s.sourced_id
        """,
        {"now": now},
    ).fetchall()[0][0]
    # A school that vanished (or is tobedeleted) flags its building; the building itself stays.
    missing = con.execute(
        """
        UPDATE buildings SET status = 'school_missing', deactivated_at = $now, updated_at = $now
        WHERE status = 'active' AND origin = 'oneroster' AND $flag_missing
          AND building_sis NOT IN (SELECT sourced_id FROM _active_schools)
        """,
        {"now": now, "flag_missing": flag_missing},
    ).fetchall()[0][0]
    total = con.execute("SELECT count(*) FROM buildings").fetchall()[0][0]
    return BuildingSyncResult(created=created, renamed=renamed + reactivated, school_missing=missing, total=total)


def repeated_building_sis(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The building_sis values held by more than one building (each with its buildings' ids and names), which must
    never happen: a building is one school, matched by the school's sourcedId exactly as the provider gave it."""
    return query_dicts(con, """
        SELECT building_sis, count(*) AS buildings, list(building_id ORDER BY building_id) AS building_ids,
               list(name ORDER BY building_id) AS names
        FROM buildings GROUP BY building_sis HAVING count(*) > 1 ORDER BY building_sis""")


def buildings_without_active_school(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The active buildings whose building_sis is no active OneRoster school, by building_id: building_id, name,
    building_sis, origin."""
    return query_dicts(con, """
        SELECT b.building_id, b.name, b.building_sis, b.origin FROM buildings b
        WHERE b.status = 'active' AND b.building_sis NOT IN (
            SELECT sourced_id FROM oneroster_orgs WHERE type = 'school' AND status = 'active')
        ORDER BY b.building_id""")


def active_schools_without_building(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The active OneRoster schools no building has as building_sis, by name: sourced_id, name, identifier."""
    return query_dicts(con, """
        SELECT o.sourced_id, o.name, o.identifier FROM oneroster_orgs o
        WHERE o.type = 'school' AND o.status = 'active'
          AND o.sourced_id NOT IN (SELECT building_sis FROM buildings)
        ORDER BY o.name, o.sourced_id""")


def active_building_sis(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The building_sis of every active building (the schools the district expects to see)."""
    return [sis for (sis,) in con.execute("SELECT building_sis FROM buildings WHERE status = 'active'").fetchall()]
