"""Building sync on an in-memory store: create, rename, reactivate, flag vanished schools, never delete; the
pre-existing buildings CSV and its errors."""

import pytest

from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.buildings import BuildingsCsvError, seed_buildings_from_csv, sync_buildings
from oneroster_pipeline.warehouse.pulls import apply_org_pull

from .staging import T0, district_org, later, memory_store, org, rows, stage, sync_orgs


@pytest.fixture
def con():
    with memory_store() as con:
        yield con


def buildings(con) -> dict[str, tuple]:
    return {sis: (bid, name, status) for bid, sis, name, status in rows(
        con, "SELECT building_id, building_sis, name, status FROM buildings ORDER BY building_id")}


def test_creates_one_building_per_active_school_only(con, tmp_path):
    result = sync_orgs(con, tmp_path, [org("s1", "North"), org("s2", "South"), org("closed", status="tobedeleted"),
                                       org("dept", type="department")])
    assert (result.created, result.total) == (2, 2)
    assert {sis: (name, status) for sis, (_, name, status) in buildings(con).items()} == {
        "s1": ("North", "active"), "s2": ("South", "active")}
    assert rows(con, "SELECT DISTINCT origin FROM buildings") == [("oneroster",)]


def test_a_renamed_school_renames_its_building_and_keeps_its_id(con, tmp_path):
    sync_orgs(con, tmp_path, [org("s1", "North"), org("s2", "South")])
    before = buildings(con)
    result = sync_orgs(con, tmp_path, [org("s1", "North Elementary"), org("s2", "South")], now=later(1))
    after = buildings(con)
    assert (result.created, result.renamed) == (0, 1)
    assert after["s1"] == (before["s1"][0], "North Elementary", "active") and after["s2"] == before["s2"]


def test_a_vanished_school_is_flagged_never_deleted_and_a_returning_one_reactivated(con, tmp_path):
    sync_orgs(con, tmp_path, [org("s1"), org("s2")])
    ids = {sis: b[0] for sis, b in buildings(con).items()}
    result = sync_orgs(con, tmp_path, [org("s1")], now=later(1))
    assert result.school_missing == 1 and result.total == 2
    assert buildings(con)["s2"][2] == "school_missing"
    assert rows(con, "SELECT deactivated_at FROM buildings WHERE building_sis = 's2'") == [(later(1),)]
    result = sync_orgs(con, tmp_path, [org("s1"), org("s2")], now=later(2))
    assert result.renamed == 1 and result.created == 0  # reactivation counts with renames
    assert {sis: (b[0], b[2]) for sis, b in buildings(con).items()} == {
        "s1": (ids["s1"], "active"), "s2": (ids["s2"], "active")}
    assert rows(con, "SELECT deactivated_at FROM buildings WHERE building_sis = 's2'") == [(None,)]


def test_a_tobedeleted_school_flags_its_building(con, tmp_path):
    sync_orgs(con, tmp_path, [org("s1"), org("s2")])
    sync_orgs(con, tmp_path, [org("s1"), org("s2", status="tobedeleted")], now=later(1))
    assert buildings(con)["s2"][2] == "school_missing"


def test_school_missing_is_flagged_only_after_a_complete_org_pull(con, tmp_path):
    sync_orgs(con, tmp_path, [org("s1"), org("s2")])
    result = sync_orgs(con, tmp_path, [org("s1")], now=later(1), complete=False)
    assert result.school_missing == 0 and buildings(con)["s2"][2] == "active"
    result = sync_orgs(con, tmp_path, [org("s1")], now=later(2), reported_total=5)  # received 2 of 5: incomplete
    assert result.school_missing == 0 and buildings(con)["s2"][2] == "active"
    result = sync_orgs(con, tmp_path, [org("s1")], now=later(3))
    assert result.school_missing == 1


def test_flag_missing_false_leaves_buildings_of_absent_schools_active(con, tmp_path):
    sync_orgs(con, tmp_path, [org("s1"), org("s2")])
    apply_org_pull(con, stage(tmp_path, "orgs", [district_org(), org("s1")]), "run", later(1))
    assert sync_buildings(con, later(1), flag_missing=False).school_missing == 0
    assert buildings(con)["s2"][2] == "active"
    assert sync_buildings(con, later(2), flag_missing=True).school_missing == 1


def test_new_buildings_take_ids_after_the_highest(con, tmp_path):
    sync_orgs(con, tmp_path, [org("s1")])
    sync_orgs(con, tmp_path, [org("s1"), org("s0"), org("s9")], now=later(1))
    assert {sis: b[0] for sis, b in buildings(con).items()} == {"s1": 1, "s0": 2, "s9": 3}


# ---- the pre-existing buildings CSV --------------------------------------------------------------------------------
def write(tmp_path, text: str):
    path = tmp_path / "buildings.csv"
    path.write_text(text)
    return path


def test_the_csv_seeds_an_empty_registry_and_sync_matches_by_building_sis(con, tmp_path):
    path = write(tmp_path, "name,building_sis\nOld North, s1 \nAnnex,annex-7\n")
    with store.transaction(con):
        assert seed_buildings_from_csv(con, path, T0) == 2
    result = sync_orgs(con, tmp_path, [org("s1", "North"), org("s2", "South")], now=later(1))
    assert (result.created, result.renamed) == (1, 1)
    found = buildings(con)
    assert found["s1"] == (1, "North", "active") and found["s2"][0] == 3
    # a CSV building no school matches is never flagged: it was not made by the sync
    assert found["annex-7"][2] == "active"
    assert rows(con, "SELECT origin FROM buildings WHERE building_sis = 'annex-7'") == [("buildings_csv",)]


def test_the_csv_is_loaded_only_into_an_empty_registry(con, tmp_path):
    sync_orgs(con, tmp_path, [org("s1")])
    assert seed_buildings_from_csv(con, write(tmp_path, "name,building_sis\nX,x1\n"), T0) == 0
    assert set(buildings(con)) == {"s1"}


@pytest.mark.parametrize(("text", "message"), [
    ("name,code\nA,a\n", "missing column(s) ['building_sis']"),
    ("name,building_sis\nA,a\nB,\n", "line 3: column building_sis is empty"),
    ("name,building_sis\nA,a\nB,b\nC,a\n", "line 4: building_sis 'a' repeats line 2"),
])
def test_csv_errors_name_the_line_and_column(con, tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(BuildingsCsvError) as raised:
        seed_buildings_from_csv(con, path, T0)
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert buildings(con) == {}


def test_a_missing_csv_names_the_variable(con, tmp_path):
    with pytest.raises(BuildingsCsvError, match="ONEROSTER_BUILDINGS_CSV: file not found"):
        seed_buildings_from_csv(con, tmp_path / "nope.csv", T0)
