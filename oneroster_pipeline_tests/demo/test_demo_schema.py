"""The demo provider's OneRoster 1.2 responses validate against the official 1EdTech OpenAPI definition.

The spec is vendored in `oneroster_pipeline_tests/data/spec/` (provenance and licence in its README), so every
clone runs these tests.
Each endpoint is validated against the schema its response of that status names in the spec (200, and the error
statuses 400, 401, 403, 404), `$ref`s resolved in place. Everything here runs the `spec` persona; the last tests
show the schema notices what the other personas' quirks change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from jsonschema import Draft7Validator

from oneroster_pipeline.demo import personas as q
from oneroster_pipeline.demo.auth import CORE_SCOPE
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

SPEC_PATH = Path(__file__).resolve().parents[1] / "data/spec/oneroster-v1p2-rostering-openapi.json"
SHAPE = DistrictShape(schools=4, students=300, seed=11)


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="module")
def provider():
    with DemoProvider(SHAPE, DemoSettings(persona="spec", auth="none")) as running:
        yield running


def validator(spec: dict, ref: str) -> Draft7Validator:
    return Draft7Validator({"$ref": ref, "components": spec["components"]})


def response_schema(spec: dict, path: str, status: str = "200") -> str:
    response = spec["paths"][path]["get"]["responses"][status]
    return response["content"]["application/json"]["schema"]["$ref"]


def errors_of(spec: dict, spec_path: str, payload: dict, status: str = "200") -> list[str]:
    found = validator(spec, response_schema(spec, spec_path, status)).iter_errors(payload)
    return [f"{list(e.absolute_path)}: {e.message}" for e in found]


def endpoints(district) -> list[tuple[str, str]]:
    school = district.school_ids()[1]
    two_schools = district.students_in_category("two_schools", limit=1)[0]
    return [
        ("/orgs", "/orgs"), (f"/orgs/{district.district_id}", "/orgs/{sourcedId}"),
        ("/schools", "/schools"), (f"/schools/{school}", "/schools/{sourcedId}"),
        ("/users", "/users"), (f"/users/{district.teacher(0)['sourcedId']}", "/users/{sourcedId}"),
        ("/students", "/students"), (f"/students/{two_schools}", "/students/{sourcedId}"),
        (f"/schools/{school}/students", "/schools/{schoolSourcedId}/students"),
    ]


def test_1_2_responses_validate(spec, provider):
    for url_path, spec_path in endpoints(provider.district):
        response = requests.get(provider.base_url("1.2") + url_path, params={"limit": 1000}, timeout=10)
        assert response.status_code == 200, url_path
        payload = response.json()
        assert errors_of(spec, spec_path, payload) == [], url_path
        assert payload.get("orgs") or payload.get("users") or payload.get("org") or payload.get("user")


def test_every_student_category_validates(spec, provider):
    district = provider.district
    for category in ("regular", "two_schools", "district_only", "tobedeleted", "closed_school", "disabled"):
        sid = district.students_in_category(category, limit=1)[0]
        payload = requests.get(f"{provider.base_url('1.2')}/students/{sid}", timeout=10).json()
        assert errors_of(spec, "/students/{sourcedId}", payload) == [], category


def test_error_responses_validate_against_their_status_schema(spec):
    """400, 401, 403 and 404 from the spec persona, each against the schema the spec names for that status."""
    settings = DemoSettings(persona="spec", auth="oauth2", scopes=(CORE_SCOPE,))  # a district granting core only
    with DemoProvider(SHAPE, settings) as provider:
        issued = requests.post(provider.token_url, data={"grant_type": "client_credentials"},
                               auth=("demo-client", "demo-secret"), timeout=10)
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        school = provider.district.school_ids()[0]
        cases = [  # (request path, spec path, status, params, headers)
            ("/users", "/users", 400, {"filter": "shoeSize='9'"}, bearer),
            ("/students", "/students", 400, {"limit": "0"}, bearer),
            ("/orgs", "/orgs", 400, {"fields": "nope"}, bearer),
            ("/students", "/students", 401, {}, {}),
            ("/schools", "/schools", 401, {}, {"Authorization": "Bearer made-up"}),
            (f"/schools/{school}/students", "/schools/{schoolSourcedId}/students", 403, {}, bearer),
            ("/schools/nope", "/schools/{sourcedId}", 404, {}, bearer),
            (f"/schools/{provider.district.department_id}", "/schools/{sourcedId}", 404, {}, bearer),
            ("/users/nope", "/users/{sourcedId}", 404, {}, bearer),
            ("/orgs/nope", "/orgs/{sourcedId}", 404, {}, bearer),
        ]
        for url_path, spec_path, status, params, headers in cases:
            response = requests.get(provider.base_url("1.2") + url_path, params=params, headers=headers, timeout=10)
            assert response.status_code == status, url_path
            assert errors_of(spec, spec_path, response.json(), str(status)) == [], (url_path, status)
        assert {c[2] for c in cases} == {400, 401, 403, 404}


def test_error_payloads_validate(spec, provider):
    status_info = validator(spec, "#/components/schemas/imsx_StatusInfoDType")
    for path, params, status in (("/users", {"filter": "shoeSize='9'"}, 400), ("/users/nope", {}, 404),
                                 ("/users", {"fields": "nope"}, 400), ("/orgs", {}, 429)):
        if status == 429:
            provider.faults.fail_next(1, status=429, body="imsx")
        response = requests.get(provider.base_url("1.2") + path, params=params, timeout=10)
        assert response.status_code == status
        assert list(status_info.iter_errors(response.json())) == [], path


def test_validation_can_fail(spec):
    """Boolean enabledUser (what some servers send) is not schema-valid: the check above is not vacuous."""
    with DemoProvider(SHAPE, DemoSettings(auth="none", boolean_enabled_user=True)) as booleans:
        payload = requests.get(booleans.base_url("1.2") + "/students", params={"limit": 3}, timeout=10).json()
    assert any("enabledUser" in e for e in errors_of(spec, "/students", payload))


@pytest.mark.parametrize("quirk,url_path,spec_path,status,expected", [
    (q.PLURAL_ENVELOPES, "/students", "/students", 200, "students"),
    (q.PLURAL_ENVELOPES, "/schools", "/schools", 200, "schools"),
    (q.ENABLED_USER_CAPITALISED, "/users", "/users", 200, "enabledUser"),
    (q.INACTIVE_STATUS, "/orgs", "/orgs", 200, "inactive"),
    (q.NULL_FIELDS, "/orgs", "/orgs", 200, "None"),
    (q.EDFI_ERRORS, "/users/nope", "/users/{sourcedId}", 404, "imsx_codeMinor"),
    (q.STATUS_INFO_SET_ERRORS, "/users/nope", "/users/{sourcedId}", 404, "statusInfoSet"),
])
def test_quirks_leave_the_spec(spec, quirk, url_path, spec_path, status, expected):
    """Each wire-format quirk that the schema can see is caught by it (so the spec persona's passes mean something)."""
    with DemoProvider(SHAPE, DemoSettings(auth="none", quirks={quirk})) as quirky:
        response = requests.get(quirky.base_url("1.2") + url_path, params={"limit": 1000}, timeout=10)
    assert response.status_code == status
    assert any(expected in e for e in errors_of(spec, spec_path, response.json(), str(status)))
