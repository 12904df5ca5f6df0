"""The lake tests' fixtures: a lake with a local `.ducklake` catalog, and one with a PostgreSQL catalog on the session's
throwaway server (`deploy/postgres_server.py`: Debian's PostgreSQL, as CI installs it), each with a local data path.

The DuckLake backend needs the `[lake]` extra (DuckDB 1.5.5 and the extension wheels built for it): without them the
tests that need the extension are skipped with `lake_settings.unavailable_reason()`, which says what to install. CI
runs them in a venv of their own (.ci/run)."""

from __future__ import annotations

import pytest

from oneroster_pipeline.warehouse.lake_settings import LakeSettings, unavailable_reason
from oneroster_pipeline_tests.deploy.postgres_server import PostgresServer

UNAVAILABLE = unavailable_reason()
needs_lake = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"the DuckLake backend cannot run here: {UNAVAILABLE}")


def lake_env(catalog: str, data_path) -> dict[str, str]:
    return {"ONEROSTER_WAREHOUSE": "ducklake", "ONEROSTER_DUCKLAKE_CATALOG": catalog,
            "ONEROSTER_DUCKLAKE_DATA_PATH": str(data_path)}


@pytest.fixture
def local_lake(tmp_path) -> LakeSettings:
    """A new lake: a local .ducklake catalog file and a data folder under tmp_path."""
    return LakeSettings.from_env(lake_env(str(tmp_path / "catalog.ducklake"), tmp_path / "lake-data"))


@pytest.fixture
def pg_lake_env(postgres_server: PostgresServer, tmp_path) -> dict[str, str]:
    """The environment of a new lake: its catalog a fresh database of the session's PostgreSQL server (the root
    conftest's), its data a folder under tmp_path."""
    if UNAVAILABLE is not None:
        pytest.skip(f"the DuckLake backend cannot run here: {UNAVAILABLE}")
    return lake_env("postgres:" + postgres_server.new_database("lake").libpq, tmp_path / "lake-data")


@pytest.fixture
def pg_lake(pg_lake_env) -> LakeSettings:
    return LakeSettings.from_env(pg_lake_env)
