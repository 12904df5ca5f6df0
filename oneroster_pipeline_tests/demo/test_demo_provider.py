"""The demo OneRoster provider over real HTTP: district facts, paging, filters, sort, fields, shapes, overlay."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.demo.records import format_timestamp, parse_timestamp
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

SHAPE = DistrictShape(schools=5, students=500, seed=42)


@pytest.fixture(scope="module")
def provider():
    with DemoProvider(SHAPE, DemoSettings(auth="none")) as running:
        yield running


@pytest.fixture
def fresh():
    """A provider of its own, for tests that change the overlay or the settings."""
    with DemoProvider(SHAPE, DemoSettings(auth="none")) as running:
        yield running


def get(provider: DemoProvider, version: str, path: str, **params) -> requests.Response:
    return requests.get(provider.base_url(version) + path, params=params, timeout=10)


def code_minor(response: requests.Response) -> str:
    return response.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]


def pull(provider: DemoProvider, version: str, path: str, key: str = "users", **params) -> list[dict]:
    """Every record of a collection, following rel="next" links."""
    response = get(provider, version, path, **params)
    records = []
    while True:
        assert response.status_code == 200, response.text
        records += response.json()[key]
        if "next" not in response.links:
            return records
        response = requests.get(response.links["next"]["url"], timeout=10)


def expected_students(**criteria) -> list[dict]:
    return [s for s in District(SHAPE).expected_students() if all(s[k] == v for k, v in criteria.items())]


# ---- the district ------------------------------------------------------------------------------------------------
def test_district_is_deterministic_and_seed_changes_every_id():
    a, b, other = District(SHAPE), District(SHAPE), District(DistrictShape(schools=5, students=500, seed=7))
    assert list(a.expected_users()) == list(b.expected_users())
    assert a.orgs() == b.orgs()
    ids_a = {u["sourcedId"] for u in a.expected_users()} | {o["sourcedId"] for o in a.orgs()}
    ids_other = {u["sourcedId"] for u in other.expected_users()} | {o["sourcedId"] for o in other.orgs()}
    assert len(ids_a) == 500 + 15 + 8 and not ids_a & ids_other


def test_district_categories_and_realistic_data():
    district = District(SHAPE)
    counts = district.counts()
    assert counts == {"orgs": 8, "schools": 6, "active_schools": 5, "teachers": 15, "users": 515, "students": 500,
                      "active_students": 495, "tobedeleted_students": 5, "disabled_students": 10,
                      "two_school_students": 10, "district_only_students": 5,
                      "closed_school_students": counts["closed_school_students"]}
    assert 1 <= counts["closed_school_students"] < counts["tobedeleted_students"]
    types = [o["type"] for o in district.orgs()]
    assert types.count("district") == 1 and types.count("department") == 1
    closed = district.org(district.closed_school_id)
    assert closed["status"] == "tobedeleted" and closed["type"] == "school"
    students = list(district.expected_students())
    at_closed = [s for s in students if s["orgs"] == [district.closed_school_id]]
    assert at_closed and all(s["status"] == "tobedeleted" for s in at_closed)
    names = {s["givenName"] for s in students} | {s["familyName"] for s in students}
    assert {"Zoë", "José", "Nguyễn", "Åsa", "O'Brien", "D'Angelo"} <= names
    assert {g for s in students for g in s["grades"]} == {"KG", *(f"{n:02d}" for n in range(1, 13))}
    assert len({s["username"] for s in students}) == len({s["email"] for s in students}) == 500
    assert all(s["username"].isascii() and "'" not in s["username"] for s in students)


def test_a_million_students_are_computed_not_stored():
    started = time.perf_counter()
    with DemoProvider(DistrictShape(schools=20, students=1_000_000, seed=1), DemoSettings(auth="none")) as big:
        response = get(big, "1.2", "/students", limit=10, offset=999_990)
        assert response.headers["X-Total-Count"] == "1000000"
        assert [u["metadata"]["demo"]["index"] for u in response.json()["users"]] == list(range(999_990, 1_000_000))
        assert "next" not in response.links
    assert time.perf_counter() - started < 2


# ---- paging ------------------------------------------------------------------------------------------------------
def test_totals_and_full_paging(provider):
    for path, total in (("/students", 500), ("/users", 515), ("/orgs", 8), ("/schools", 6)):
        assert get(provider, "1.1", path, limit=1).headers["X-Total-Count"] == str(total)
    records = pull(provider, "1.2", "/students", limit=70)
    assert [r["sourcedId"] for r in records] == provider.district.student_ids()
    assert len(get(provider, "1.1", "/users").json()["users"]) == 100  # default limit


def test_link_header_rels(provider):
    first = get(provider, "1.1", "/students", limit=70, filter="status='active'")
    assert set(first.links) == {"first", "next", "last"}
    assert "offset=70" in first.links["next"]["url"] and "offset=490" in first.links["last"]["url"]
    assert "filter=status%3D%27active%27" in first.links["next"]["url"]
    middle = requests.get(first.links["next"]["url"], timeout=10)
    assert set(middle.links) == {"first", "prev", "next", "last"} and "offset=0" in middle.links["prev"]["url"]
    last = requests.get(first.links["last"]["url"], timeout=10)
    assert "next" not in last.links and len(last.json()["users"]) == 495 - 490


def test_page_cap_gives_shorter_pages_and_links_follow_it():
    with DemoProvider(SHAPE, DemoSettings(auth="none", page_cap=40)) as capped:
        page = get(capped, "1.2", "/users", limit=100, offset=0)
        assert len(page.json()["users"]) == 40 and page.headers["X-Total-Count"] == "515"
        assert "offset=40" in page.links["next"]["url"]
        assert len(pull(capped, "1.2", "/users", limit=100)) == 515
        assert len(get(capped, "1.2", "/users", limit=10).json()["users"]) == 10


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "ten"}, {"offset": "-1"}])
def test_bad_paging_is_a_400(provider, params):
    response = get(provider, "1.1", "/users", **params)
    assert response.status_code == 400 and response.json()["imsx_codeMajor"] == "failure"


# ---- filters -----------------------------------------------------------------------------------------------------
def total(provider, version, path, expression) -> int:
    response = get(provider, version, path, filter=expression, limit=1000)
    assert response.status_code == 200, response.text
    records = response.json()["users" if "orgs" not in path and "schools" not in path else "orgs"]
    assert int(response.headers["X-Total-Count"]) == len(records)
    return len(records)


def test_filter_equality_and_inequality(provider):
    assert total(provider, "1.1", "/students", "status='tobedeleted'") == 5
    assert total(provider, "1.2", "/students", "status!='active'") == 5
    assert total(provider, "1.1", "/users", "role='teacher'") == 15
    assert total(provider, "1.2", "/users", "roles.role='teacher'") == 15
    assert total(provider, "1.2", "/users", "role='student'") == 500
    assert total(provider, "1.1", "/orgs", "type='school'") == 6
    assert total(provider, "1.2", "/orgs", "type='department'") == 1
    assert total(provider, "1.1", "/users", "enabledUser='false'") == 10
    sid = provider.district.student_ids()[123]
    assert total(provider, "1.2", "/users", f"sourcedId='{sid}'") == 1
    assert total(provider, "1.1", "/students", "familyName='O'Brien'") == len(expected_students(familyName="O'Brien"))
    assert total(provider, "1.2", "/students", "givenName='Zoë'") == len(expected_students(givenName="Zoë")) > 0


def test_filter_contains_is_case_insensitive(provider):
    expected = [s for s in expected_students() if "zo" in s["givenName"].lower()]
    assert total(provider, "1.1", "/students", "givenName~'ZO'") == len(expected) > 0
    assert total(provider, "1.2", "/students", "familyName~'ễ'") == len(expected_students(familyName="Nguyễn"))


def test_filter_date_last_modified_compares_instants(provider):
    stamps = sorted(parse_timestamp(s["dateLastModified"]) for s in expected_students())
    pivot = stamps[200]
    pivot_z, pivot_offset = format_timestamp(pivot), format_timestamp(pivot)[:-1] + "+00:00"
    assert total(provider, "1.2", "/students", f"dateLastModified>'{pivot_z}'") == sum(s > pivot for s in stamps)
    assert total(provider, "1.2", "/students", f"dateLastModified>='{pivot_offset}'") == sum(s >= pivot for s in stamps)
    assert total(provider, "1.1", "/students", f"dateLastModified<'{pivot_z}'") == sum(s < pivot for s in stamps)
    assert total(provider, "1.1", "/students", f"dateLastModified<='{pivot_z}'") == sum(s <= pivot for s in stamps)
    assert get(provider, "1.1", "/users", filter="dateLastModified>'yesterday'").status_code == 400


def test_filter_and_or(provider):
    both = [s for s in expected_students() if s["status"] == "active" and s["grades"] == ["KG"]]
    assert total(provider, "1.1", "/students", "status='active' AND grades='KG'") == len(both) > 0
    either = [s for s in expected_students() if s["givenName"] in ("Zoë", "José")]
    assert total(provider, "1.2", "/students", "givenName='Zoë' OR givenName='José'") == len(either)
    assert total(provider, "1.1", "/users", "familyName='O'Brien' OR role='teacher'") == \
        len(expected_students(familyName="O'Brien")) + sum(
            t["familyName"] != "O'Brien" for t in map(District(SHAPE).teacher, range(15)))


@pytest.mark.parametrize("version,expression,minor", [
    ("1.1", "shoeSize='9'", "invalid_filter_field"),
    ("1.1", "roles.role='student'", "invalid_filter_field"),  # a 1.2 field name on 1.1
    ("1.2", "status = active", "invalid_filter_field"),  # value not quoted
])
def test_bad_filters_are_400_with_imsx(provider, version, expression, minor):
    response = get(provider, version, "/users", filter=expression)
    assert response.status_code == 400 and code_minor(response) == minor


# ---- sort and fields ---------------------------------------------------------------------------------------------
def test_sort_and_order(provider):
    names = [u["familyName"] for u in get(provider, "1.2", "/students", sort="familyName", limit=500).json()["users"]]
    assert names == sorted(names) and len(set(names)) > 10
    desc = get(provider, "1.1", "/students", sort="dateLastModified", orderBy="desc", limit=500).json()["users"]
    stamps = [u["dateLastModified"] for u in desc]
    assert stamps == sorted(stamps, reverse=True)
    assert get(provider, "1.1", "/students", sort="shoeSize").status_code == 400
    assert get(provider, "1.1", "/students", sort="givenName", orderBy="up").status_code == 400


def test_fields_selects_fields(provider):
    users = get(provider, "1.2", "/users", fields="sourcedId,givenName", limit=5).json()["users"]
    assert [set(u) for u in users] == [{"sourcedId", "givenName"}] * 5
    org = get(provider, "1.1", f"/orgs/{provider.district.district_id}", fields="name").json()["org"]
    assert org == {"name": provider.district.org(provider.district.district_id)["name"]}
    response = get(provider, "1.2", "/users", fields="sourcedId,password")
    assert response.status_code == 400 and code_minor(response) == "invalid_selection_field"


# ---- 1.1 and 1.2 shapes ------------------------------------------------------------------------------------------
def test_version_shapes_agree_on_ids_and_dates(provider):
    v11 = get(provider, "1.1", "/users", limit=600).json()["users"]
    v12 = get(provider, "1.2", "/users", limit=600).json()["users"]
    assert [(u["sourcedId"], u["dateLastModified"]) for u in v11] == [(u["sourcedId"], u["dateLastModified"])
                                                                      for u in v12]
    for old, new in zip(v11, v12):
        assert "password" not in old and "password" not in new
        assert old["enabledUser"] in ("true", "false") and new["enabledUser"] == old["enabledUser"]
        assert "roles" not in old and "primaryOrg" not in old and "role" not in new and "orgs" not in new
        assert [r["role"] for r in new["roles"]] == [old["role"]] * len(old["orgs"])
        old_orgs = [o["sourcedId"] for o in old["orgs"]]
        assert [r["org"]["sourcedId"] for r in new["roles"]] == old_orgs
        assert new["primaryOrg"]["sourcedId"] == old_orgs[0] and "/rostering/v1p2/orgs/" in new["primaryOrg"]["href"]
        assert [r["roleType"] for r in new["roles"]] == ["primary"] + ["secondary"] * (len(old["orgs"]) - 1)
        assert new["userMasterIdentifier"] and "userMasterIdentifier" not in old
    two_schools = [u for u in v11 if len(u["orgs"]) == 2]
    assert len(two_schools) == 10
    ref = two_schools[0]["orgs"][1]
    assert ref["type"] == "org" and ref["href"] == f"{provider.base_url('1.1')}/orgs/{ref['sourcedId']}"
    assert {u["role"] for u in v11} == {"student", "teacher"}


def test_boolean_enabled_user_knob():
    with DemoProvider(SHAPE, DemoSettings(auth="none", boolean_enabled_user=True)) as booleans:
        users = get(booleans, "1.2", "/users", filter="enabledUser='false'").json()["users"]
        assert len(users) == 10 and all(u["enabledUser"] is False for u in users)


def test_single_objects_and_not_found(provider):
    district = provider.district
    sid = district.student_ids()[5]
    assert get(provider, "1.1", f"/users/{sid}").json()["user"]["sourcedId"] == sid
    assert get(provider, "1.2", f"/students/{sid}").json()["user"]["roles"][0]["role"] == "student"
    teacher = district.teacher(0)["sourcedId"]
    assert get(provider, "1.2", f"/users/{teacher}").json()["user"]["roles"][0]["role"] == "teacher"
    assert get(provider, "1.2", "/students", limit=1000, filter=f"sourcedId='{teacher}'").json()["users"] == []
    school = district.school_ids()[0]
    assert get(provider, "1.2", f"/schools/{school}").json()["org"]["type"] == "school"
    assert get(provider, "1.1", f"/orgs/{district.department_id}").json()["org"]["type"] == "department"
    for path in (f"/students/{teacher}", f"/schools/{district.department_id}", "/users/nope", "/orgs/nope",
                 "/schools/nope/students", "/classes", "/users/x/y", f"/users/{sid}/students",
                 f"/orgs/{district.district_id}/students"):
        response = get(provider, "1.2", path)
        assert response.status_code == 404 and code_minor(response) == "unknownobject", path


def test_school_students_partition_the_school_enrolments(provider):
    district = provider.district
    seen = []
    for school in district.school_ids():
        users = pull(provider, "1.2", f"/schools/{school}/students", limit=200)
        assert all(any(r["org"]["sourcedId"] == school for r in u["roles"]) for u in users)
        seen += [u["sourcedId"] for u in users]
    enrolments = [(s["sourcedId"], o) for s in expected_students() for o in s["orgs"] if o != district.district_id]
    assert sorted(seen) == sorted(sid for sid, _ in enrolments)


def test_versions_knob_and_unknown_paths():
    with DemoProvider(SHAPE, DemoSettings(auth="none", versions=("1.2",))) as only12:
        assert get(only12, "1.2", "/orgs").status_code == 200
        response = get(only12, "1.1", "/orgs")
        assert response.status_code == 404 and code_minor(response) == "unknownobject"


def test_concurrent_filtered_pulls_agree(provider):
    def one_pull(version):
        return [u["sourcedId"] for u in pull(provider, version, "/students", limit=37, filter="status='active'")]

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(one_pull, ["1.1", "1.2"] * 3))
    assert all(r == results[0] for r in results) and len(results[0]) == 495


def test_keep_alive_connection_is_reused(provider):
    with requests.Session() as session:
        for _ in range(3):
            response = session.get(provider.base_url("1.1") + "/orgs", timeout=10)
            assert response.status_code == 200 and response.raw.version == 11
        assert response.headers.get("Connection", "").lower() != "close"


# ---- overlay and request log -------------------------------------------------------------------------------------
def test_update_is_visible_in_both_versions_and_in_a_delta(fresh):
    district = fresh.district
    sid = district.student_ids()[42]
    before = format_timestamp(int(time.time() * 1000) - 1)
    district.update_student(sid, givenName="Zoë", familyName="D'Angelo")
    for version in ("1.1", "1.2"):
        user = get(fresh, version, f"/users/{sid}").json()["user"]
        assert (user["givenName"], user["familyName"]) == ("Zoë", "D'Angelo") and user["dateLastModified"] > before
    fresh.clear_request_log()
    delta = get(fresh, "1.2", "/students", filter=f"dateLastModified>'{before}'").json()["users"]
    assert [u["sourcedId"] for u in delta] == [sid]
    entry = fresh.request_log[-1]
    assert (entry.method, entry.path, entry.status) == ("GET", "/ims/oneroster/rostering/v1p2/students", 200)
    assert entry.query == {"filter": f"dateLastModified>'{before}'"}
    with pytest.raises(ValueError):
        district.update_student(sid, shoeSize="9")
    with pytest.raises(KeyError):
        district.update_student("no-such-id", givenName="X")


def test_update_enabled_user_accepts_spec_strings(fresh):
    sid = fresh.district.student_ids()[0]
    fresh.district.update_student(sid, enabledUser="false")
    assert get(fresh, "1.1", f"/users/{sid}").json()["user"]["enabledUser"] == "false"
    fresh.district.update_student(sid, enabledUser=True)
    assert get(fresh, "1.2", f"/users/{sid}").json()["user"]["enabledUser"] == "true"


def test_remove_and_restore(fresh):
    district = fresh.district
    sid = district.student_ids()[7]
    district.remove_student(sid)
    assert get(fresh, "1.1", "/students", limit=1).headers["X-Total-Count"] == "499"
    assert get(fresh, "1.1", "/users", limit=1).headers["X-Total-Count"] == "514"
    assert sid not in [u["sourcedId"] for u in pull(fresh, "1.1", "/students", limit=200)]
    assert get(fresh, "1.2", f"/students/{sid}").status_code == 404
    assert district.counts()["students"] == 499
    before = format_timestamp(int(time.time() * 1000) - 1)
    district.restore_student(sid)
    restored = get(fresh, "1.2", f"/students/{sid}").json()["user"]
    assert restored["dateLastModified"] > before
    assert get(fresh, "1.1", "/students", limit=1).headers["X-Total-Count"] == "500"


def test_add_school(fresh):
    district = fresh.district
    before = format_timestamp(int(time.time() * 1000) - 1)
    school = district.add_school("Harbor Point Academy")
    assert get(fresh, "1.2", "/schools", limit=1).headers["X-Total-Count"] == "7"
    assert school in district.school_ids()
    students = get(fresh, "1.2", f"/schools/{school}/students").json()["users"]
    assert len(students) == 3 and all(u["primaryOrg"]["sourcedId"] == school for u in students)
    changed_orgs = get(fresh, "1.1", "/orgs", filter=f"dateLastModified>'{before}'").json()["orgs"]
    assert {o["sourcedId"] for o in changed_orgs} == {school, district.district_id}
    assert school in [c["sourcedId"] for c in changed_orgs[0]["children"]]
    assert get(fresh, "1.1", "/students", limit=1).headers["X-Total-Count"] == "503"
    assert get(fresh, "1.1", "/users", limit=1).headers["X-Total-Count"] == "518"
