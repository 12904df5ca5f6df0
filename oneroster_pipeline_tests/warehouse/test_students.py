"""Student sync on an in-memory store: insert, update per field, deactivate by absence only on a complete full pull,
reactivate under the same id, the primary building, and every ignored reason."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneroster_pipeline.warehouse.pulls import apply_org_pull

from .staging import district_org, later, memory_store, org, rows, stage, student, sync_orgs, sync_students


@pytest.fixture
def con(tmp_path):
    with memory_store() as con:
        sync_orgs(con, tmp_path, [org("s1", "North"), org("s2", "South"), org("closed", status="tobedeleted")])
        yield con


def students(con) -> dict[str, tuple]:
    return {sid: rest for sid, *rest in rows(
        con, "SELECT sourced_id, student_id, building_sis, status, deactivated_at IS NULL FROM students")}


def changes(con) -> list[tuple]:
    return rows(con, "SELECT sourced_id, change, field, old_value, new_value FROM student_changes "
                     "ORDER BY changed_at, sourced_id, change, field")


def test_new_students_are_inserted_with_stable_ids_in_their_building(con, tmp_path):
    outcome = sync_students(con, tmp_path, [student("b", "s2"), student("a", "s1")])
    assert outcome.outcome == "applied" and outcome.plan.created == 2 and outcome.result.imported == 2
    assert students(con) == {"a": [1, "s1", "active", True], "b": [2, "s2", "active", True]}
    assert [c[:2] for c in changes(con)] == [("a", "insert"), ("b", "insert")]
    # a later sync with a new student keeps the existing ids and numbers the newcomer after them
    sync_students(con, tmp_path, [student("b", "s2"), student("a", "s1"), student("0", "s1")], now=later(1))
    assert {sid: s[0] for sid, s in students(con).items()} == {"a": 1, "b": 2, "0": 3}


def test_an_update_records_one_change_per_field(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1")])
    outcome = sync_students(con, tmp_path, [student("a", "s2", given_name="Zoë", grades=["06"]), student("b", "s1")],
                            now=later(1))
    assert (outcome.plan.updated, outcome.plan.created, outcome.plan.deactivated) == (1, 0, 0)
    assert changes(con)[2:] == [
        ("a", "update", "building_id", "1", "2"), ("a", "update", "building_sis", "s1", "s2"),
        ("a", "update", "given_name", "Given a", "Zoë"), ("a", "update", "grade", "05", "06")]
    assert rows(con, "SELECT given_name, grade, building_sis FROM students WHERE sourced_id = 'a'") == [
        ("Zoë", "06", "s2")]
    assert rows(con, "SELECT updated_at FROM students WHERE sourced_id = 'b'") == [(later(0),)]


def test_an_unchanged_student_is_not_updated(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1")])
    outcome = sync_students(con, tmp_path, [student("a", "s1")], now=later(1))
    assert (outcome.plan.updated, outcome.plan.created) == (0, 0) and len(changes(con)) == 1


def test_absence_deactivates_only_after_a_complete_full_pull(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1")])
    for kw in ({"mode": "delta"}, {"complete": False}, {"reported_total": 9}):
        outcome = sync_students(con, tmp_path, [student("a", "s1")], now=later(1), **kw)
        assert outcome.plan.deactivated == 0, kw
        assert students(con)["b"] == [2, "s1", "active", True], kw
    outcome = sync_students(con, tmp_path, [student("a", "s1")], now=later(2))
    assert outcome.plan.deactivated == 1
    assert students(con)["b"] == [2, "s1", "inactive", False]  # kept, never deleted
    assert changes(con)[-1] == ("b", "deactivate", "status", "active", "inactive")


def test_a_returning_student_is_reactivated_under_the_same_id(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1")])
    sync_students(con, tmp_path, [student("a", "s1")], now=later(1))
    outcome = sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1")], now=later(2))
    assert (outcome.plan.reactivated, outcome.plan.created) == (1, 0)
    assert students(con)["b"] == [2, "s1", "active", True]
    assert changes(con)[-1] == ("b", "reactivate", "status", "inactive", "active")


def test_a_tobedeleted_student_is_deactivated_in_place(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1")])
    outcome = sync_students(con, tmp_path, [student("a", "s1", status="tobedeleted")], now=later(1), mode="delta")
    assert outcome.plan.deactivated == 1 and students(con)["a"] == [1, "s1", "tobedeleted", False]


def test_the_primary_building_is_the_primary_org_else_the_lowest_sourced_id_never_the_order(con, tmp_path):
    """Issue 25: the primary org (1.2 primaryOrg or roleType primary) if it is a building, else the building with
    the lowest sourcedId, whatever order the provider lists the orgs in."""
    sync_students(con, tmp_path, [
        student("lowest", "district-1", "s2", "s1"),  # 1.1: no primary org, the lowest building sourcedId
        student("primary", "s1", "s2", primary="s2"),  # the primary org wins over the lowest id
        student("not-a-building", "s2", "s1", primary="district-1"),  # a primary org with no building: the lowest
    ])
    assert {sid: s[1] for sid, s in students(con).items()} == {"lowest": "s1", "primary": "s2", "not-a-building": "s1"}
    links = rows(con, "SELECT sourced_id, building_sis, is_primary, provider_position FROM student_buildings "
                      "ORDER BY sourced_id, provider_position")
    assert links == [("lowest", "s2", False, 2), ("lowest", "s1", True, 3),
                     ("not-a-building", "s2", False, 1), ("not-a-building", "s1", True, 2),
                     ("primary", "s1", False, 1), ("primary", "s2", True, 2)]
    # the provider listing the orgs in another order changes nothing
    sync_students(con, tmp_path, [student("lowest", "s1", "s2", "district-1"),
                                  student("primary", "s2", "s1", primary="s2"),
                                  student("not-a-building", "s1", "s2", primary="district-1")], now=later(1))
    assert {sid: s[1] for sid, s in students(con).items()} == {"lowest": "s1", "primary": "s2", "not-a-building": "s1"}
    assert [c for c in changes(con) if c[1] != "insert"] == []


def test_a_student_moves_building_once_when_its_primary_school_changes_never_when_the_order_does(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1", "s2", primary="s1"), student("b", "s1", "s2")])
    sync_students(con, tmp_path, [student("a", "s2", "s1", primary="s2"), student("b", "s2", "s1")], now=later(1))
    sync_students(con, tmp_path, [student("a", "s1", "s2", primary="s2"), student("b", "s1", "s2")], now=later(2))
    assert (students(con)["a"][1], students(con)["b"][1]) == ("s2", "s1")
    assert [c for c in changes(con) if c[1] != "insert"] == [("a", "update", "building_id", "1", "2"),
                                                             ("a", "update", "building_sis", "s1", "s2")]


def test_students_without_a_building_are_ignored_with_a_reason(con, tmp_path):
    # a new school is in the org pull, but building sync has not run since: it has no building yet
    orgs = [district_org(), org("s1"), org("s2"), org("closed", status="tobedeleted"), org("new", "New School")]
    apply_org_pull(con, stage(tmp_path, "orgs", orgs), "run", later(0.5))
    outcome = sync_students(con, tmp_path, [
        student("a", "s1"), student("newcomer", "new"), student("leaver", "closed"),
        student("office", "district-1"), student("lost", "gone-org")], now=later(1))
    assert outcome.result.ignored_by_reason == {"school_not_a_building": 1, "school_tobedeleted": 1,
                                                "no_school_org": 2}
    ignored = {sid: (reason, detail) for sid, reason, detail in rows(
        con, "SELECT sourced_id, reason, detail FROM ignored_students")}
    assert ignored["newcomer"][0] == "school_not_a_building" and "new (New School, active)" in ignored["newcomer"][1]
    assert ignored["leaver"][0] == "school_tobedeleted" and "closed (" in ignored["leaver"][1]
    assert ignored["office"] == ("no_school_org", "orgs are not schools: district-1 (district)")
    assert ignored["lost"] == ("no_school_org", "orgs are not schools: gone-org (not in the org pull)")
    assert set(students(con)) == {"a"}


def test_an_ignored_student_with_a_school_elsewhere_is_imported(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "closed", "s1")])
    assert students(con)["a"][1] == "s1" and rows(con, "SELECT count(*) FROM ignored_students") == [(0,)]


ORG_POOL = ("s1", "s2", "district-1", "closed", "elsewhere")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=st.lists(st.tuples(st.lists(st.sampled_from(ORG_POOL), max_size=4),
                                st.one_of(st.none(), st.sampled_from(ORG_POOL))), min_size=1, max_size=12))
def test_one_org_users_take_a_plain_join_and_plan_exactly_as_the_ranked_path(tmp_path, users):
    """A user of one org skips the ranking of links (the 1,000,000-student speed-up); the links, the incoming rows and
    the students are what the ranked path gives everyone. The ranked path is forced by a repeated building_sis no
    user belongs to (every user then takes it, as in that broken state)."""
    roster = [student(f"u{n}", *orgs, primary=primary) for n, (orgs, primary) in enumerate(users)]
    planned = []
    for force_ranked in (False, True):
        with memory_store() as con:
            sync_orgs(con, tmp_path, [org("s1", "North"), org("s2", "South"), org("closed", status="tobedeleted")])
            if force_ranked:
                con.execute("INSERT INTO buildings SELECT 90 + n, 'Twin', 'unused-twin', 'active', now(), now(), "
                            "NULL, 'buildings_csv' FROM range(2) t(n)")
            sync_students(con, tmp_path, roster)
            planned.append([sorted(rows(con, f"SELECT * FROM {table}")) for table in (
                "_building_links", "_incoming", "student_buildings")]
                + [sorted(rows(con, "SELECT * EXCLUDE (created_at, updated_at) FROM students"))])
    assert planned[0] == planned[1]
