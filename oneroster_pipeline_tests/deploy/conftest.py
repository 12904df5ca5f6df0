"""The deployment tests' database: a fresh one on the session's PostgreSQL server (`postgres_server`, the root
conftest's) for each test."""

from __future__ import annotations

import pytest

from oneroster_pipeline_tests.deploy.postgres_server import PostgresServer


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> PostgresServer:
    """A fresh, empty database on the session's server: no test sees another's runs."""
    return postgres_server.new_database("dagster")
