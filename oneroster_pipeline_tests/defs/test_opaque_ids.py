"""A sourcedId is opaque (issue 24, observation 7): ` TWIN-1 `, `TWIN-1` and `\\nTWIN-1` are three students.

Each id, the record's own and every reference to another record's (1.1 orgs[], 1.2 roles[].org and primaryOrg, an
org's parent; CSV orgSourcedIds, roles.csv userSourcedId/orgSourcedId, parentSourcedId), is stored byte for byte;
only an empty or whitespace-only id is missing. Proven through a full sync in Dagster: REST 1.1 and 1.2 from a small
server of the test's own on loopback (the demo provider generates its ids, so it cannot serve these), and CSV 1.1
and 1.2 exports; the uniqueness checks (`students_ids_unique`, `building_sis_unique`) pass on the result.
"""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path

import dagster as dg
import pytest

from oneroster_pipeline.defs.resources import OneRosterResource

from .. import loopback
from .sync_harness import SyncHarness, check_evaluation

FULL = {"oneroster/sync_mode": "full"}
STAMP = "2026-01-05T08:00:00Z"
TWINS = (" TWIN-1 ", "TWIN-1", "\nTWIN-1")
# two schools whose ids differ only by spaces, each a building of its own; the spaced one names a spaced parent
SCHOOLS = {"SCH-1": ("Plain School", "district-1"), " SCH-1 ": ("Spaced School", " district-1")}
HOME = {" TWIN-1 ": " SCH-1 ", "TWIN-1": "SCH-1", "\nTWIN-1": "SCH-1"}  # each student's school, exactly


# ---- REST: a OneRoster server of the test's own ------------------------------------------------------------------
def _ref(sourced_id: str) -> dict:
    return {"href": f"/orgs/{sourced_id}", "sourcedId": sourced_id, "type": "org"}


def rest_roster(version: str) -> tuple[list[dict], list[dict]]:
    """(orgs, students) as OneRoster `version` JSON objects."""
    orgs = [{"sourcedId": "district-1", "status": "active", "dateLastModified": STAMP, "name": "District",
             "type": "district", "identifier": "D1", "parent": None}]
    orgs += [{"sourcedId": sid, "status": "active", "dateLastModified": STAMP, "name": name, "type": "school",
              "identifier": f"S{k}", "parent": _ref(parent)} for k, (sid, (name, parent)) in enumerate(SCHOOLS.items())]
    students = []
    for n, sid in enumerate(TWINS):
        user = {"sourcedId": sid, "status": "active", "dateLastModified": STAMP, "enabledUser": "true",
                "username": f"twin{n}", "givenName": f"Twin{n}", "familyName": "Doe", "identifier": f"T{n}",
                "email": f"twin{n}@example.org", "grades": ["05"]}
        if version == "1.1":
            user.update(role="student", orgs=[_ref(HOME[sid])])
        else:
            user.update(roles=[{"roleType": "primary", "role": "student", "org": _ref(HOME[sid])}],
                        primaryOrg=_ref(HOME[sid]))
        students.append(user)
    return orgs, students


class RosterServer(loopback.RosterServer):
    """The roster of `rest_roster(version)` served at /ims/oneroster/{version}."""

    def __init__(self, version: str) -> None:
        self.orgs, self.students = rest_roster(version)
        records = {"orgs": self.orgs, "students": self.students}
        super().__init__(lambda collection, offset, limit: (copy.deepcopy(records[collection][offset:offset + limit]),
                                                            len(records[collection])), f"/ims/oneroster/{version}")


# ---- CSV: an export with the same roster --------------------------------------------------------------------------
def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)  # quotes the id with a line break, not the spaced ones
    return out.getvalue()


def csv_export(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    files = {"manifest.csv": [["propertyName", "value"], ["manifest.version", "1.0"], ["oneroster.version", version],
                              ["file.orgs", "bulk"], ["file.users", "bulk"],
                              ["file.roles", "bulk" if version == "1.2" else "absent"]],
             "orgs.csv": [["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"],
                          ["district-1", "active", STAMP, "District", "district", "D1", ""]]
             + [[sid, "active", STAMP, name, "school", f"S{k}", parent]
                for k, (sid, (name, parent)) in enumerate(SCHOOLS.items())]}
    person = [["enabledUser", "username", "givenName", "familyName", "identifier", "email", "grades"]]
    people = [["true", f"twin{n}", f"Twin{n}", "Doe", f"T{n}", f"twin{n}@example.org", "05"] for n in range(3)]
    if version == "1.1":
        files["users.csv"] = [["sourcedId", "status", "dateLastModified", *person[0], "orgSourcedIds", "role"]] + [
            [sid, "active", STAMP, *people[n], HOME[sid], "student"] for n, sid in enumerate(TWINS)]
    else:
        files["users.csv"] = [["sourcedId", "status", "dateLastModified", *person[0], "primaryOrgSourcedId"]] + [
            [sid, "active", STAMP, *people[n], HOME[sid]] for n, sid in enumerate(TWINS)]
        files["roles.csv"] = [["sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role",
                               "orgSourcedId"]] + [
            [f"role-{n}", "active", STAMP, sid, "primary", "student", HOME[sid]] for n, sid in enumerate(TWINS)]
    for name, rows in files.items():
        (folder / name).write_text(_csv(rows), encoding="utf-8")
    return folder


# ---- the sync -----------------------------------------------------------------------------------------------------
def _assert_three_students(harness: SyncHarness, result: dg.ExecuteInProcessResult) -> None:
    assert result.success
    assert sorted(harness.rows("SELECT sourced_id, building_sis FROM students")) == sorted(HOME.items())
    assert harness.scalar("SELECT count(DISTINCT sourced_id) FROM students") == len(TWINS)
    assert sorted(harness.rows("SELECT building_sis, name FROM buildings")) == sorted(
        (sid, name) for sid, (name, _) in SCHOOLS.items())
    assert sorted(harness.rows("SELECT sourced_id, org_sourced_ids FROM oneroster_users")) == sorted(
        (sid, [school]) for sid, school in HOME.items())
    assert sorted(harness.rows("SELECT sourced_id, parent_sourced_id FROM oneroster_orgs WHERE type = 'school'")) \
        == sorted((sid, parent) for sid, (_, parent) in SCHOOLS.items())
    for check in ("students_ids_unique", "building_sis_unique", "building_sis_matches_schools", "students_landed"):
        assert check_evaluation(result, check).passed, check


def _assert_a_second_sync_changes_nothing(harness: SyncHarness) -> None:
    before = harness.rows("SELECT student_id, sourced_id, building_id, building_sis FROM students ORDER BY 1")
    again = harness.run("student_sync", tags=FULL)
    assert again.success
    assert harness.rows("SELECT student_id, sourced_id, building_id, building_sis FROM students ORDER BY 1") == before
    assert harness.scalar("SELECT count(*) FROM student_changes WHERE run_id = ?", [again.run_id]) == 0


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_rest_ids_differing_only_by_whitespace_are_three_students(tmp_path, version):
    with RosterServer(version) as server:
        harness = SyncHarness(tmp_path, OneRosterResource(provider="oneroster", base_url=server.base_url,
                                                          version=version, auth="none", page_size=2, max_retries=1))
        _assert_three_students(harness, harness.run("full_sync"))
        if version == "1.2":
            assert sorted(harness.rows("SELECT sourced_id, primary_org_sourced_id FROM oneroster_users")) == sorted(
                HOME.items())
        _assert_a_second_sync_changes_nothing(harness)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_csv_ids_differing_only_by_whitespace_are_three_students(tmp_path, version):
    export = csv_export(tmp_path / "export", version)
    harness = SyncHarness(tmp_path, OneRosterResource(provider="csv", csv_path=str(export)))
    _assert_three_students(harness, harness.run("full_sync"))
    _assert_a_second_sync_changes_nothing(harness)
