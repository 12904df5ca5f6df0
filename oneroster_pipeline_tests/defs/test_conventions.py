"""The Dagster conventions a Dagster user looks for, on the built code location: every asset that is a DuckDB table
declares its columns (`dagster/column_schema`) exactly as DuckDB creates the table, in one district and with a
districts file; `students` and `buildings` have freshness policies that match how they are synced (the daily
schedule's cron and timezone; building sync by hand)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from oneroster_pipeline.config import Config
from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.sync.freshness import shifted_cron
from oneroster_pipeline.defs.tables import COLUMN_SCHEMA
from oneroster_pipeline.warehouse import store

# the assets that are a DuckDB table of the same name (the others write into tables of other names or none)
TABLE_ASSETS = {"oneroster_orgs", "oneroster_users", "buildings", "students", "student_buildings",
                "ignored_students", "id_crosswalk", "provider_connections"}
DISTRICTS = """
districts:
  - id: north
    timezone: America/Chicago
  - id: south
"""
SAME_TIME = """
districts:
  - id: north
    student_sync_cron: "15 6 * * 1-5"
  - id: south
    student_sync_cron: "15 6 * * 1-5"
"""
TWO_HOURS = timedelta(hours=2)


def one_district(**env: str) -> Config:
    return Config.of(env)


def two_districts(folder: Path, districts: str = DISTRICTS, **env: str) -> Config:
    (folder / "districts.yaml").write_text(districts)
    return Config.of({"ONEROSTER_DISTRICTS_FILE": str(folder / "districts.yaml"), **env})


def built(config: Config) -> tuple[dict[str, dg.AssetSpec], list[dg.ScheduleDefinition]]:
    defs = build_definitions(config=config)
    return ({spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()},
            list(defs.get_repository_def().schedule_defs))


@pytest.fixture(params=["one district", "districts file"])
def specs(request, tmp_path) -> dict[str, dg.AssetSpec]:
    config = one_district() if request.param == "one district" else two_districts(tmp_path)
    defs = build_definitions(config=config)
    return {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}


def created_columns(tmp_path: Path) -> dict[str, list[tuple[str, str, bool]]]:
    """Every table's columns (name, type, nullable) as a warehouse file opened by the sync has them."""
    with store.connect(tmp_path / "fresh.duckdb") as con:
        rows = con.execute("SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM "
                           "information_schema.columns WHERE table_schema = 'main' "
                           "ORDER BY table_name, ordinal_position").fetchall()
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    for table, *column in rows:
        tables.setdefault(table, []).append(tuple(column))
    return tables


def test_every_table_asset_declares_the_columns_duckdb_creates(specs, tmp_path):
    created = created_columns(tmp_path)
    assert TABLE_ASSETS <= set(created)  # each is a table of the warehouse
    declared = {name: spec.metadata[COLUMN_SCHEMA] for name, spec in specs.items() if COLUMN_SCHEMA in spec.metadata}
    assert set(declared) == TABLE_ASSETS == {name for name in specs if name in created}
    for name, schema in declared.items():
        assert isinstance(schema, dg.TableSchema)
        assert [(c.name, c.type, c.constraints.nullable) for c in schema.columns] == created[name], name


@pytest.mark.parametrize(("env", "deadline", "timezone"), [
    ({}, "0 7 * * *", "UTC"),  # the defaults: 0 5 * * * in UTC
    ({"ONEROSTER_STUDENT_SYNC_CRON": "30 4 * * 1-5", "ONEROSTER_TIMEZONE": "America/Chicago"}, "30 6 * * 1-5",
     "America/Chicago"),
])
def test_students_are_due_two_hours_after_each_scheduled_sync(env, deadline, timezone):
    specs, (schedule,) = built(one_district(**env))
    assert specs["students"].freshness_policy == dg.FreshnessPolicy.cron(
        deadline_cron=deadline, lower_bound_delta=TWO_HOURS, timezone=timezone)
    # the schedule's own time: a sync that lands between its tick and the deadline keeps students fresh
    assert shifted_cron(schedule.cron_schedule, TWO_HOURS) == deadline and schedule.execution_timezone == timezone
    assert "fresh" in specs["students"].description.lower()
    assert {name for name, spec in specs.items() if spec.freshness_policy} == {"students", "buildings"}


def test_buildings_warn_after_a_month_without_building_sync():
    specs, _ = built(one_district())
    assert specs["buildings"].freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(days=90), warn_window=timedelta(days=30))
    assert "building_sync" in specs["buildings"].description


def test_districts_that_share_a_schedule_share_its_deadline(tmp_path):
    specs, schedules = built(two_districts(tmp_path, SAME_TIME, ONEROSTER_TIMEZONE="America/Denver"))
    assert [(s.cron_schedule, s.execution_timezone) for s in schedules] == [("15 6 * * 1-5", "America/Denver")]
    assert specs["students"].freshness_policy == dg.FreshnessPolicy.cron(
        deadline_cron="15 8 * * 1-5", lower_bound_delta=TWO_HOURS, timezone="America/Denver")


def test_districts_on_several_schedules_expect_a_sync_a_day(tmp_path):
    specs, schedules = built(two_districts(tmp_path))
    assert len(schedules) == 2  # north in America/Chicago, south in UTC
    assert specs["students"].freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(days=1) + TWO_HOURS)
    assert "0 5 * * * America/Chicago" in specs["students"].description


@pytest.mark.parametrize(("cron", "deadline"), [
    ("0 5 * * *", "0 7 * * *"), ("45 22 * * *", "45 0 * * *"), ("30 4 * * 1-5", "30 6 * * 1-5"),
    ("30 23 * * 1-5", None), ("0 5,17 * * *", None), ("*/30 * * * *", None), ("0 5 * *", None),
])
def test_a_deadline_is_the_schedule_moved_by_the_tolerance_when_that_is_a_cron(cron, deadline):
    assert shifted_cron(cron, TWO_HOURS) == deadline
