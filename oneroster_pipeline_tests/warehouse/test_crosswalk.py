"""The provider-switch crosswalk on an in-memory store: rules in order, one-to-one matches only, a shared key makes
every record sharing it ambiguous (no weaker rule is tried for them), thresholds block, and applying keeps ids."""

import pytest

from oneroster_pipeline.warehouse.policy import SwitchPolicy
from oneroster_pipeline.warehouse.provider_switch import (
    COUNTS,
    Connection,
    SwitchBlocked,
    SwitchError,
    activate_connection,
    apply_switch,
    build_crosswalk,
    summary_line,
)

from .staging import district_org, later, memory_store, org, rows, stage, student, sync_orgs, sync_students

OLD = Connection("oneroster-v1p1-old", "old provider", "oneroster", "https://old.example", "1.1")
NEW = Connection("classlink-v1p1-new", "new provider", "classlink", "https://new.example", "1.1")


@pytest.fixture
def con(tmp_path):
    with memory_store() as con:
        sync_orgs(con, tmp_path, [org("s1", "North Elementary", identifier="1001"),
                                  org("s2", "South Middle", identifier="1002")])
        sync_students(con, tmp_path, [student("a", "s1"), student("b", "s2"), student("c", "s2")])
        activate_connection(con, OLD, later(0))
        yield con


def build(con, tmp_path, schools, users, policy=SwitchPolicy(), switch_id="sw1"):
    return build_crosswalk(con, switch_id, NEW, stage(tmp_path, "orgs", [district_org(), *schools]),
                           stage(tmp_path, "students", users), policy, later(1))


def crosswalk(con, entity) -> dict:
    return {(old, new): (rule, status) for old, new, rule, status in rows(
        con, "SELECT old_id, new_id, rule, status FROM id_crosswalk WHERE entity = ?", [entity])}


def test_one_to_one_matches_by_the_first_rule_that_pairs_them(con, tmp_path):
    report = build(con, tmp_path,
                   [org("N1", "north  elementary!", identifier=None), org("N2", "Other name", identifier="1002")],
                   [student("x-a", "N1", identifier="ID-a"), student("x-b", "N2", identifier=None, username="b.user"),
                    student("c", "N2", identifier="ID-other")])
    assert crosswalk(con, "building") == {("s1", "N1"): ("name", "matched"), ("s2", "N2"): ("identifier", "matched")}
    assert crosswalk(con, "student") == {("a", "x-a"): ("identifier", "matched"),
                                         ("b", "x-b"): ("username", "matched"),
                                         ("c", "c"): ("sourced_id", "matched")}
    assert report.status == "ready" and report.reasons == []
    assert report.counts["students_matched"] == 3 and report.counts["buildings_matched"] == 2
    assert report.rules_used["student"] == {"identifier": 1, "username": 1, "sourced_id": 1}


def test_a_shared_key_is_ambiguous_and_no_weaker_rule_is_tried(con, tmp_path):
    report = build(con, tmp_path, [org("s1", identifier="1001"), org("s2", identifier="1002")], [
        student("x-a1", "s1", identifier="ID-a", username="a.user"),  # the username would pair it alone
        student("x-a2", "s1", identifier="ID-a", username="other"),
        student("b", "s2"), student("c", "s2")])
    students = crosswalk(con, "student")
    assert students[("a", "x-a1")] == ("identifier", "ambiguous") and students[("a", "x-a2")][1] == "ambiguous"
    assert not any(rule == "username" for rule, _ in students.values())
    detail = rows(con, "SELECT DISTINCT detail FROM id_crosswalk WHERE status = 'ambiguous'")
    assert detail == [("2 new records share this identifier",)]
    assert report.status == "blocked" and report.counts["students_ambiguous"] == 1
    assert any("1 students match ambiguously (max 0)" in r for r in report.reasons)
    assert rows(con, "SELECT status FROM provider_switches") == [("blocked",)]
    with pytest.raises(SwitchBlocked):
        apply_switch(con, "sw1", "run", later(2))


def test_unmatched_records_over_the_threshold_block(con, tmp_path):
    report = build(con, tmp_path, [org("s1", identifier="1001"), org("s2", identifier="1002")],
                   [student("a", "s1"), student("zz", "s1", identifier="ID-zz")],
                   policy=SwitchPolicy(max_unmatched_pct=50.0))
    assert report.counts["students_unmatched_old"] == 2 and report.counts["students_unmatched_new"] == 1
    assert crosswalk(con, "student")[(None, "zz")] == (None, "unmatched")
    assert report.status == "blocked" and "2 of 3 students (66.7%) match no record" in report.reasons[0]


def test_applying_keeps_every_internal_id_and_records_the_history(con, tmp_path):
    build(con, tmp_path, [org("N1", identifier="1001"), org("N2", identifier="1002")],
          [student("x-a", "N1", identifier="ID-a"), student("x-b", "N2", identifier="ID-b"),
           student("x-c", "N2", identifier="ID-c")])
    before = rows(con, "SELECT student_id, building_id FROM students ORDER BY student_id")
    result = apply_switch(con, "sw1", "run", later(2))
    assert (result.buildings_rewritten, result.students_rewritten) == (2, 3)
    assert rows(con, "SELECT student_id, building_id FROM students ORDER BY student_id") == before
    assert rows(con, "SELECT sourced_id, building_sis FROM students ORDER BY student_id") == [
        ("x-a", "N1"), ("x-b", "N2"), ("x-c", "N2")]
    assert rows(con, "SELECT old_id, new_id FROM id_history WHERE entity = 'student' ORDER BY 1") == [
        ("a", "x-a"), ("b", "x-b"), ("c", "x-c")]
    assert rows(con, "SELECT connection_id, status FROM provider_connections ORDER BY 1") == [
        (NEW.connection_id, "active"), (OLD.connection_id, "retired")]
    with pytest.raises(SwitchError, match="was applied"):
        apply_switch(con, "sw1", "run", later(3))


def test_an_incomplete_pull_or_the_active_connection_cannot_build(con, tmp_path):
    with pytest.raises(SwitchError, match="pull is incomplete"):
        build_crosswalk(con, "sw", NEW, stage(tmp_path, "orgs", [district_org()], complete=False),
                        stage(tmp_path, "students", []), SwitchPolicy(), later(1))
    with pytest.raises(SwitchError, match="already the active connection"):
        build_crosswalk(con, "sw", OLD, stage(tmp_path, "orgs", [district_org()]),
                        stage(tmp_path, "students", []), SwitchPolicy(), later(1))
    assert rows(con, "SELECT count(*) FROM id_crosswalk") == [(0,)]


def test_every_count_is_defined_and_adds_up_when_records_match_by_several_rules(tmp_path):
    """Students match by three rules, ignored records (fetched, no school) by two; a rule's count is never overwritten
    by another group's (the ignored records' identifier count replaced the students' in `student_rules`)."""
    with memory_store() as con:
        sync_orgs(con, tmp_path, [org("s1", identifier="1001"), org("s2", identifier="1002"),
                                  org("s3", identifier="1003"), org("s4", identifier="1004")])
        sync_students(con, tmp_path, [student(sid, "s1") for sid in "abcdef"]
                      + [student(f"i{n}") for n in range(1, 5)])  # no school: ignored
        activate_connection(con, OLD, later(0))
        assert rows(con, "SELECT count(*) FROM students UNION ALL SELECT count(*) FROM ignored_students") == \
            [(6,), (4,)]
        report = build(con, tmp_path, [
            org("N1", identifier="1001"),  # identifier
            org("s2", identifier="x"),  # sourced_id
            org("N3a", identifier="1003"), org("N3b", identifier="1003"),  # ambiguous: s3 is kept as it is
            org("N9", identifier="1009"),  # a new school; s4 matches nothing
        ], [
            student("x-a", "N1", identifier="ID-a"), student("x-b", "N1", identifier="ID-b"),  # identifier
            student("x-c", "N1", identifier=None, username="c.user"),  # username
            student("d", "N1", identifier="other"),  # sourced_id
            student("x-e1", "N1", identifier="ID-e"), student("x-e2", "N1", identifier="ID-e"),  # ambiguous; f gone
            student("x-i1", identifier="ID-i1"), student("i2", identifier="changed"),  # ignored: identifier, sourced_id
            student("x-i4a", identifier="ID-i4"), student("x-i4b", identifier="ID-i4"),  # ambiguous; i3 gone
            student("z", "N1", identifier="ID-z"),  # new to the district
        ], policy=SwitchPolicy(max_unmatched_pct=50.0, max_ambiguous=10))
    assert report.counts == {
        "buildings_total": 4, "buildings_matched": 2, "buildings_ambiguous": 1, "buildings_unmatched": 1,
        "schools_pulled": 5, "schools_ambiguous": 2, "schools_unmatched": 1,
        "students_total": 6, "students_matched": 4, "students_ambiguous": 1, "students_unmatched_old": 1,
        "ignored_total": 4, "ignored_matched": 2, "ignored_ambiguous": 1, "ignored_unmatched_old": 1,
        "students_pulled": 11, "students_ambiguous_new": 4, "students_unmatched_new": 1,
    }
    assert set(report.counts) == set(COUNTS)  # every count is defined
    assert report.rules_used == {"building": {"identifier": 1, "sourced_id": 1},
                                 "student": {"identifier": 2, "username": 1, "sourced_id": 1},
                                 "ignored": {"identifier": 1, "sourced_id": 1}}
    assert report.status == "ready" and report.reasons == []
    assert summary_line(report) == (
        "crosswalk sw1 ready: buildings 4 = 2 matched (by identifier 1, sourced_id 1) + 1 ambiguous + 1 unmatched; "
        "new schools 5 = 2 matched + 2 ambiguous + 1 unmatched; "
        "students 6 = 4 matched (by identifier 2, sourced_id 1, username 1) + 1 ambiguous + 1 unmatched; "
        "ignored records 4 = 2 matched + 1 ambiguous + 1 unmatched; "
        "new student records 11 = 6 matched + 4 ambiguous + 1 unmatched")
