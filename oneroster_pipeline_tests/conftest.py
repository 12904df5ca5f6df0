"""Test settings shared by every test: property-based tests draw the same cases on every run (CI included);
`HYPOTHESIS_PROFILE=explore` draws new random cases (and more with each file's own environment knob). One
throwaway PostgreSQL server for the session (`postgres_server`), started by the first test that needs it (the
deployment and lake tests: each takes a database of its own). `project`: a copy of the project for the tests that run
README's commands."""

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from oneroster_pipeline_tests.deploy.postgres_server import PostgresServer, start_server, stop_server

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project as a clone lays it out (no developer's .env, no data, no Dagster history): the tests
    that run README's commands run them in it."""
    copy = tmp_path.resolve() / "project"
    shutil.copytree(ROOT / "oneroster_pipeline", copy / "oneroster_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "dagster.yaml", "workspace.yaml"):
        shutil.copy(ROOT / name, copy / name)
    return copy


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)
