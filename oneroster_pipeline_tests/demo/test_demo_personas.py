"""Provider personas and quirks of the demo provider: each quirk observable on the wire, over real HTTP, and the
same logical district behind every persona."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from oneroster_pipeline.demo import personas as q
from oneroster_pipeline.demo.auth import CORE_SCOPE
from oneroster_pipeline.demo.cli import main
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.demo.server import SESSION_COOKIE_NAME, DemoProvider, DemoSettings

SHAPE = DistrictShape(schools=3, students=200, seed=21)
DISTRICT = District(SHAPE)
DISABLED = DISTRICT.students_in_category("disabled", limit=1)[0]
TOBEDELETED = DISTRICT.students_in_category("tobedeleted", limit=1)[0]
ENABLED = DISTRICT.students_in_category("regular", limit=1)[0]
TEACHER = DISTRICT.teacher(0)["sourcedId"]


def serve(persona: str = "spec", quirks=frozenset(), auth: str = "none", **settings) -> DemoProvider:
    return DemoProvider(SHAPE, DemoSettings(persona=persona, quirks=quirks, auth=auth, **settings))


def get(provider: DemoProvider, version: str, path: str, **params) -> requests.Response:
    return requests.get(provider.base_url(version) + path, params=params, timeout=10)


def offset_of(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["offset"][0])


# ---- the persona table -------------------------------------------------------------------------------------------
def test_persona_table_covers_every_quirk_and_spec_has_none():
    assert set(q.PERSONAS) == {"spec", "infinite_campus", "classlink", "aeries", "edfi"}
    assert q.PERSONAS["spec"].quirks == frozenset()
    assert set().union(*(p.quirks for p in q.PERSONAS.values())) == set(q.QUIRKS)
    for persona in q.PERSONAS.values():
        assert persona.quirks <= set(q.QUIRKS) and persona.description
        auth = "oauth2" if q.SESSION_COOKIE in persona.quirks else "none"
        assert DemoSettings(persona=persona.name, auth=auth).active_quirks == persona.quirks


def test_settings_combine_and_validate_quirks():
    assert DemoSettings().active_quirks == frozenset()
    assert DemoSettings(quirks="no_link").active_quirks == {q.NO_LINK}  # a single name is fine
    assert DemoSettings(persona="edfi", quirks=[q.REJECT_SORT]).active_quirks == q.PERSONAS["edfi"].quirks | {
        q.REJECT_SORT}
    assert DemoSettings(boolean_enabled_user=True).active_quirks == {q.ENABLED_USER_BOOLEAN}
    for bad in (dict(persona="powerschool"), dict(quirks={"teapot"}),
                dict(quirks={q.ENABLED_USER_BOOLEAN, q.ENABLED_USER_CAPITALISED}),
                dict(persona="edfi", quirks={q.STATUS_INFO_SET_ERRORS}),
                dict(persona="aeries", quirks={q.RELATIVE_HREFS}),
                dict(persona="aeries", auth="none"), dict(quirks={q.SESSION_COOKIE}, auth="bearer")):
        with pytest.raises(ValueError):
            DemoSettings(**bad)


# ---- envelopes ---------------------------------------------------------------------------------------------------
ENDPOINTS = ("/orgs", "/schools", "/schools/{school}", "/users", "/students", "/students/{student}",
             "/schools/{school}/students", "/users/{student}", "/orgs/{school}")
SPEC_KEYS = ("orgs", "orgs", "org", "users", "users", "user", "users", "user", "org")
PLURAL_KEYS = ("orgs", "schools", "school", "users", "students", "student", "students", "user", "org")


@pytest.mark.parametrize("quirks,keys", [((), SPEC_KEYS), ({q.PLURAL_ENVELOPES}, PLURAL_KEYS)])
def test_envelope_keys(quirks, keys):
    school = DISTRICT.school_ids()[0]
    with serve(quirks=quirks) as provider:
        for version in ("1.1", "1.2"):
            for endpoint, key in zip(ENDPOINTS, keys):
                payload = get(provider, version, endpoint.format(school=school, student=ENABLED)).json()
                assert list(payload) == [key], (version, endpoint)
                assert payload[key]


# ---- values ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quirks,values", [((), ("true", "false")), ({q.ENABLED_USER_CAPITALISED}, ("True", "False")),
                                           ({q.ENABLED_USER_BOOLEAN}, (True, False))])
def test_enabled_user_spellings(quirks, values):
    with serve(quirks=quirks) as provider:
        for version in ("1.1", "1.2"):
            enabled = get(provider, version, f"/users/{ENABLED}").json()["user"]["enabledUser"]
            disabled = get(provider, version, f"/users/{DISABLED}").json()["user"]["enabledUser"]
            assert (enabled, disabled) == values
            assert type(enabled) is type(values[0])
        # filters keep the spec's spelling: the logical value, not the wire one
        assert get(provider, "1.2", "/students", filter="enabledUser='false'", limit=500).headers[
            "X-Total-Count"] == str(DISTRICT.counts()["disabled_students"])


def test_inactive_status():
    closed = DISTRICT.closed_school_id
    with serve(quirks={q.INACTIVE_STATUS}) as provider:
        for version in ("1.1", "1.2"):
            assert get(provider, version, f"/users/{TOBEDELETED}").json()["user"]["status"] == "inactive"
            assert get(provider, version, f"/users/{ENABLED}").json()["user"]["status"] == "active"
            assert get(provider, version, f"/orgs/{closed}").json()["org"]["status"] == "inactive"
        statuses = {u["status"] for u in get(provider, "1.2", "/students", limit=500).json()["users"]}
        assert statuses == {"active", "inactive"}
        selected = get(provider, "1.1", "/students", filter="status='tobedeleted'", limit=500).json()["users"]
        assert len(selected) == DISTRICT.counts()["tobedeleted_students"]  # filters see the logical value


def test_null_fields():
    with serve() as spec, serve(quirks={q.NULL_FIELDS}) as nulls:
        district_id = DISTRICT.district_id
        assert "parent" not in get(spec, "1.2", f"/orgs/{district_id}").json()["org"]
        org = get(nulls, "1.2", f"/orgs/{district_id}").json()["org"]
        assert org["parent"] is None and org["metadata"] is None and org["identifier"]  # a value stays a value
        school = get(nulls, "1.1", "/schools", limit=1).json()["orgs"][0]
        assert school["parent"]["sourcedId"] == district_id and school["metadata"] is None
        for version in ("1.1", "1.2"):
            user = get(nulls, version, f"/users/{ENABLED}").json()["user"]
            assert user["sms"] is None and user["phone"] is None and user["metadata"] is None
            assert user["identifier"] and user["email"]
        nulls.district.update_student(ENABLED, identifier="")
        assert get(nulls, "1.2", f"/students/{ENABLED}").json()["user"]["identifier"] is None
        spec.district.update_student(ENABLED, identifier="")
        assert get(spec, "1.2", f"/students/{ENABLED}").json()["user"]["identifier"] == ""


@pytest.mark.parametrize("quirks,expected", [
    ((), "{base}/orgs/{id}"), ({q.RELATIVE_HREFS}, "/orgs/{id}"), ({q.APP_RELATIVE_HREFS}, "~{path}/orgs/{id}")])
def test_href_forms(quirks, expected):
    with serve(quirks=quirks) as provider:
        for version in ("1.1", "1.2"):
            base = provider.base_url(version)
            user = get(provider, version, f"/users/{ENABLED}").json()["user"]
            ref = user["orgs"][0] if version == "1.1" else user["primaryOrg"]
            path = urlsplit(base).path
            assert ref["href"] == expected.format(base=base, path=path, id=ref["sourcedId"])
            child = get(provider, version, f"/orgs/{DISTRICT.district_id}").json()["org"]["children"][0]
            assert child["href"] == expected.format(base=base, path=path, id=child["sourcedId"])


# ---- paging headers ----------------------------------------------------------------------------------------------
def test_no_total_count_and_no_link_still_page_by_offset():
    with serve(quirks={q.NO_TOTAL_COUNT, q.NO_LINK}) as provider:
        first = get(provider, "1.2", "/students", limit=30)
        assert "X-Total-Count" not in first.headers and "Link" not in first.headers
        records, offset = [], 0
        while True:  # a client without either header pages until a short page
            page = get(provider, "1.2", "/students", limit=30, offset=offset).json()["users"]
            records += page
            offset += len(page)
            if len(page) < 30:
                break
        assert [u["sourcedId"] for u in records] == DISTRICT.student_ids()
    with serve(quirks={q.NO_LINK}) as provider:
        response = get(provider, "1.1", "/users", limit=5)
        assert "Link" not in response.headers and response.headers["X-Total-Count"] == "209"
    with serve(quirks={q.NO_TOTAL_COUNT}) as provider:
        response = get(provider, "1.1", "/users", limit=5)
        assert "X-Total-Count" not in response.headers and "next" in response.links


def test_link_off_by_one_loses_a_record_per_page():
    with serve(quirks={q.LINK_OFF_BY_ONE}) as provider:
        response = get(provider, "1.2", "/students", limit=50)
        assert offset_of(response.links["next"]["url"]) == 51
        assert offset_of(response.links["last"]["url"]) == 150 and response.headers["X-Total-Count"] == "200"
        followed, pages = [], 0
        while True:
            followed += response.json()["users"]
            pages += 1
            if "next" not in response.links:
                break
            response = requests.get(response.links["next"]["url"], timeout=10)
        assert len(followed) == 200 - (pages - 1) < 200  # trusting the link drops one record per page
        assert set(u["sourcedId"] for u in followed) < set(DISTRICT.student_ids())


# ---- errors ------------------------------------------------------------------------------------------------------
def error_responses(quirks) -> dict[int, requests.Response]:
    with serve(quirks=quirks, auth="bearer", bearer_token="t") as provider:
        ok = {"Authorization": "Bearer t"}
        base = provider.base_url("1.2")
        return {
            400: requests.get(base + "/users", params={"filter": "shoeSize='9'"}, headers=ok, timeout=10),
            401: requests.get(base + "/users", timeout=10),
            404: requests.get(base + "/users/nope", headers=ok, timeout=10),
        }


MINORS = {400: "invalid_filter_field", 401: "unauthorisedrequest", 404: "unknownobject"}


def test_error_body_spec_imsx():
    for status, response in error_responses(()).items():
        assert response.status_code == status
        body = response.json()
        assert body["imsx_codeMajor"] == "failure" and body["imsx_severity"] == "error"
        assert body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == MINORS[status]


def test_error_body_edfi_flat_code_minor():
    for status, response in error_responses({q.EDFI_ERRORS}).items():
        body = response.json()
        assert response.status_code == status and body["imsx_codeMinor"] == MINORS[status]
        assert "imsx_CodeMinor" not in body and body["imsx_codeMajor"] == "failure" and body["imsx_description"]


def test_error_body_status_info_set():
    for status, response in error_responses({q.STATUS_INFO_SET_ERRORS}).items():
        body = response.json()
        assert response.status_code == status and list(body) == ["statusInfoSet"]
        [info] = body["statusInfoSet"]
        assert info["imsx_codeMajor"] == "failure" and info["imsx_codeMinor"] == MINORS[status]


def test_empty_auth_error_body():
    responses = error_responses({q.EMPTY_AUTH_ERROR})
    unauthorised = responses[401]
    assert unauthorised.status_code == 401 and unauthorised.content == b""
    assert unauthorised.headers["Content-Length"] == "0" and "Content-Type" not in unauthorised.headers
    assert unauthorised.headers["WWW-Authenticate"].startswith("Bearer")
    assert responses[404].json()["imsx_codeMajor"] == "failure"  # only auth failures lose their body


def test_persona_error_forms_apply_to_rate_limits_too():
    with serve(persona="edfi", rate_limit_every=1) as provider:
        response = get(provider, "1.2", "/orgs")
        assert response.status_code == 429 and response.json()["imsx_codeMinor"] == "server_busy"


# ---- Infinite Campus ids -----------------------------------------------------------------------------------------
def test_ic_role_prefixed_ids_on_1_1_and_legacy_id_on_1_2():
    with serve(persona="infinite_campus") as ic:
        old = get(ic, "1.1", "/users", limit=500).json()["users"]
        new = get(ic, "1.2", "/users", limit=500).json()["users"]
        expected = [("s" if u["role"] == "student" else "t") + u["sourcedId"] for u in DISTRICT.expected_users()]
        assert [u["sourcedId"] for u in old] == expected
        assert [u["sourcedId"] for u in new] == [u["sourcedId"] for u in DISTRICT.expected_users()]
        # the crosswalk: 1.2 metadata.ic.legacysourceId is the 1.1 sourcedId of the same person
        assert [u["metadata"]["ic"]["legacysourceId"] for u in new] == expected
        assert all(u["metadata"]["demo"] for u in new)
        assert [o["sourcedId"] for o in get(ic, "1.1", "/orgs").json()["orgs"]] == [o["sourcedId"] for o in
                                                                                    DISTRICT.orgs()]
        assert get(ic, "1.1", f"/users/s{ENABLED}").json()["user"]["sourcedId"] == f"s{ENABLED}"
        assert get(ic, "1.1", f"/students/s{ENABLED}").status_code == 200
        assert get(ic, "1.1", f"/users/t{TEACHER}").json()["user"]["role"] == "teacher"
        for unknown in (ENABLED, f"t{ENABLED}", f"s{TEACHER}"):
            assert get(ic, "1.1", f"/users/{unknown}").status_code == 404, unknown
        assert get(ic, "1.2", f"/users/{ENABLED}").status_code == 200
        assert get(ic, "1.2", f"/users/s{ENABLED}").status_code == 404
        by_filter = get(ic, "1.1", "/users", filter=f"sourcedId='s{ENABLED}'").json()["users"]
        assert [u["sourcedId"] for u in by_filter] == [f"s{ENABLED}"]
        assert get(ic, "1.2", "/users", filter=f"sourcedId='s{ENABLED}'").json()["users"] == []
        assert get(ic, "1.1", "/users", filter=f"sourcedId='{ENABLED}'").json()["users"] == []


def test_ic_quirks_one_at_a_time():
    with serve(quirks={q.IC_LEGACY_SOURCE_ID}) as legacy_only:
        assert get(legacy_only, "1.1", f"/users/{ENABLED}").json()["user"]["sourcedId"] == ENABLED
        assert get(legacy_only, "1.2", f"/users/{ENABLED}").json()["user"]["metadata"]["ic"] == {
            "legacysourceId": f"s{ENABLED}"}
    with serve(quirks={q.IC_ROLE_PREFIXED_IDS}) as prefix_only:
        assert "ic" not in get(prefix_only, "1.2", f"/users/{ENABLED}").json()["user"]["metadata"]
        assert get(prefix_only, "1.1", "/students", limit=1).json()["users"][0]["sourcedId"].startswith("s")


# ---- auth: cookie and scope --------------------------------------------------------------------------------------
def token(provider: DemoProvider, session=requests) -> requests.Response:
    return session.post(provider.token_url, data={"grant_type": "client_credentials"},
                        auth=("demo-client", "demo-secret"), timeout=10)


def test_session_cookie_from_the_token_response_is_required():
    with serve(quirks={q.SESSION_COOKIE}, auth="oauth2") as provider:
        issued = token(provider)
        assert issued.status_code == 200 and SESSION_COOKIE_NAME in issued.cookies
        assert "HttpOnly" in issued.headers["Set-Cookie"]
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        url = provider.base_url("1.2") + "/students"
        without = requests.get(url, headers=bearer, timeout=10)
        assert without.status_code == 401 and "cookie" in without.json()["imsx_description"]
        wrong = requests.get(url, headers=bearer, cookies={SESSION_COOKIE_NAME: "made-up"}, timeout=10)
        assert wrong.status_code == 401
        good = requests.get(url, headers=bearer, cookies=issued.cookies, timeout=10)
        assert good.status_code == 200 and good.json()["users"]
        with requests.Session() as session:  # a session keeps the cookie by itself
            access = token(provider, session).json()["access_token"]
            session.headers["Authorization"] = f"Bearer {access}"
            assert session.get(provider.base_url("1.1") + "/orgs", timeout=10).status_code == 200
        assert requests.get(url, cookies=issued.cookies, timeout=10).status_code == 401  # a cookie is no token


def test_aeries_persona_end_to_end_with_cookie():
    with serve(persona="aeries", auth="oauth2") as aeries, requests.Session() as session:
        no_token = session.get(aeries.base_url("1.2") + "/orgs", timeout=10)
        assert no_token.status_code == 401 and no_token.content == b""
        session.headers["Authorization"] = f"Bearer {token(aeries, session).json()['access_token']}"
        users = session.get(aeries.base_url("1.1") + "/users", params={"limit": 500}, timeout=10).json()["users"]
        assert {u["enabledUser"] for u in users} == {"True", "False"}
        assert users[0]["orgs"][0]["href"].startswith("~/ims/oneroster/v1p1/orgs/")


def test_core_scope_only_forbids_school_students_on_1_2():
    school = DISTRICT.school_ids()[0]
    with serve(quirks={q.CORE_SCOPE_ONLY}, auth="oauth2") as provider:
        issued = token(provider).json()
        assert issued["scope"] == CORE_SCOPE
        bearer = {"Authorization": f"Bearer {issued['access_token']}"}
        nested = requests.get(f"{provider.base_url('1.2')}/schools/{school}/students", headers=bearer, timeout=10)
        assert nested.status_code == 403
        assert requests.get(provider.base_url("1.2") + "/students", headers=bearer, timeout=10).status_code == 200
        assert requests.get(f"{provider.base_url('1.1')}/schools/{school}/students", headers=bearer,
                            timeout=10).status_code == 200  # 1.1 has no scopes
    with serve(persona="infinite_campus") as ic:  # any auth mode
        assert get(ic, "1.2", f"/schools/{school}/students").status_code == 403
    with serve() as spec:
        assert get(spec, "1.2", f"/schools/{school}/students").status_code == 200


# ---- refused parameters ------------------------------------------------------------------------------------------
def test_reject_sort_and_fields():
    with serve(quirks={q.REJECT_SORT}) as provider:
        refused = get(provider, "1.2", "/students", sort="familyName")
        assert refused.status_code == 400
        assert refused.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == \
            "invalid_sort_field"
        assert get(provider, "1.2", "/students", fields="sourcedId").status_code == 200
        assert get(provider, "1.2", "/students", orderBy="desc").status_code == 200
    with serve(quirks={q.REJECT_FIELDS}) as provider:
        assert get(provider, "1.1", "/users", fields="sourcedId,givenName").status_code == 400
        assert get(provider, "1.1", f"/users/{ENABLED}", fields="sourcedId").status_code == 400
        assert get(provider, "1.1", "/users", sort="familyName").status_code == 200
        assert get(provider, "1.1", "/users").status_code == 200


# ---- the same district behind every persona ----------------------------------------------------------------------
class LenientClient:
    """Reads any persona: token + cookie, any envelope key, pages by offset until a short page."""

    def __init__(self, provider: DemoProvider) -> None:
        self.provider, self.session = provider, requests.Session()
        if provider.settings.auth == "oauth2":
            access = token(provider, self.session).json()["access_token"]
            self.session.headers["Authorization"] = f"Bearer {access}"

    def pull(self, version: str, path: str, page: int = 70) -> list[dict]:
        records: list[dict] = []
        while True:
            response = self.session.get(self.provider.base_url(version) + path,
                                        params={"limit": page, "offset": len(records)}, timeout=10)
            assert response.status_code == 200, response.text
            [batch] = response.json().values()
            records += batch
            if len(batch) < page:
                return records


def normalise(record: dict, version: str) -> tuple:
    """A persona-independent row: the values a lenient client keeps (1.1 IC ids mapped back via the prefix)."""
    if "type" in record:  # an org
        parent = (record.get("parent") or {}).get("sourcedId")
        return (record["sourcedId"], "tobedeleted" if record["status"] == "inactive" else record["status"],
                record["dateLastModified"], record["name"], record["type"], record["identifier"] or "", parent)
    sourced_id = record["sourcedId"]
    if version == "1.1" and sourced_id[0] in "st" and len(sourced_id) == 37:
        sourced_id = sourced_id[1:]  # IC 1.1: the role-prefixed id of the same person
    orgs = record["orgs"] if version == "1.1" else [r["org"] for r in record["roles"]]
    roles = [record["role"]] if version == "1.1" else sorted({r["role"] for r in record["roles"]})
    # the orgs as a set and the primary one (1.2: primaryOrg, else roleType): their order is wire (primary_not_first)
    primary = None if version == "1.1" else (record.get("primaryOrg") or next(
        (r["org"] for r in record["roles"] if r["roleType"] == "primary"), {})).get("sourcedId")
    return (sourced_id, "tobedeleted" if record["status"] == "inactive" else record["status"],
            record["dateLastModified"], record["username"], record["givenName"], record["familyName"],
            record["middleName"] or "", record["identifier"] or "", record["email"] or "",
            str(record["enabledUser"]).lower() == "true", tuple(roles), tuple(sorted(o["sourcedId"] for o in orgs)),
            primary, tuple(record["grades"]))


@pytest.mark.parametrize("persona", sorted(q.PERSONAS))
def test_every_persona_serves_the_same_district(persona):
    auth = "oauth2" if q.SESSION_COOKIE in q.PERSONAS[persona].quirks else "none"
    with serve() as spec, serve(persona=persona, auth=auth) as other:
        reference, client = LenientClient(spec), LenientClient(other)
        for version in ("1.1", "1.2"):
            for path in ("/orgs", "/schools", "/users", "/students"):
                expected = [normalise(r, version) for r in reference.pull(version, path)]
                assert [normalise(r, version) for r in client.pull(version, path)] == expected, (version, path)
                assert expected


def test_cli_persona_and_quirk_flags(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["--persona", "aeries", "--auth", "none", "--students", "10"])
    assert refused.value.code == 2 and "session_cookie" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--quirk", "teapot"])


def test_cli_serves_a_persona_with_its_auth():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-m", "oneroster_pipeline.demo", "--port", "0", "--students", "30", "--version", "1.1",
         "--persona", "classlink", "--quirk", "no_total_count"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [process.stdout.readline() for _ in range(4)]
        assert "persona: classlink (quirks: " in lines[1] and "no_total_count" in lines[1]
        base = next(line.split("base URL:")[1].strip() for line in lines if "1.1 base URL" in line)
        assert any("OAuth 1.0a" in line for line in lines)  # the persona's auth mode by default
        unsigned = requests.get(base + "/users", timeout=10)
        assert unsigned.status_code == 401 and unsigned.json()["statusInfoSet"][0]["imsx_codeMinor"] == \
            "unauthorisedrequest"
        signed = requests.get(base + "/schools", auth=OAuth1("demo-client", client_secret="demo-secret",
                                                             signature_method=SIGNATURE_HMAC_SHA256), timeout=10)
        assert signed.status_code == 200 and "schools" in signed.json() and "X-Total-Count" not in signed.headers
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
