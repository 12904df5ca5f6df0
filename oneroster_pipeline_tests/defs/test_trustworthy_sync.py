"""Trustworthy pulls and reviewable changes (issue 9): completeness verdict, dry-run diff, hold policy with approval
bound to the held diff, blackout dates, sync_runs, and no password in DuckDB."""

from __future__ import annotations

import csv
import io
import threading
import time
import zipfile
from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest

from oneroster_pipeline.defs.resources import OneRosterResource
from oneroster_pipeline.defs.sync.schedules import daily_student_sync_schedule
from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings
from oneroster_pipeline.warehouse.policy import SyncPolicy, parse_blackout_dates

from .sync_harness import CLIENT_ID, CLIENT_SECRET, STUDENT_CONTENT, SyncHarness, check_evaluation, oneroster_for
from .test_automation import _evaluate

SHAPE = DistrictShape(schools=4, students=240, seed=29)
FULL = {"oneroster/sync_mode": "full"}
APPROVE_TAG = "oneroster/approve_held_diff"
ACTIVE = "SELECT count(*) FROM students WHERE deactivated_at IS NULL"


@pytest.fixture
def provider():
    settings = DemoSettings(auth="oauth2", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, page_cap=40)
    with DemoProvider(SHAPE, settings) as running:
        yield running


def _students(harness):
    return harness.rows(f"SELECT {STUDENT_CONTENT}, deactivated_at FROM students ORDER BY student_id")


def _remove_when_paging(provider, sourced_ids):
    """Remove students at the provider once the student pull has fetched its first page (the total then shrinks)."""
    def watch():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(e.path.endswith("/students") for e in provider.request_log):
                for sourced_id in sourced_ids:
                    provider.district.remove_student(sourced_id)
                return
            time.sleep(0.001)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_total_changing_mid_pull_deactivates_nothing_and_fails_the_completeness_check(tmp_path):
    settings = DemoSettings(auth="oauth2", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, page_cap=40,
                            latency_ms=40)  # pages slow enough for the district to change between them
    with DemoProvider(SHAPE, settings) as provider:
        harness = SyncHarness(tmp_path, oneroster_for(provider))
        assert harness.run("full_sync").success
        before = _students(harness)
        provider.clear_request_log()
        gone = provider.district.students_in_category("regular", limit=5)
        watcher = _remove_when_paging(provider, gone)
        result = harness.run("student_sync", tags=FULL)
        watcher.join()
    check = check_evaluation(result, "pull_complete")
    assert check.asset_key == dg.AssetKey("oneroster_users")
    assert not check.passed and "X-Total-Count changed" in check.description
    assert _students(harness) == before  # the five absent students were not deactivated
    assert harness.rows("SELECT students_complete, outcome FROM sync_runs WHERE run_id = ?", [result.run_id]) == [
        (False, "applied")]


def test_a_200_without_the_envelope_fails_the_run_and_changes_nothing(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    before = _students(harness)
    for sourced_id in provider.district.students_in_category("regular", limit=3):
        provider.district.update_student(sourced_id, givenName="Never-Applied")
    provider.faults.fail_next(1, status=200, body="no_envelope")
    result = harness.run("student_sync", tags=FULL, raise_on_error=False)
    assert not result.success
    assert _students(harness) == before


def test_preview_diff_equals_what_the_applying_run_applies(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    district = provider.district
    district.remove_student(district.students_in_category("regular", limit=1)[0])
    renamed = district.students_in_category("regular", limit=3)[1:]
    for sourced_id in renamed:
        district.update_student(sourced_id, givenName="Renamed")
    new_school = district.add_school("Preview Elementary")  # its students are ignored: no building yet
    before = _students(harness)

    preview = harness.run("preview_student_sync", tags=FULL)
    assert _students(harness) == before  # a dry run applies nothing
    metadata = preview.asset_materializations_for_node("student_sync_preview")[0].metadata
    assert metadata["would_update"].value == 2 and metadata["would_deactivate"].value == 1
    assert metadata["would_ignore"].value > 0 and "Renamed" in metadata["diff_preview"].value
    previewed = harness.rows(
        "SELECT sourced_id, change, field, old_value, new_value FROM sync_diffs "
        "WHERE run_id = ? AND change <> 'ignore' ORDER BY ALL", [preview.run_id])
    ignored = harness.rows(
        "SELECT sourced_id, reason FROM sync_diffs WHERE run_id = ? AND change = 'ignore' ORDER BY ALL",
        [preview.run_id])

    applied = harness.run("student_sync", tags=FULL)
    assert harness.rows(
        "SELECT sourced_id, change, field, old_value, new_value FROM student_changes WHERE run_id = ? ORDER BY ALL",
        [applied.run_id]) == previewed
    assert {r[0] for r in previewed if r[1] == "update"} == set(renamed)
    assert ignored and set(ignored) <= set(harness.rows("SELECT sourced_id, reason FROM ignored_students"))
    assert any(new_school in detail for (detail,) in harness.rows(
        "SELECT detail FROM ignored_students WHERE reason = 'school_not_a_building'"))


def test_thirty_percent_drop_holds_deactivations_applies_a_rename_and_approval_is_bound_to_the_diff(
        provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    active = harness.scalar(ACTIVE)
    regular = provider.district.students_in_category("regular")
    dropped, renamed = regular[: int(active * 0.3)], regular[-1]
    for sourced_id in dropped:
        provider.district.remove_student(sourced_id)
    provider.district.update_student(renamed, familyName="Renamed-While-Held")

    first = harness.run("student_sync", tags=FULL)
    guard = check_evaluation(first, "mass_change_guard")
    assert not guard.passed and guard.severity == dg.AssetCheckSeverity.WARN
    assert harness.scalar(ACTIVE) == active  # deactivations held ...
    assert harness.scalar("SELECT family_name FROM students WHERE sourced_id = ?", [renamed]) == "Renamed-While-Held"
    first_hash = guard.metadata["diff_hash"].value
    assert harness.rows("SELECT outcome, held_changes, diff_hash FROM sync_runs WHERE run_id = ?",
                        [first.run_id]) == [("partially_held", len(dropped), first_hash)]

    provider.district.remove_student(regular[len(dropped)])  # the drop grows: the approval no longer fits
    grown = harness.run("student_sync", tags={**FULL, APPROVE_TAG: first_hash})
    grown_guard = check_evaluation(grown, "mass_change_guard")
    assert not grown_guard.passed and grown_guard.metadata["diff_hash"].value != first_hash
    assert harness.scalar(ACTIVE) == active

    approved = harness.run("student_sync", tags={**FULL, APPROVE_TAG: grown_guard.metadata["diff_hash"].value})
    assert check_evaluation(approved, "mass_change_guard").passed
    assert harness.scalar(ACTIVE) == active - len(dropped) - 1
    assert [kind for (kind,) in harness.rows("SELECT kind FROM sync_alerts ORDER BY alerted_at")] == [
        "sync_held", "sync_held"]


def test_an_approval_expires(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider), approval_hours=0.0)
    assert harness.run("full_sync").success
    active = harness.scalar(ACTIVE)
    for sourced_id in provider.district.students_in_category("regular")[: int(active * 0.3)]:
        provider.district.remove_student(sourced_id)
    held = harness.run("student_sync", tags=FULL)
    diff_hash = check_evaluation(held, "mass_change_guard").metadata["diff_hash"].value
    late = harness.run("student_sync", tags={**FULL, APPROVE_TAG: diff_hash})
    assert not check_evaluation(late, "mass_change_guard").passed and harness.scalar(ACTIVE) == active


def test_a_drop_concentrated_in_one_building_is_held(provider, tmp_path):
    # district-wide thresholds loose enough to pass: only the per-building rule can hold this
    harness = SyncHarness(tmp_path, oneroster_for(provider), max_deactivate_pct=50.0, building_max_deactivate_pct=25.0)
    assert harness.run("full_sync").success
    sis, students = max(harness.rows(
        "SELECT building_sis, list(sourced_id ORDER BY sourced_id) FROM students WHERE deactivated_at IS NULL "
        "AND status = 'active' GROUP BY 1"), key=lambda r: len(r[1]))
    for sourced_id in students[: len(students) // 2]:
        provider.district.remove_student(sourced_id)
    result = harness.run("student_sync", tags=FULL)
    guard = check_evaluation(result, "mass_change_guard")
    assert not guard.passed and sis in guard.description and "1 building(s)" in guard.description


def test_updates_touching_most_students_hold_everything(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider), max_update_pct=50.0)
    assert harness.run("full_sync").success
    before = _students(harness)
    for sourced_id in provider.district.student_ids()[:200]:
        provider.district.update_student(sourced_id, familyName="Mass-Renamed")
    result = harness.run("student_sync", tags=FULL, raise_on_error=False)
    assert not result.success
    assert "would be updated" in check_evaluation(result, "mass_change_guard").description
    assert _students(harness) == before
    assert harness.scalar("SELECT count(*) FROM sync_diffs WHERE disposition = 'held' AND change = 'update'") > 150


def test_blackout_dates_skip_the_scheduled_sync_but_not_other_days():
    schedule = daily_student_sync_schedule({"ONEROSTER_TIMEZONE": "America/Chicago"})
    policy = SyncPolicy(blackout_dates="2026-06-15..2026-08-20, 2026-12-24")

    def tick(when: datetime):
        context = dg.build_schedule_context(scheduled_execution_time=when, resources={"sync_policy": policy})
        return schedule.evaluate_tick(context)

    summer = tick(datetime(2026, 7, 4, 10, tzinfo=timezone.utc))
    assert not summer.run_requests and "blackout range 2026-06-15..2026-08-20" in summer.skip_message
    # 2026-12-25 03:00 UTC is still the 24th in Chicago: the district's own calendar decides
    assert not tick(datetime(2026, 12, 25, 3, tzinfo=timezone.utc)).run_requests
    assert tick(datetime(2026, 9, 1, 10, tzinfo=timezone.utc)).run_requests
    with pytest.raises(ValueError, match="ONEROSTER_BLACKOUT_DATES: '2026-13-01' is not a date"):
        parse_blackout_dates("2026-06-15..2026-08-20, 2026-13-01")


def test_sync_runs_rows_match_the_runs(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    first = harness.run("full_sync")
    preview = harness.run("preview_student_sync")
    daily = harness.run("student_sync", tags={"dagster/schedule_name": "daily_student_sync"})
    broken = SyncHarness(tmp_path, oneroster_for(provider, client_secret="wrong-secret-123"))
    failed = broken.run("student_sync", raise_on_error=False)
    _evaluate(broken, "sync_failure_alert", failed, failure=True)

    rows = {r[0]: r[1:] for r in harness.rows(
        "SELECT run_id, job_name, trigger, outcome, orgs_complete, students_complete, pull_mode, students_created "
        "FROM sync_runs")}
    students = harness.scalar("SELECT count(*) FROM students")
    assert rows[first.run_id] == ("full_sync", "manual", "applied", True, True, "full", students)
    assert rows[preview.run_id] == ("preview_student_sync", "manual", "preview", True, True, "delta", 0)
    assert rows[daily.run_id] == ("student_sync", "schedule", "applied", True, True, "delta", 0)
    assert rows[failed.run_id][:3] == ("student_sync", "manual", "failed")
    assert len(rows) == 4
    message = harness.scalar("SELECT message FROM sync_runs WHERE run_id = ?", [failed.run_id])
    assert "401" in message and "wrong-secret-123" not in message
    assert all(d is not None and d >= 0 for (d,) in harness.rows("SELECT duration_seconds FROM sync_runs"))


def test_no_password_reaches_duckdb(tmp_path):
    district = District(DistrictShape(schools=3, students=120, seed=5))
    plain = export_csv(district, tmp_path / "plain.zip", "1.1")
    with_passwords = tmp_path / "with-passwords.zip"
    passwords = []
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(with_passwords, "w") as target:
        for name in source.namelist():
            data = source.read(name).decode()
            if name == "users.csv":
                rows = list(csv.DictReader(io.StringIO(data)))
                for i, row in enumerate(rows):
                    row["password"] = f"Pw-{i:05d}-hunter2"
                    passwords.append(row["password"])
                out = io.StringIO()
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
                data = out.getvalue()
            target.writestr(name, data)
    harness = SyncHarness(tmp_path, OneRosterResource(provider="csv", csv_path=str(with_passwords)))
    assert harness.run("full_sync").success
    assert harness.scalar("SELECT count(*) FROM students") > 100
    with duckdb.connect(harness.database, read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        for table in tables:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall()]
            assert "password" not in columns
            hits = con.execute(
                f"SELECT count(*) FROM {table} WHERE concat_ws('|', {', '.join(f'{c}::VARCHAR' for c in columns)}) "
                "LIKE '%hunter2%'").fetchall()[0][0]
            assert hits == 0, f"a password value reached {table}"
