"""The daily student sync with many districts: one schedule per cron and timezone, a run per district whose sync is on
and whose blackout dates do not hold its day, each run tagged with its district and provider host."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from oneroster_pipeline.defs.districts import DISTRICT_TAG, PROVIDER_HOST_TAG
from oneroster_pipeline.defs.sync.schedules import district_schedules
from oneroster_pipeline.districts import load_districts

DISTRICTS = """
districts:
  - id: north
    base_url: https://ic.example.org:8443/campus/api/ims/oneroster/v1p1
    provider: infinite_campus
    token_url: https://ic.example.org:8443/campus/oauth2/token?appName=north
    client_id: north-client
    client_secret_env: NORTH_IC_SECRET
    timezone: America/Chicago
    student_sync_enabled: true
  - id: south
    timezone: America/Chicago
    student_sync_enabled: true
    blackout_dates: 2026-12-20..2027-01-04
  - id: east
    timezone: America/Chicago
    student_sync_enabled: false
  - id: west
    timezone: America/Los_Angeles
    student_sync_cron: "30 4 * * *"
    student_sync_enabled: true
"""


def schedules(tmp_path):
    path = tmp_path / "districts.yaml"
    path.write_text(DISTRICTS)
    return {s.name: s for s in district_schedules(env={}, districts=load_districts(path))}


def tick(schedule: dg.ScheduleDefinition, local: datetime) -> list[dg.RunRequest] | dg.SkipReason:
    """What the schedule's function returns for a tick at `local` (invoked directly: the run requests name a
    partition of a job this test process does not partition)."""
    return schedule(dg.build_schedule_context(scheduled_execution_time=local))


def test_one_schedule_per_cron_and_timezone_in_the_districts_own_time(tmp_path):
    by_name = schedules(tmp_path)
    assert sorted((s.cron_schedule, s.execution_timezone) for s in by_name.values()) == [
        ("0 5 * * *", "America/Chicago"), ("30 4 * * *", "America/Los_Angeles")]
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in by_name.values())


def test_a_tick_requests_a_run_per_enabled_district_outside_its_blackout(tmp_path):
    chicago = next(s for s in schedules(tmp_path).values() if s.execution_timezone == "America/Chicago")
    # before south's winter break: north and south; east's sync is off
    requests = tick(chicago, datetime(2026, 12, 1, 5, 0, tzinfo=ZoneInfo("America/Chicago")))
    assert [(r.partition_key, r.run_key, r.tags[DISTRICT_TAG]) for r in requests] == [
        ("north", "north", "north"), ("south", "south", "south")]
    assert requests[0].tags[PROVIDER_HOST_TAG] == "ic.example.org:8443"
    assert requests[1].tags[PROVIDER_HOST_TAG] == "demo"
    # in south's blackout, in Chicago's time: north alone
    requests = tick(chicago, datetime(2026, 12, 21, 5, 0, tzinfo=ZoneInfo("America/Chicago")))
    assert [r.partition_key for r in requests] == ["north"]
    # 2026-12-20 05:00 UTC is still the 19th in Chicago: south runs
    requests = tick(chicago, datetime(2026, 12, 20, 5, 0, tzinfo=ZoneInfo("UTC")))
    assert [r.partition_key for r in requests] == ["north", "south"]


def test_a_tick_with_every_district_skipped_says_why(tmp_path):
    path = tmp_path / "off.yaml"
    path.write_text("districts:\n  - id: east\n    student_sync_enabled: false\n")
    (schedule,) = district_schedules(env={}, districts=load_districts(path))
    assert schedule.name == "daily_student_sync"  # one group keeps the single-district name
    result = tick(schedule, datetime(2026, 12, 1, 5, 0, tzinfo=ZoneInfo("UTC")))
    assert isinstance(result, dg.SkipReason)
    assert "east: ONEROSTER_STUDENT_SYNC_ENABLED is off" in result.skip_message
