"""Helpers for the client tests: a small demo district over real HTTP, and settings pointing at it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.buildings import sync_buildings
from oneroster_pipeline.warehouse.policy import HoldPolicy
from oneroster_pipeline.warehouse.pulls import apply_org_pull, apply_student_pull, stage_pull

SHAPE = DistrictShape(schools=3, students=150, seed=7)
PAGE_SIZE = 40
SECRETS = ("client-secret-XYZZY", "bearer-token-PLUGH")
# fast retries: no backoff sleeps, short timeouts
FAST = dict(backoff_seconds=0.0, backoff_jitter_seconds=0.0, backoff_max_seconds=0.0, timeout_seconds=5.0)


def serve(shape: DistrictShape = SHAPE, **settings) -> DemoProvider:
    """A demo provider (not started: use `with`) with test credentials and Retry-After 0 unless given."""
    settings.setdefault("client_secret", SECRETS[0])
    settings.setdefault("bearer_token", SECRETS[1])
    settings.setdefault("retry_after", 0)
    return DemoProvider(shape, DemoSettings(**settings))


def env_for(provider: DemoProvider, version: str = "1.2", auth: str | None = None,
            provider_name: str = "oneroster", **extra: str) -> dict[str, str]:
    """ONEROSTER_* variables for a running demo provider, with the credentials its auth mode needs."""
    auth = auth or provider.settings.auth
    env = {"ONEROSTER_PROVIDER": provider_name, "ONEROSTER_BASE_URL": provider.base_url(version),
           "ONEROSTER_AUTH": auth, "ONEROSTER_PAGE_SIZE": str(PAGE_SIZE)}
    if auth == "oauth2":
        env["ONEROSTER_TOKEN_URL"] = provider.token_url
    if auth in ("oauth1", "oauth2"):
        env.update(ONEROSTER_CLIENT_ID=provider.settings.client_id,
                   ONEROSTER_CLIENT_SECRET=provider.settings.client_secret)
    if auth == "bearer":
        env["ONEROSTER_ACCESS_TOKEN"] = provider.settings.bearer_token
    env.update(extra)
    return env


def settings_for(provider: DemoProvider, version: str = "1.2", auth: str | None = None,
                 env: dict[str, str] | None = None, **overrides) -> ConnectionSettings:
    """Validated settings for a running demo provider, with fast retries (overridable)."""
    settings = ConnectionSettings.from_env({**env_for(provider, version, auth), **(env or {})})
    return settings.with_overrides(**{**FAST, **overrides})


def concat(batches) -> pa.Table:
    """All batches as one table sorted by sourced_id (batches may be an iterator)."""
    batches = list(batches)
    assert batches, "no batch"
    return pa.concat_tables(batches).sort_by("sourced_id")


def expected_student_ids(provider: DemoProvider) -> list[str]:
    return sorted(provider.district.student_ids())


def api_requests(provider: DemoProvider) -> list:
    """The request log without token requests."""
    return [e for e in provider.request_log if not e.path.endswith("/oauth2/token")]


def land(source, folder: Path) -> duckdb.DuckDBPyConnection:
    """`source`'s org and student pulls staged and applied to a new in-memory DuckDB store, as a sync does (the
    source's person key included); the caller closes the connection."""
    con = duckdb.connect(":memory:")
    store.ensure_schema(con)
    now = datetime.now(timezone.utc)
    apply_org_pull(con, stage_pull(source, "orgs", folder), "run", now)
    with store.transaction(con):
        sync_buildings(con, now)
    apply_student_pull(con, stage_pull(source, "students", folder), "run", now, HoldPolicy())
    return con
