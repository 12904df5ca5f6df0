"""Building sync, student sync and their checks, run through Dagster against the demo provider over HTTP."""

from __future__ import annotations

import pytest

from oneroster_pipeline.demo.district import DistrictShape

from .sync_harness import STUDENT_CONTENT, SyncHarness, check_evaluation, demo_provider, oneroster_for

SHAPE = DistrictShape(schools=4, students=240, seed=11)


@pytest.fixture
def provider():
    with demo_provider(SHAPE) as running:
        yield running


def test_full_sync_builds_buildings_students_and_ignored(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    result = harness.run("full_sync")
    assert result.success

    counts = provider.district.counts()
    school_ids = set(provider.district.school_ids())
    buildings = harness.rows("SELECT building_sis, name, status FROM buildings")
    active_schools = [o for o in provider.district.orgs() if o["type"] == "school" and o["status"] == "active"]
    assert {b[0] for b in buildings} == {o["sourcedId"] for o in active_schools}
    assert {b[0] for b in buildings} <= school_ids
    assert all(b[2] == "active" for b in buildings)

    fetched = harness.scalar("SELECT count(*) FROM oneroster_users")
    imported = harness.scalar("SELECT count(*) FROM students")
    ignored = dict(harness.rows("SELECT reason, count(*) FROM ignored_students GROUP BY 1"))
    assert fetched == counts["students"]
    assert imported + sum(ignored.values()) == fetched  # every student is imported or ignored with a reason
    assert ignored["no_school_org"] == counts["district_only_students"]
    assert ignored["school_tobedeleted"] == counts["closed_school_students"]  # their only school is tobedeleted
    assert "school_not_a_building" not in ignored

    # students in two schools: one students row, two student_buildings rows, one of them primary
    two = harness.rows("""
        SELECT sourced_id, count(*), count(*) FILTER (WHERE is_primary) FROM student_buildings
        GROUP BY 1 HAVING count(*) > 1""")
    assert len(two) == counts["two_school_students"] > 0
    assert all(row[2] == 1 for row in two)
    assert harness.scalar("SELECT count(*) FROM students WHERE status = 'tobedeleted'") > 0
    assert harness.scalar("SELECT count(*) FROM students WHERE enabled_user = false") > 0

    for name in ("building_sis_matches_schools", "students_ids_unique", "students_buildings_exist",
                 "fetched_count_matches_provider_total"):
        assert check_evaluation(result, name).passed, name


def test_primary_building_on_1_1_is_the_lowest_building_sourced_id(provider, tmp_path):
    """1.1 names no primary org: the building with the lowest sourcedId (issue 25), never the provider's order."""
    harness = SyncHarness(tmp_path, oneroster_for(provider, version="1.1"))
    harness.run("full_sync")
    buildings = {row[0] for row in harness.rows("SELECT building_sis FROM buildings")}
    for sourced_id, building_sis, orgs in harness.rows("""
            SELECT s.sourced_id, s.building_sis, u.org_sourced_ids FROM students s
            JOIN oneroster_users u USING (sourced_id)"""):
        assert building_sis == min(org for org in orgs if org in buildings), sourced_id


def test_one_one_and_one_two_give_identical_students(provider, tmp_path):
    tables = {}
    for version in ("1.1", "1.2"):
        harness = SyncHarness(tmp_path / version, oneroster_for(provider, version=version))
        assert harness.run("full_sync").success
        tables[version] = (
            harness.rows(f"SELECT {STUDENT_CONTENT} FROM students ORDER BY sourced_id"),
            harness.rows("SELECT sourced_id, reason FROM ignored_students ORDER BY sourced_id"),
            harness.rows("SELECT sourced_id, building_id, is_primary FROM student_buildings ORDER BY ALL"),
        )
    assert tables["1.1"][0] and tables["1.1"] == tables["1.2"]


def test_school_added_after_building_sync_is_reported_and_its_students_ignored(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    new_school = provider.district.add_school("Riverside Academy")

    result = harness.run("student_sync")
    assert result.success  # a mismatch is a check result, not a crash
    evaluation = check_evaluation(result, "building_sis_matches_schools")
    assert not evaluation.passed
    assert evaluation.metadata["unmatched_school_sourced_ids"].value == [new_school]
    assert "Riverside Academy" in evaluation.metadata["schools_without_building_list"].value
    ignored = harness.rows(
        "SELECT reason, detail FROM ignored_students WHERE list_contains(org_sourced_ids, ?)", [new_school])
    assert len(ignored) == 3
    assert all(reason == "school_not_a_building" and new_school in detail for reason, detail in ignored)
    assert harness.scalar("SELECT count(*) FROM buildings WHERE building_sis = ?", [new_school]) == 0

    # running building sync by hand creates the building; the next student sync imports those students
    assert harness.run("building_sync").success
    assert harness.run("student_sync").success
    assert harness.scalar(
        "SELECT count(*) FROM students WHERE building_sis = ?", [new_school]) == 3


def test_pre_existing_buildings_csv_matched_by_sis_and_wrong_sis_named(provider, tmp_path):
    schools = [o for o in provider.district.orgs() if o["type"] == "school" and o["status"] == "active"]
    csv = tmp_path / "buildings.csv"
    lines = ["name,building_sis", f"{schools[0]['name']} (old name),{schools[0]['sourcedId']}",
             "Lincoln Elementary,LINCOLN-TYPO-42"]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    harness = SyncHarness(tmp_path, oneroster_for(provider), buildings_csv=str(csv))

    result = harness.run("building_sync")
    assert result.success
    matched = harness.rows(
        "SELECT building_id, name, origin FROM buildings WHERE building_sis = ?", [schools[0]["sourcedId"]])
    assert matched == [(1, schools[0]["name"], "buildings_csv")]  # matched by building_sis, renamed, same id
    evaluation = check_evaluation(result, "building_sis_matches_schools")
    assert not evaluation.passed
    assert evaluation.metadata["unmatched_building_sis"].value == ["LINCOLN-TYPO-42"]
    assert "Lincoln Elementary" in evaluation.metadata["buildings_without_school_list"].value


def test_failed_student_sync_leaves_previous_tables_intact(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    before = harness.rows(f"SELECT {STUDENT_CONTENT}, updated_at FROM students ORDER BY student_id")
    users_before = harness.rows("SELECT sourced_id, fetched_at FROM oneroster_users ORDER BY 1")

    provider.district.update_student(provider.district.student_ids(1)[0], givenName="Changed")
    provider.faults.fail_next(50, status=502, body="html")
    result = harness.run("student_sync", raise_on_error=False)
    assert not result.success
    assert harness.rows(f"SELECT {STUDENT_CONTENT}, updated_at FROM students ORDER BY student_id") == before
    assert harness.rows("SELECT sourced_id, fetched_at FROM oneroster_users ORDER BY 1") == users_before


def test_student_ids_are_stable_and_absent_students_stay_inactive(provider, tmp_path):
    harness = SyncHarness(tmp_path, oneroster_for(provider))
    assert harness.run("full_sync").success
    gone = provider.district.students_in_category("regular", limit=1)[0]
    ids_before = dict(harness.rows("SELECT sourced_id, student_id FROM students"))

    provider.district.remove_student(gone)  # a hard delete is visible only to a full pull
    assert harness.run("student_sync", tags={"oneroster/sync_mode": "full"}).success
    status, deactivated = harness.rows(
        "SELECT status, deactivated_at FROM students WHERE sourced_id = ?", [gone])[0]
    assert status == "inactive" and deactivated is not None

    provider.district.restore_student(gone)
    assert harness.run("student_sync").success
    assert dict(harness.rows("SELECT sourced_id, student_id FROM students")) == ids_before
    assert harness.rows("SELECT status, deactivated_at FROM students WHERE sourced_id = ?", [gone]) == [
        ("active", None)]
