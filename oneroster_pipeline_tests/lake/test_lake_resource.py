"""`WarehouseResource` bound from the configuration: the backend and the lake's settings from the environment or a
district's entry (districts-file keys), the catalog's password never a value the UI shows, a bad value failing when
the resources are bound. No DuckLake extension needed: nothing here connects."""

from __future__ import annotations

import dagster as dg
import pytest

from oneroster_pipeline.client.settings import SettingsError
from oneroster_pipeline.config import Config
from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.resources import WarehouseResource, default_resources

PASSWORD = "lake-pw-QWERTY"
CATALOG = "postgres:dbname=oneroster_lake host=127.0.0.1 port=5432 user=lake password_env=LAKE_PW"


def lake_vars(tmp_path) -> dict[str, str]:
    return {"ONEROSTER_WAREHOUSE": "ducklake", "ONEROSTER_DUCKLAKE_CATALOG": CATALOG,
            "ONEROSTER_DUCKLAKE_DATA_PATH": str(tmp_path / "lake-data"), "LAKE_PW": PASSWORD}


def test_the_default_backend_is_the_duckdb_file(tmp_path):
    warehouse = default_resources(Config.of({"ONEROSTER_DUCKDB_PATH": str(tmp_path / "w.duckdb")}))["warehouse"]
    assert not warehouse.is_lake and warehouse.backend is None
    assert warehouse.alerts_target() == str(tmp_path / "w.duckdb")
    assert warehouse.staging_dir("run", "students") == tmp_path / "staging" / "run-students"
    assert warehouse.warehouse().backend == "duckdb"


def test_a_lake_from_the_environment_keeps_its_password_out_of_the_ui(tmp_path):
    warehouse = default_resources(Config.of(lake_vars(tmp_path)))["warehouse"]
    assert warehouse.is_lake and isinstance(warehouse.lake_password, dg.EnvVar)
    assert PASSWORD not in repr(warehouse) and PASSWORD not in warehouse.describe()
    bound = warehouse.warehouse()
    assert bound.is_lake and bound.schema == "main" and bound.lake.data_path == str(tmp_path / "lake-data")
    assert "oneroster-staging" in str(warehouse.staging_dir("run", "students"))


def test_districts_file_keys_choose_each_districts_backend(tmp_path):
    (tmp_path / "districts.yaml").write_text(f"""
districts:
  - id: north
    warehouse: ducklake
    ducklake_catalog: {CATALOG}
    ducklake_data_path: {tmp_path / "lake-data"}
  - id: south
""")
    config = Config.of({"ONEROSTER_DISTRICTS_FILE": str(tmp_path / "districts.yaml"), "LAKE_PW": PASSWORD})
    layout = DistrictLayout.of(config)
    unbound = default_resources(config)["warehouse"]
    north = layout.bound("north", {"warehouse": unbound})["warehouse"]
    south = layout.bound("south", {"warehouse": unbound})["warehouse"]
    assert isinstance(north, WarehouseResource) and north.is_lake and not south.is_lake
    target = north.alerts_target()  # sync_alerts of a lake district go to its schema
    assert target.is_lake and target.schema == "north" and target.lake.password == PASSWORD
    assert PASSWORD not in target.describe()
    assert south.alerts_target().endswith("south.duckdb")


def test_a_bad_backend_fails_when_the_resources_are_bound(tmp_path):
    with pytest.raises(SettingsError, match="ONEROSTER_WAREHOUSE"):
        default_resources(Config.of({"ONEROSTER_WAREHOUSE": "sqlite"}))
    with pytest.raises(SettingsError, match="ONEROSTER_DUCKLAKE_DATA_PATH"):
        default_resources(Config.of({"ONEROSTER_WAREHOUSE": "ducklake",
                                     "ONEROSTER_DUCKLAKE_CATALOG": str(tmp_path / "c.ducklake")}))
