"""The person key (people.py): a record's 1.2 userMasterIdentifier when it has one, else its identifier; detection
always uses that rule, the merge uses the configured key."""

from __future__ import annotations

import dataclasses

import pytest

from oneroster_pipeline.warehouse.people import shared_person_keys
from oneroster_pipeline.warehouse.pulls import apply_student_pull

from .staging import LENIENT, T0, memory_store, org, rows, stage, student, sync_orgs

# m1 and m2: one person (userMasterIdentifier M1) under two identifiers; i1 and i2: one person without a
# userMasterIdentifier (identifier I-9), blank in i2; solo: one record of its own
RECORDS = [
    student("m1", "s1", identifier="I-1", user_master_identifier="M1"),
    student("m2", "s2", identifier="I-2", user_master_identifier="M1"),
    student("i1", "s1", identifier="I-9"),
    student("i2", "s2", identifier="I-9", user_master_identifier="  "),
    student("solo", "s2", identifier="I-5", user_master_identifier="M5"),
]


@pytest.fixture
def con(tmp_path):
    with memory_store() as con:
        sync_orgs(con, tmp_path, [org("s1", "North"), org("s2", "South")])
        yield con


def sync(con, folder, person_key: str | None):
    pull = dataclasses.replace(stage(folder, "students", RECORDS), person_key=person_key)
    return apply_student_pull(con, pull, "run", T0, LENIENT, None)


def students(con) -> dict[str, list[str]]:
    return {sid: sorted(buildings) for sid, buildings in rows(
        con, "SELECT sourced_id, list(building_sis) FROM student_buildings GROUP BY sourced_id")}


def test_records_sharing_a_user_master_identifier_are_one_person_and_others_fall_back_to_identifier(con, tmp_path):
    assert sync(con, tmp_path, "identifier").outcome == "applied"
    # M1 despite two identifiers; I-9 by identifier (no userMasterIdentifier, or a blank one); solo by its M5
    assert students(con) == {"M1": ["s1", "s2"], "I-9": ["s1", "s2"], "M5": ["s2"]}
    assert rows(con, "SELECT sourced_id, user_master_identifier FROM oneroster_users ORDER BY sourced_id") == [
        ("i1", None), ("i2", "  "), ("m1", "M1"), ("m2", "M1"), ("solo", "M5")]  # the raw table as staged


def test_merging_by_user_master_identifier_leaves_records_without_one_as_they_are(con, tmp_path):
    assert sync(con, tmp_path, "user_master_identifier").outcome == "applied"
    assert students(con) == {"M1": ["s1", "s2"], "i1": ["s1"], "i2": ["s2"], "M5": ["s2"]}


@pytest.mark.parametrize("person_key", [None, "identifier", "user_master_identifier"])
def test_detection_uses_user_master_identifier_else_identifier_whatever_the_merge(con, tmp_path, person_key):
    sync(con, tmp_path, person_key)
    people, records, sample = shared_person_keys(con)
    assert (people, records) == (2, 4)
    assert sample == [{"person_key": "I-9", "sourced_ids": "i1, i2", "orgs": "s1, s2"},
                      {"person_key": "M1", "sourced_ids": "m1, m2", "orgs": "s1, s2"}]
