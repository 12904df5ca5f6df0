"""Choosing the warehouse (ONEROSTER_WAREHOUSE) and reading a lake's settings: plain Python, run on every DuckDB
version (no extension needed). A bad value names its variable; a password never shows."""

from __future__ import annotations

import duckdb
import pytest

from oneroster_pipeline.client.settings import SettingsError
from oneroster_pipeline.warehouse import lake_settings, store
from oneroster_pipeline.warehouse.alerts import Alert, send_alert
from oneroster_pipeline.warehouse.backends import Warehouse
from oneroster_pipeline.warehouse.lake import LakeError, district_schema
from oneroster_pipeline.warehouse.lake_settings import LakeSettings, LakeUnavailable, backend_of

PG = "postgres:dbname=lake host=db.internal port=5433 user=oneroster"


def env(**values) -> dict[str, str]:
    return {f"ONEROSTER_{k.upper()}": v for k, v in values.items()}


def test_the_default_backend_is_the_duckdb_file_and_an_unknown_one_is_refused():
    assert backend_of({}) == backend_of(env(warehouse=" ")) == "duckdb"
    assert backend_of(env(warehouse="DuckLake")) == "ducklake"
    with pytest.raises(SettingsError, match="ONEROSTER_WAREHOUSE: must be one of duckdb, ducklake, got 'iceberg'"):
        backend_of(env(warehouse="iceberg"))


def test_a_duckdb_warehouse_is_the_file_as_before(tmp_path):
    warehouse = Warehouse.from_env({}, duckdb_path=str(tmp_path / "d.duckdb"), district_id="north")
    assert (warehouse.backend, warehouse.duckdb_path, warehouse.lake) == ("duckdb", str(tmp_path / "d.duckdb"), None)
    assert warehouse.staging_dir("r1", "orgs") == tmp_path / "staging" / "r1-north-orgs"
    with warehouse.connect() as con:
        assert con.execute("SELECT count(*) FROM students").fetchall() == [(0,)]
    send_alert(Alert("sync_held", "job", "run", "subject", "message"), warehouse)
    with duckdb.connect(str(tmp_path / "d.duckdb"), read_only=True) as con:
        assert con.execute("SELECT kind, subject FROM sync_alerts").fetchall() == [("sync_held", "subject")]


def test_a_lake_warehouse_is_the_districts_schema():
    variables = env(warehouse="ducklake", ducklake_catalog=PG, ducklake_data_path="/srv/lake")
    north = Warehouse.from_env(variables, duckdb_path="ignored.duckdb", district_id="north-1")
    assert (north.backend, north.schema, north.lake.catalog, north.lake.data_path) == (
        "ducklake", "north-1", PG, "/srv/lake")
    assert Warehouse.from_env(variables).schema == "main"  # the single district
    assert north.describe() == f"DuckLake catalog {PG}, data path /srv/lake, schema north-1"
    with pytest.raises(LakeError, match="cannot be a district schema"):
        district_schema("oneroster_guard")
    with pytest.raises(LakeError, match="cannot be a district schema"):
        district_schema("North West")


@pytest.mark.parametrize("values, message", [
    ({"ducklake_data_path": "/srv/lake"}, "ONEROSTER_DUCKLAKE_CATALOG: is required"),
    ({"ducklake_catalog": PG}, "ONEROSTER_DUCKLAKE_DATA_PATH: is required"),
    ({"ducklake_catalog": "postgres:host=db", "ducklake_data_path": "/l"}, "name the catalog's database"),
    ({"ducklake_catalog": "postgres:", "ducklake_data_path": "/l"}, "key=value pairs"),
    ({"ducklake_catalog": "sqlite:/l/c.sqlite", "ducklake_data_path": "/l"}, "sqlite: catalogs are not supported"),
    ({"ducklake_catalog": "/l/catalog.duckdb", "ducklake_data_path": "/l"}, "neither postgres:... nor a .ducklake"),
    ({"ducklake_catalog": PG + " password_env=LAKE_PW", "ducklake_data_path": "/l"}, "LAKE_PW, which is not set"),
])
def test_a_bad_lake_setting_names_its_variable(values, message):
    with pytest.raises(SettingsError, match=message):
        LakeSettings.from_env(env(**values))


def test_the_password_comes_from_the_environment_and_never_shows():
    named = LakeSettings.from_env({**env(ducklake_catalog=PG + " password_env=LAKE_PW", ducklake_data_path="/l"),
                                   "LAKE_PW": "s3cret-pw'x"})
    assert named.dsn == "dbname=lake host=db.internal port=5433 user=oneroster password='s3cret-pw\\'x'"
    assert "s3cret" not in repr(named) and "s3cret" not in named.describe() and "password_env" not in named.dsn
    from_pgpassword = LakeSettings.from_env({**env(ducklake_catalog=PG, ducklake_data_path="/l"),
                                             "PGPASSWORD": "pg-secret-9"})
    assert from_pgpassword.dsn.endswith("password='pg-secret-9'")
    literal = LakeSettings.from_env(env(ducklake_catalog=PG + " password=inline-pw-7", ducklake_data_path="/l"))
    assert "inline-pw-7" in literal.dsn and "inline-pw-7" not in literal.describe()
    assert literal.describe().endswith("password=***, data path /l")
    local = LakeSettings.from_env(env(ducklake_catalog="ducklake:data/lake.ducklake", ducklake_data_path="data/p"))
    assert not local.is_postgres and local.attach_target.endswith("/data/lake.ducklake")


def test_an_extension_built_for_another_duckdb_says_what_to_install(monkeypatch):
    monkeypatch.setattr(duckdb, "__version__", "9.9.9")
    with pytest.raises(LakeUnavailable, match=r"ducklake .*DuckDB 9\.9\.9|ducklake is not installed") as raised:
        lake_settings.extension_file("ducklake")
    assert f"duckdb=={lake_settings.LAKE_DUCKDB_VERSION}" in str(raised.value)
    assert lake_settings.unavailable_reason() == str(raised.value)


def test_a_check_registered_for_a_connection_runs_before_its_commit_and_a_failure_rolls_back():
    with duckdb.connect() as con:
        store.ensure_schema(con)
        seen = []

        def check(c):
            seen.append(c.execute("SELECT count(*) FROM sync_runs").fetchall()[0][0])
            if seen[-1] > 1:
                raise RuntimeError("refused")

        store.BEFORE_COMMIT[con] = check
        with store.transaction(con):
            store.upsert_sync_run(con, "a", job_name="j")
        with pytest.raises(RuntimeError, match="refused"), store.transaction(con):
            store.upsert_sync_run(con, "b", job_name="j")
        assert seen == [1, 2] and con.execute("SELECT run_id FROM sync_runs").fetchall() == [("a",)]
        del store.BEFORE_COMMIT[con]
        with store.transaction(con):  # no check registered: as before
            store.upsert_sync_run(con, "b", job_name="j")
        assert seen == [1, 2]
