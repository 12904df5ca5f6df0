"""The session's PostgreSQL server (one for every deployment test; each test gets its own database)."""

from __future__ import annotations

import itertools

import pytest

from oneroster_pipeline_tests.deploy.postgres_server import PostgresServer, start_server, stop_server

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> PostgresServer:
    """A fresh, empty database on the session's server: no test sees another's runs."""
    name = f"dagster_{next(_databases)}"
    con = postgres_server.connect()
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    con.close()
    return PostgresServer(bindir=postgres_server.bindir, root=postgres_server.root, port=postgres_server.port,
                          user=postgres_server.user, db_name=name)
