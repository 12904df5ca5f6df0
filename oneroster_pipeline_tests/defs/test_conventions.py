"""The Dagster conventions a Dagster user looks for, on the built code location: every asset that is a DuckDB table
declares its columns (`dagster/column_schema`) exactly as DuckDB creates the table, in one district and with a
districts file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from oneroster_pipeline.config import Config
from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.tables import COLUMN_SCHEMA
from oneroster_pipeline.warehouse import store

# the assets that are a DuckDB table of the same name (the others write into tables of other names or none)
TABLE_ASSETS = {"oneroster_orgs", "oneroster_users", "buildings", "students", "student_buildings",
                "ignored_students", "id_crosswalk", "provider_connections"}
DISTRICTS = """
districts:
  - id: north
    timezone: America/Chicago
  - id: south
"""


def one_district() -> Config:
    return Config.of({})


def two_districts(folder: Path) -> Config:
    (folder / "districts.yaml").write_text(DISTRICTS)
    return Config.of({"ONEROSTER_DISTRICTS_FILE": str(folder / "districts.yaml")})


@pytest.fixture(params=["one district", "districts file"])
def specs(request, tmp_path) -> dict[str, dg.AssetSpec]:
    config = one_district() if request.param == "one district" else two_districts(tmp_path)
    defs = build_definitions(config=config)
    return {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}


def created_columns(tmp_path: Path) -> dict[str, list[tuple[str, str, bool]]]:
    """Every table's columns (name, type, nullable) as a warehouse file opened by the sync has them."""
    with store.connect(tmp_path / "fresh.duckdb") as con:
        rows = con.execute("SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM "
                           "information_schema.columns WHERE table_schema = 'main' "
                           "ORDER BY table_name, ordinal_position").fetchall()
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    for table, *column in rows:
        tables.setdefault(table, []).append(tuple(column))
    return tables


def test_every_table_asset_declares_the_columns_duckdb_creates(specs, tmp_path):
    created = created_columns(tmp_path)
    assert TABLE_ASSETS <= set(created)  # each is a table of the warehouse
    declared = {name: spec.metadata[COLUMN_SCHEMA] for name, spec in specs.items() if COLUMN_SCHEMA in spec.metadata}
    assert set(declared) == TABLE_ASSETS == {name for name in specs if name in created}
    for name, schema in declared.items():
        assert isinstance(schema, dg.TableSchema)
        assert [(c.name, c.type, c.constraints.nullable) for c in schema.columns] == created[name], name
