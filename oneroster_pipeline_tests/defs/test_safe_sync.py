"""The daily sync is safe: deactivate-not-delete, change history, delta pulls, mass-change guard, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

from .sync_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    STUDENT_CONTENT,
    SyncHarness,
    check_evaluation,
    demo_provider,
    oneroster_for,
)

SHAPE = DistrictShape(schools=4, students=240, seed=23)
FULL = {"oneroster/sync_mode": "full"}


@pytest.fixture
def provider():
    with demo_provider(SHAPE) as running:
        yield running


def _student_requests(provider):
    return [e for e in provider.request_log if e.path.endswith("/students")]


def test_removed_student_becomes_inactive_keeps_id_and_returns(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    gone = provider.district.students_in_category("regular", limit=1)[0]
    ids_before = dict(harness.rows("SELECT sourced_id, student_id FROM students"))

    provider.district.remove_student(gone)
    assert harness.run("student_sync", tags=FULL).success
    assert harness.rows("SELECT status, deactivated_at IS NOT NULL FROM students WHERE sourced_id = ?",
                        [gone]) == [("inactive", True)]
    assert harness.rows("SELECT change FROM student_changes WHERE sourced_id = ? AND change <> 'insert'",
                        [gone]) == [("deactivate",)]

    provider.district.restore_student(gone)
    assert harness.run("student_sync", tags=FULL).success
    assert dict(harness.rows("SELECT sourced_id, student_id FROM students")) == ids_before
    assert harness.rows("SELECT status, deactivated_at FROM students WHERE sourced_id = ?", [gone]) == [
        ("active", None)]
    assert harness.rows(
        "SELECT change FROM student_changes WHERE sourced_id = ? ORDER BY changed_at, change", [gone]
    ) == [("insert",), ("deactivate",), ("reactivate",)]


def test_field_edits_are_recorded_old_to_new(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    edited = provider.district.students_in_category("regular", limit=1)[0]
    old_name = harness.scalar("SELECT given_name FROM students WHERE sourced_id = ?", [edited])
    provider.district.update_student(edited, givenName="Zoë-Renée", email="zoe.renee@example.org")

    result = harness.run("student_sync")
    assert result.success
    changes = harness.rows("""
        SELECT field, old_value, new_value, run_id FROM student_changes
        WHERE sourced_id = ? AND change = 'update' ORDER BY field""", [edited])
    assert [c[:3] for c in changes] == [
        ("email", changes[0][1], "zoe.renee@example.org"), ("given_name", old_name, "Zoë-Renée")]
    assert {c[3] for c in changes} == {result.run_id}
    students_meta = result.asset_materializations_for_node("student_sync_assets")
    updated = [m.metadata["updated"].value for m in students_meta if m.asset_key.to_user_string() == "students"]
    assert updated == [1]


def test_delta_fetches_only_changed_records_and_matches_a_full_sync(provider, tmp_path):
    harness = SyncHarness(tmp_path / "delta", oneroster_for(provider))
    assert harness.run("full_sync").success
    changed = provider.district.students_in_category("regular", limit=2)
    provider.district.update_student(changed[0], familyName="O'Connor")
    provider.district.update_student(changed[1], enabledUser=False)
    provider.clear_request_log()

    assert harness.run("student_sync").success
    requests = _student_requests(provider)
    assert requests and all("dateLastModified>" in e.query.get("filter", "") for e in requests)
    assert harness.rows(
        "SELECT mode, received FROM pull_reports WHERE collection = 'students' ORDER BY fetched_at DESC LIMIT 1"
    ) == [("delta", 2)]

    fresh = SyncHarness(tmp_path / "full", oneroster_for(provider))
    assert fresh.run("full_sync").success
    query = f"SELECT {STUDENT_CONTENT} FROM students ORDER BY sourced_id"
    assert harness.rows(query) == fresh.rows(query)
    query = "SELECT sourced_id, reason FROM ignored_students ORDER BY sourced_id"
    assert harness.rows(query) == fresh.rows(query)


def test_provider_rejecting_the_delta_filter_falls_back_to_full(tmp_path):
    settings = DemoSettings(auth="oauth2", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            quirks={"reject_date_filter"})
    with DemoProvider(SHAPE, settings) as provider:
        harness = SyncHarness(tmp_path, oneroster_for(provider))
        assert harness.run("full_sync").success
        provider.clear_request_log()
        assert harness.run("student_sync").success
        requests = _student_requests(provider)
        filtered = [e for e in requests if "filter" in e.query]
        assert filtered and all("dateLastModified>" in e.query["filter"] and e.status == 400 for e in filtered)
        full = requests[len(filtered):]  # then the whole collection, unfiltered
        assert full and all("filter" not in e.query and e.status == 200 for e in full)
        assert harness.scalar(
            "SELECT mode FROM pull_reports WHERE collection = 'students' ORDER BY fetched_at DESC LIMIT 1") == "full"


def test_forty_percent_drop_is_held_with_alert_then_applied_after_approval(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    tables = "SELECT * FROM students ORDER BY student_id"
    before = harness.rows(tables)
    active = harness.scalar("SELECT count(*) FROM students WHERE deactivated_at IS NULL")
    dropped = int(active * 0.4)
    for sourced_id in provider.district.students_in_category("regular")[:dropped]:
        provider.district.remove_student(sourced_id)

    held = harness.run("student_sync", tags=FULL)
    guard = check_evaluation(held, "mass_change_guard")
    assert not guard.passed and "would be deactivated" in guard.description
    assert harness.rows(tables) == before  # the deactivations were the only change, and they are held
    kind, message = harness.rows("SELECT kind, message FROM sync_alerts")[0]
    assert kind == "sync_held" and f"Held {dropped} deactivation(s)" in message
    diff_hash = guard.metadata["diff_hash"].value
    assert diff_hash in message and harness.scalar(
        "SELECT count(*) FROM sync_diffs WHERE disposition = 'held' AND change = 'deactivate'") == dropped

    approved = harness.run("student_sync", tags={**FULL, "oneroster/approve_held_diff": diff_hash})
    assert check_evaluation(approved, "mass_change_guard").passed
    assert harness.scalar("SELECT count(*) FROM students WHERE status = 'inactive'") == dropped


def test_zero_students_from_provider_is_held(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    for sourced_id in provider.district.student_ids():
        provider.district.remove_student(sourced_id)
    result = harness.run("student_sync", tags=FULL, raise_on_error=False)
    assert not result.success
    assert "zero students" in check_evaluation(result, "mass_change_guard").description
    assert harness.scalar("SELECT count(*) FROM students WHERE deactivated_at IS NULL") > 0


def _cli_env(provider, database: Path) -> dict:
    return {
        **os.environ, "ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": provider.base_url("1.2"),
        "ONEROSTER_AUTH": "oauth2", "ONEROSTER_TOKEN_URL": provider.token_url,
        "ONEROSTER_CLIENT_ID": CLIENT_ID, "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET,
        "ONEROSTER_PAGE_SIZE": "200", "ONEROSTER_DUCKDB_PATH": str(database),
        "DAGSTER_HOME": str(database.parent),
    }


def _run_cli(env: dict, job: str, kill_after_requests: int | None = None, provider=None,
             extra_delay: float = 0.0) -> int:
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute",
               "-m", "oneroster_pipeline.definitions", "-j", job, "--tags", '{"oneroster/sync_mode": "full"}']
    # its own process group, killed whole: the jobs run in process (this process holds the DuckDB lock), and
    # whatever child Dagster starts dies with it, as in a crash of the machine
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    if kill_after_requests is None:
        return process.wait(timeout=300)
    deadline = time.monotonic() + 120
    while len(_student_requests(provider)) < kill_after_requests and process.poll() is None:
        assert time.monotonic() < deadline, "the sync never reached the page to kill it at"
        time.sleep(0.005)
    time.sleep(extra_delay)
    os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=30)


def test_sigkill_mid_sync_leaves_tables_consistent_and_next_run_succeeds(tmp_path):
    shape = DistrictShape(schools=6, students=6000, seed=31)
    with demo_provider(shape) as provider:
        database = tmp_path / "oneroster.duckdb"
        (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = _cli_env(provider, database)
        assert _run_cli(env, "full_sync") == 0
        with duckdb.connect(str(database), read_only=True) as con:
            before = con.execute(f"SELECT {STUDENT_CONTENT} FROM students ORDER BY student_id").fetchall()
        pages = len(_student_requests(provider))
        for sourced_id in provider.district.students_in_category("regular", limit=20):
            provider.district.update_student(sourced_id, givenName="Killed-Mid-Sync")

        # killed mid-pull (page 2), then just after the last page (while staging and applying)
        kills = 0
        for kill_at, delay in ((2, 0.0), (pages, 0.0), (pages, 0.3), (pages, 0.8)):
            provider.clear_request_log()
            code = _run_cli(env, "student_sync", kill_at, provider, delay)
            # the run may finish within a delay after the last page (a fast machine): then it applied in full
            assert code == -signal.SIGKILL or (delay > 0 and code == 0), code
            kills += code == -signal.SIGKILL
            with duckdb.connect(str(database), read_only=True) as con:
                now = con.execute(f"SELECT {STUDENT_CONTENT} FROM students ORDER BY student_id").fetchall()
                renamed = con.execute(
                    "SELECT count(*) FROM students WHERE given_name = 'Killed-Mid-Sync'").fetchall()[0][0]
            assert now == before or renamed == 20  # all of the previous state, or all of the new one
        assert kills >= 2  # mid-pull and right after the last page, at least

        provider.clear_request_log()
        assert _run_cli(env, "student_sync") == 0
        with duckdb.connect(str(database), read_only=True) as con:
            assert con.execute(
                "SELECT count(*) FROM students WHERE given_name = 'Killed-Mid-Sync'").fetchall()[0][0] == 20
            assert con.execute("SELECT count(*) FROM students").fetchall()[0][0] == len(before)
