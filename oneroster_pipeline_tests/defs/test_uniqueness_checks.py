"""The uniqueness checks of the sync (issue 24): `building_sis_unique` on buildings and `students_ids_unique` on
students fail with ERROR severity when a value repeats, and only on an exact repeat (ids are opaque: ` SCH-1 ` and
`SCH-1` are two values)."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from oneroster_pipeline.defs.sync.checks import building_sis_unique, students_ids_unique
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.policy import SyncPolicy

TWINS = (" TWIN-1 ", "TWIN-1", "\nTWIN-1")
NOW = datetime(2026, 3, 2, tzinfo=timezone.utc)


def test_building_sis_unique_fails_error_when_a_building_sis_repeats(tmp_path):
    with store.connect(tmp_path / "oneroster.duckdb") as con:
        con.executemany("INSERT INTO buildings VALUES (?, ?, ?, 'active', ?, ?, NULL, 'oneroster')",
                        [[1, "Plain School", "SCH-1", NOW, NOW], [2, "Spaced School", " SCH-1 ", NOW, NOW]])
        clean = building_sis_unique.evaluate(con, SyncPolicy.from_env({}))
        assert clean.passed and clean.metadata["repeated_building_sis"].value == 0

        con.execute("INSERT INTO buildings VALUES (3, 'Plain School again', 'SCH-1', 'active', ?, ?, NULL, "
                    "'buildings_csv')", [NOW, NOW])
        repeated = building_sis_unique.evaluate(con, SyncPolicy.from_env({}))
    assert not repeated.passed and repeated.severity == dg.AssetCheckSeverity.ERROR
    assert repeated.check_name == "building_sis_unique" and repeated.asset_key == dg.AssetKey("buildings")
    assert "'SCH-1' (building_id 1, 3)" in repeated.description and "' SCH-1 '" not in repeated.description
    assert repeated.metadata["repeated_values"].value == ["SCH-1"]


def test_students_ids_unique_fails_error_only_on_an_exact_repeat(tmp_path):
    """Guards the existing check: ids differing by whitespace are distinct values to it, an exact repeat fails."""
    row = "INSERT INTO students VALUES (?, ?, 1, 'SCH-1', NULL, NULL, NULL, NULL, NULL, NULL, NULL, true, " \
          "'active', ?, ?, NULL)"
    with store.connect(tmp_path / "oneroster.duckdb") as con:
        con.executemany(row, [[n + 1, sid, NOW, NOW] for n, sid in enumerate(TWINS)])
        assert students_ids_unique.evaluate(con, SyncPolicy.from_env({})).passed
        con.execute(row, [4, "TWIN-1", NOW, NOW])
        repeated = students_ids_unique.evaluate(con, SyncPolicy.from_env({}))
    assert not repeated.passed and repeated.severity == dg.AssetCheckSeverity.ERROR
    assert "TWIN-1" in repeated.metadata["repeats"].value
