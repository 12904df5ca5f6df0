"""The Dagster resources: the OneRoster resource passes every client setting through from the environment, typed;
`default_resources` is the one loader, and a bad value fails there naming its variable."""

import math
import os

import dagster as dg
import pytest

from oneroster_pipeline.client.settings import ENV_VARS
from oneroster_pipeline.defs.resources import OneRosterResource, default_resources
from oneroster_pipeline.warehouse.policy import SyncPolicy


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)


@pytest.fixture
def clean_env(monkeypatch):
    for var in [v for v in os.environ if v.startswith("ONEROSTER_")]:
        monkeypatch.delenv(var)
    return monkeypatch


def test_every_client_setting_has_a_resource_field():
    fields = set(OneRosterResource.model_fields)
    missing = [var for name, var in ENV_VARS.items() if name not in fields]
    assert not missing, f"set in the environment but never reaching the client: {missing}"


def test_politeness_settings_reach_the_demo_connection(clean_env):
    clean_env.setenv("ONEROSTER_DEMO_STUDENTS", "230")
    clean_env.setenv("ONEROSTER_PAGE_SIZE", "50")
    clean_env.setenv("ONEROSTER_MAX_CONCURRENCY", "3")
    clean_env.setenv("ONEROSTER_BACKOFF_SECONDS", "0.2")
    clean_env.setenv("ONEROSTER_PEAK_HOURS", "none")
    clean_env.setenv("ONEROSTER_TIMEZONE", "America/Chicago")  # the fallback for ONEROSTER_DISTRICT_TIMEZONE
    resource = OneRosterResource.from_environment().process_config_and_initialize()
    log = Log()
    with resource.open(log) as source:
        rows = sum(batch.num_rows for batch in source.student_batches())
        settings, report = source.settings, source.reports["students"]
    assert any("built-in demo district" in line for line in log.lines)
    assert (settings.max_concurrency, settings.backoff_seconds) == (3, 0.2)
    assert settings.district_timezone == "America/Chicago"
    assert settings.page_size == 50
    assert report.pages == math.ceil(report.received / 50) and rows > 0


def test_district_timezone_wins_over_the_fallback(clean_env):
    clean_env.setenv("ONEROSTER_TIMEZONE", "America/Chicago")
    clean_env.setenv("ONEROSTER_DISTRICT_TIMEZONE", "America/Denver")
    resource = OneRosterResource.from_environment().process_config_and_initialize()
    assert resource.settings().district_timezone == "America/Denver"


def test_the_sync_and_the_connection_test_start_the_same_demo_district(clean_env, capsys):
    from oneroster_pipeline import connection_test

    env = {"ONEROSTER_DEMO_SCHOOLS": "3", "ONEROSTER_DEMO_STUDENTS": "120", "ONEROSTER_DEMO_SEED": "9"}
    for var, value in env.items():
        clean_env.setenv(var, value)
    resource = OneRosterResource.from_environment().process_config_and_initialize()
    log = Log()
    with resource.open(log) as source:
        schools = [name for batch in source.org_batches() for name, kind in
                   zip(batch.column("name").to_pylist(), batch.column("type").to_pylist()) if kind == "school"]
        students = sum(batch.num_rows for batch in source.student_batches())
    assert connection_test.main([], env) == 0
    out = capsys.readouterr().out
    started = "demo district (3 schools, 120 students, seed 9)"
    assert any(started in line for line in log.lines) and started in out
    assert students == 120 and f"students: {students}" in out.splitlines()
    line = next(line for line in out.splitlines() if line.startswith("schools: "))
    assert line.startswith(f"schools: {len(schools)} (e.g. ")
    assert set(line.split("(e.g. ", 1)[1].rstrip(")").split(", ")) <= set(schools)


def test_a_bad_demo_shape_names_its_variable(clean_env):
    clean_env.setenv("ONEROSTER_DEMO_SCHOOLS", "0")
    resource = OneRosterResource.from_environment().process_config_and_initialize()
    with pytest.raises(ValueError, match="ONEROSTER_DEMO_SCHOOLS: must be at least 1"):
        with resource.open(Log()):
            pass


def test_settings_are_typed_and_only_secrets_are_bound_by_name(clean_env):
    clean_env.setenv("ONEROSTER_PROVIDER", "OneRoster")  # read case-insensitively, as the client reads it
    clean_env.setenv("ONEROSTER_BASE_URL", "https://sis.example/ims/oneroster/v1p2")
    clean_env.setenv("ONEROSTER_TOKEN_URL", "https://sis.example/token")
    clean_env.setenv("ONEROSTER_CLIENT_ID", "district")
    clean_env.setenv("ONEROSTER_CLIENT_SECRET", "s3cret-value")
    clean_env.setenv("ONEROSTER_PAGE_SIZE", "50")
    clean_env.setenv("ONEROSTER_TIMEOUT_SECONDS", "7.5")
    clean_env.setenv("ONEROSTER_DUCKDB_MEMORY_LIMIT", "256MB")
    resources = default_resources()
    oneroster = resources["oneroster"]
    assert (oneroster.page_size, oneroster.timeout_seconds) == (50, 7.5)
    assert isinstance(oneroster.client_secret, dg.EnvVar) and not isinstance(oneroster.client_id, dg.EnvVar)
    settings = oneroster.process_config_and_initialize().settings()
    assert (settings.provider, settings.page_size, settings.timeout_seconds) == ("oneroster", 50, 7.5)
    assert settings.client_secret.reveal() == "s3cret-value" and "s3cret-value" not in repr(settings)
    assert resources["warehouse"].memory_limit == "256MB"
    assert resources["sync_policy"] == SyncPolicy()


@pytest.mark.parametrize("var", ["ONEROSTER_PAGE_SIZE", "ONEROSTER_BACKOFF_SECONDS", "ONEROSTER_MAX_DEACTIVATE_PCT"])
def test_a_value_that_is_not_a_number_fails_at_load_naming_its_variable(clean_env, var):
    clean_env.setenv(var, "lots")
    with pytest.raises(ValueError, match=var):
        default_resources()
