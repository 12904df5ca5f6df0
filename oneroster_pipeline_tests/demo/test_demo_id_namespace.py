"""The demo provider's `id_namespace` knob: the same district, identified by every sourcedId differently."""

from __future__ import annotations

import requests

from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

SHAPE = DistrictShape(schools=3, students=60, seed=5)
KEPT = ("name", "type", "identifier", "status")
KEPT_USER = ("givenName", "familyName", "identifier", "username", "email", "status", "enabledUser", "grades")


def _get(provider: DemoProvider, version: str, path: str, key: str) -> list[dict]:
    response = requests.get(f"{provider.base_url(version)}{path}", params={"limit": 1000}, timeout=10)
    response.raise_for_status()
    return response.json()[key]


def test_namespace_rewrites_every_sourced_id_and_keeps_everything_else():
    plain, other = District(SHAPE), District(SHAPE, id_namespace="classlink")
    plain_orgs, other_orgs = plain.orgs(), other.orgs()
    assert [{k: o[k] for k in KEPT} for o in plain_orgs] == [{k: o[k] for k in KEPT} for o in other_orgs]
    assert not {o["sourcedId"] for o in plain_orgs} & {o["sourcedId"] for o in other_orgs}
    plain_students, other_students = list(plain.expected_students()), list(other.expected_students())
    assert [{k: s[k] for k in KEPT_USER} for s in plain_students] == [
        {k: s[k] for k in KEPT_USER} for s in other_students]
    assert not {s["sourcedId"] for s in plain_students} & {s["sourcedId"] for s in other_students}
    # references follow the rewritten ids, and lookups and overlay changes work on them
    other_ids = {o["sourcedId"] for o in other_orgs}
    assert all(set(s["orgs"]) <= other_ids for s in other_students)
    first = other.student_ids(1)[0]
    other.update_student(first, identifier="CHANGED")
    assert other.find_user(first)["identifier"] == "CHANGED"
    assert District(SHAPE, id_namespace="classlink").student_ids(3) == other.student_ids(3)  # deterministic


def test_namespace_is_served_over_http_in_both_versions():
    settings = DemoSettings(auth="none", id_namespace="classlink")
    with DemoProvider(SHAPE, DemoSettings(auth="none")) as plain, DemoProvider(SHAPE, settings) as other:
        for version in ("1.1", "1.2"):
            a, b = _get(plain, version, "/students", "users"), _get(other, version, "/students", "users")
            assert [u["identifier"] for u in a] == [u["identifier"] for u in b]
            assert not {u["sourcedId"] for u in a} & {u["sourcedId"] for u in b}
        orgs = _get(other, "1.2", "/orgs", "orgs")
        assert {o["sourcedId"] for o in orgs} == {o["sourcedId"] for o in other.district.orgs()}
