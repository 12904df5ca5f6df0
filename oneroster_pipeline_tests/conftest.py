"""Test settings shared by every test: property-based tests draw the same cases on every run (CI included);
`HYPOTHESIS_PROFILE=explore` draws new random cases (and more with each file's own environment knob). One
throwaway PostgreSQL server for the session (`postgres_server`), started by the first test that needs it (the
deployment and lake tests: each takes a database of its own)."""

import os

import pytest
from hypothesis import settings

from oneroster_pipeline_tests.deploy.postgres_server import PostgresServer, start_server, stop_server

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)
