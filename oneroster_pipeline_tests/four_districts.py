"""The districts file the many-district CLI tests share (DuckDB files in defs/test_many_districts.py, one lake in
lake/test_lake_dagster.py): north on OneRoster 1.2 over OAuth2, south on 1.1 with a bearer token, west a CSV export,
and dead, whose URL nothing listens on. The secrets are given by variable name, as a deployment does."""

from __future__ import annotations

import sys
from pathlib import Path

DAGSTER = str(Path(sys.executable).parent / "dagster")
SECRETS = {"NORTH_OR_SECRET": "north-secret-QWERTY", "SOUTH_OR_TOKEN": "south-token-ASDFGH",
           "DEAD_OR_SECRET": "dead-secret-ZXCVBN"}


def districts_yaml(north, south, export: Path, dead_port: int) -> str:
    """The file's text for the demo providers `north` and `south` (client_fixtures.serve), the CSV export `export`
    and a `dead` district at 127.0.0.1:`dead_port`."""
    return f"""
districts:
  - id: north
    name: North Unified
    provider: oneroster
    base_url: {north.base_url("1.2")}
    auth: oauth2
    token_url: {north.token_url}
    client_id: {north.settings.client_id}
    client_secret_env: NORTH_OR_SECRET
    page_size: 40
    timezone: America/Chicago
  - id: south
    name: South County
    provider: oneroster
    base_url: {south.base_url("1.1")}
    auth: bearer
    access_token_env: SOUTH_OR_TOKEN
    page_size: 25
  - id: west
    provider: csv
    csv_path: {export}
  - id: dead
    name: Dead Valley
    provider: oneroster
    base_url: http://127.0.0.1:{dead_port}/ims/oneroster/v1p2
    auth: oauth2
    token_url: http://127.0.0.1:{dead_port}/oauth2/token
    client_id: nobody
    client_secret_env: DEAD_OR_SECRET
    max_retries: 0
    timeout_seconds: 2
"""
