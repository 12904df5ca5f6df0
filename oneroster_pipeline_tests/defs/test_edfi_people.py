"""One person, one student (issue 25, item 2): Ed-Fi's OneRoster API sends one user record per (student, school),
each with a school-scoped sourcedId and the same identifier and roles[]. Served by a loopback server shaped after
Ed-Fi-Alliance-OSS/edfi-oneroster (no X-Total-Count, no Link, a short page ends it, roles with roleType, no
primaryOrg)."""

from __future__ import annotations

import hashlib

import pytest

from oneroster_pipeline.defs.resources import OneRosterResource
from oneroster_pipeline_tests.hostile.server import CLIENT_ID, CLIENT_SECRET, District, HostileProvider

from .sync_harness import SyncHarness, check_evaluation

PEOPLE, TWO_SCHOOLS, SCHOOLS = 2400, 206, 4


class EdFiDistrict(District):
    """2,400 people, 206 of them enrolled in two schools (their secondary school listed first in roles[])."""

    def __init__(self) -> None:
        super().__init__(schools=SCHOOLS, students=PEOPLE)
        self.left_second_school: set[int] = set()

    def schools_of(self, n: int) -> tuple[str, str | None]:
        primary = f"sch-{n % SCHOOLS + 1}"
        second = f"sch-{(n + 1) % SCHOOLS + 1}" if n <= TWO_SCHOOLS and n not in self.left_second_school else None
        return primary, second

    def students_list(self) -> list[dict]:
        records = []
        for n in range(1, PEOPLE + 1):
            primary, second = self.schools_of(n)
            roles = [{"roleType": "primary", "role": "student", "org": {"sourcedId": primary, "type": "org"}}]
            if second:
                roles.insert(0, {"roleType": "secondary", "role": "student", "org": {"sourcedId": second,
                                                                                     "type": "org"}})
            for school in (primary, second) if second else (primary,):
                records.append({
                    "sourcedId": hashlib.md5(f"{n}-{school}".encode()).hexdigest(), "status": "active",
                    "dateLastModified": "2025-01-01T00:00:00Z", "username": "", "enabledUser": "true",
                    "givenName": f"Given{n}", "familyName": f"Family{n}", "identifier": f"{100000 + n}",
                    "email": f"p{n}@example.org", "grades": ["07"], "roles": roles})
        return sorted(records, key=lambda r: r["sourcedId"])


def edfi_pages(provider: HostileProvider):
    """Ed-Fi's paging: the records of the page, no count, no Link."""
    def serve(seen, handler):
        if not seen.path.endswith("/students"):
            return False
        offset, limit = int(seen.query.get("offset", 0)), int(seen.query.get("limit", 100))
        handler.send_json(200, {"users": provider.district.students_list()[offset:offset + limit]})
        return True
    return serve


def oneroster(provider: HostileProvider, provider_name: str = "edfi", **extra) -> OneRosterResource:
    return OneRosterResource(provider=provider_name, base_url=provider.base_url, auth="oauth2",
                             token_url=provider.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                             max_retries=1, backoff_seconds=0, **extra)


def test_edfi_people_in_two_schools_are_one_student_each_in_their_primary_building(tmp_path):
    district = EdFiDistrict()
    with HostileProvider(district) as provider:
        provider.behaviour = edfi_pages(provider)
        harness = SyncHarness(tmp_path, oneroster(provider))
        result = harness.run("full_sync")
        active = dict(harness.rows("SELECT sourced_id, building_sis FROM students WHERE status = 'active'"))
        assert len(active) == PEOPLE  # not 2,606
        assert all(active[f"{100000 + n}"] == district.schools_of(n)[0] for n in range(1, PEOPLE + 1))
        links = dict(harness.rows("SELECT sourced_id, count(*) FROM student_buildings GROUP BY ALL"))
        assert sum(1 for n in links.values() if n == 2) == TWO_SCHOOLS  # the second school is recorded
        [students] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["students"]]
        metadata = students.materialization.metadata
        assert metadata["people_in_several_records"].value == TWO_SCHOOLS
        assert metadata["merged_by"].value == "identifier"
        merged = check_evaluation(result, "one_student_per_person")
        assert merged.passed and merged.metadata["people_in_several_records"].value == TWO_SCHOOLS
        ids_before = dict(harness.rows("SELECT sourced_id, student_id FROM students"))

        district.left_second_school = set(range(1, 21))  # 20 people leave their second school
        assert harness.run("student_sync", tags={"oneroster/sync_mode": "full"}).success
        after = dict(harness.rows("SELECT sourced_id, building_sis FROM students WHERE status = 'active'"))
    assert after == active  # nobody deactivated, nobody moved building
    assert dict(harness.rows("SELECT sourced_id, student_id FROM students")) == ids_before
    assert harness.scalar("SELECT count(*) FROM student_changes WHERE change = 'deactivate'") == 0


@pytest.mark.parametrize("person_key", ["none"])
def test_people_in_several_records_are_a_warning_when_not_merged(tmp_path, person_key):
    with HostileProvider(EdFiDistrict()) as provider:
        provider.behaviour = edfi_pages(provider)
        harness = SyncHarness(tmp_path, oneroster(provider, "oneroster", person_key=person_key))
        result = harness.run("full_sync")
    check = check_evaluation(result, "one_student_per_person")
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["people_in_several_records"].value == TWO_SCHOOLS
    assert "ONEROSTER_PERSON_KEY" in check.description
    assert harness.scalar("SELECT count(*) FROM students WHERE status = 'active'") == PEOPLE + TWO_SCHOOLS
