"""The primary school, one rule for every source (issue 25, observation 3), through the Dagster jobs against the demo
provider over HTTP on loopback and its CSV exports.

The rule: 1.2 `primaryOrg`, else the org of the student role whose `roleType` is primary, else (1.1 names no primary)
the building with the lowest sourcedId; never the order the provider lists the orgs in. The demo district's
two-school students have the lower-sourcedId school as their primary, so every rendering describes the same
placement; the `primary_not_first` quirk lists the primary last and sends no `primaryOrg` (only roleType says it), as
Ed-Fi's API does, and `export_csv(..., primary_not_first=True)` does the same in users.csv / roles.csv.
"""

from __future__ import annotations

import pytest

from oneroster_pipeline.defs.resources import OneRosterResource
from oneroster_pipeline.demo import personas as q
from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.records import TWO_SCHOOLS
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

from .sync_harness import CLIENT_ID, CLIENT_SECRET, STUDENT_CONTENT, SyncHarness, oneroster_for

SHAPE = DistrictShape(schools=4, students=400, seed=29)
FULL = {"oneroster/sync_mode": "full"}
SOURCES = ("rest-1.1", "rest-1.2", "csv-1.1", "csv-1.2")


@pytest.fixture
def provider():
    settings = DemoSettings(auth="oauth2", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            quirks={q.PRIMARY_NOT_FIRST})
    with DemoProvider(SHAPE, settings) as running:
        yield running


def _sync(provider: DemoProvider, source: str, tmp_path) -> SyncHarness:
    kind, version = source.split("-")
    if kind == "rest":
        oneroster = oneroster_for(provider, version)
    else:
        export = export_csv(provider.district, tmp_path / source / "oneroster.zip", version, primary_not_first=True)
        oneroster = OneRosterResource(provider="csv", csv_path=str(export))
    harness = SyncHarness(tmp_path / source, oneroster)
    assert harness.run("full_sync").success
    return harness


def _tables(harness: SyncHarness) -> tuple:
    return (harness.rows(f"SELECT {STUDENT_CONTENT} FROM students ORDER BY sourced_id"),
            harness.rows("SELECT sourced_id, reason FROM ignored_students ORDER BY sourced_id"),
            harness.rows("SELECT sourced_id, building_sis, is_primary FROM student_buildings ORDER BY ALL"))


def _buildings(harness: SyncHarness) -> dict[str, str]:
    return dict(harness.rows("SELECT sourced_id, building_sis FROM students"))


def _two_school_students(provider: DemoProvider) -> dict[str, list[str]]:
    """sourcedId -> its two schools, primary first (the district's logical record)."""
    return {s["sourcedId"]: s["orgs"] for s in provider.district.expected_students() if len(s["orgs"]) == 2}


def test_rest_1_1_rest_1_2_and_csv_land_identical_students_in_their_primary_school(provider, tmp_path):
    """The primary listed second (1.1 orgs[], 1.2 roles[] with roleType and no primaryOrg, CSV orgSourcedIds and
    roles.csv): every source lands every two-school student in its primary school, and the same students."""
    two = _two_school_students(provider)
    assert len(two) >= 4 and all(orgs[0] < orgs[1] for orgs in two.values())
    tables = {}
    for source in SOURCES:
        harness = _sync(provider, source, tmp_path)
        tables[source] = _tables(harness)
        placed = _buildings(harness)
        assert {s: placed[s] for s in two} == {s: orgs[0] for s, orgs in two.items()}, source
        assert not any(placed[s] == orgs[1] for s, orgs in two.items())
    assert tables["rest-1.1"][0] and len({repr(t) for t in tables.values()}) == 1, \
        [s for s in SOURCES if tables[s] != tables["rest-1.1"]]


def test_role_type_primary_beats_the_lowest_sourced_id_on_1_2_and_1_1_falls_back_to_it(provider, tmp_path):
    """Students whose primary school is the higher sourcedId, listed last, with no primaryOrg: REST 1.2 and CSV 1.2
    read roleType and agree; 1.1 names no primary, so REST 1.1 and CSV 1.1 take the lowest sourcedId and agree."""
    two = _two_school_students(provider)
    flipped = sorted(two)[:5]
    for sourced_id in flipped:  # the district's record: the primary (first) is now the higher school
        provider.district.update_student(sourced_id, orgs=[two[sourced_id][1], two[sourced_id][0]])
    tables, placed = {}, {}
    for source in SOURCES:
        harness = _sync(provider, source, tmp_path)
        tables[source], placed[source] = _tables(harness), _buildings(harness)
    for version in ("1.1", "1.2"):
        assert tables[f"rest-{version}"] == tables[f"csv-{version}"], version
    assert {s: placed["rest-1.2"][s] for s in flipped} == {s: two[s][1] for s in flipped}  # roleType primary
    assert {s: placed["rest-1.1"][s] for s in flipped} == {s: two[s][0] for s in flipped}  # the lowest sourcedId
    same = set(placed["rest-1.1"]) - set(flipped)
    assert {s: placed["rest-1.1"][s] for s in same} == {s: placed["rest-1.2"][s] for s in same}


def test_a_student_whose_primary_school_changes_moves_building_once(provider, tmp_path):
    harness = _sync(provider, "rest-1.2", tmp_path)
    two = _two_school_students(provider)
    mover = next(s for s in provider.district.students_in_category(TWO_SCHOOLS) if s in two)
    old, new = two[mover]
    assert _buildings(harness)[mover] == old

    provider.district.update_student(mover, orgs=[new, old])  # the primary moves to the other school
    moved = harness.run("student_sync", tags=FULL)
    assert moved.success and _buildings(harness)[mover] == new
    changes = harness.rows("SELECT sourced_id, change, field, old_value, new_value FROM student_changes "
                           "WHERE run_id = ? ORDER BY field", [moved.run_id])
    building_of = dict(harness.rows("SELECT building_sis, building_id::VARCHAR FROM buildings"))
    assert changes == [(mover, "update", "building_id", building_of[old], building_of[new]),
                       (mover, "update", "building_sis", old, new)]
    assert harness.rows("SELECT building_sis, is_primary FROM student_buildings WHERE sourced_id = ? ORDER BY 1",
                        [mover]) == sorted([(old, False), (new, True)])

    again = harness.run("student_sync", tags=FULL)  # the same primary again: no further move
    assert again.success and _buildings(harness)[mover] == new
    assert harness.rows("SELECT count(*) FROM student_changes WHERE run_id = ?", [again.run_id]) == [(0,)]
