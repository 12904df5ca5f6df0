"""Paging as real providers publish it (issue 25): counts and the next page in the body (Focus SIS: `total` and
`pagination.next`; Timeback: `totalCount`), and Ed-Fi's API with no count at all (a short page ends it). Served by
an independent loopback server shaped after each provider."""

from __future__ import annotations

import pytest

from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline_tests.hostile.server import District, HostileProvider

STUDENTS = 230


def body_paged(provider: HostileProvider, shape: str):
    """A behaviour serving /students in the provider's own body shape, with no X-Total-Count and no Link."""
    records = provider.district.students_list()

    def serve(seen, handler):
        if not seen.path.endswith("/students"):
            return False
        offset, limit = int(seen.query.get("offset", 0)), min(int(seen.query.get("limit", 100)), 100)
        batch = records[offset:offset + limit]
        body: dict = {"users": batch}
        if shape == "focus":
            nxt = f"/students?offset={offset + limit}&limit={limit}" if offset + limit < len(records) else None
            body.update(total=len(records), count=len(batch), limit=limit, offset=offset,
                        pagination={"first": "/students?offset=0", "previous": None, "current": seen.path,
                                    "next": nxt, "last": None})
        elif shape == "timeback":
            body.update(totalCount=len(records), pageCount=-(-len(records) // limit), pageNumber=offset // limit + 1)
        handler.send_json(200, body)  # edfi: the records alone
        return True
    return serve


@pytest.mark.parametrize("shape, provider_name", [("focus", "oneroster"), ("timeback", "oneroster"),
                                                  ("edfi", "edfi")])
def test_body_paged_and_countless_providers_are_pulled_whole(shape, provider_name):
    with HostileProvider(District(schools=3, students=STUDENTS)) as provider:
        provider.behaviour = body_paged(provider, shape)
        env = provider.env(ONEROSTER_PROVIDER=provider_name, ONEROSTER_PAGE_SIZE="100")
        with open_source(ConnectionSettings.from_env(env)) as source:
            ids = [r["sourced_id"] for b in source.student_batches() for r in b.to_pylist()]
            report = source.reports["students"]
        requested = len(provider.api_requests())
    assert sorted(ids) == sorted(s["sourcedId"] for s in provider.district.students_list())
    assert report.complete and report.duplicates == 0
    if shape == "edfi":
        assert report.reported_total is None and requested == 3  # the third page is short: the end
    else:
        assert report.reported_total == STUDENTS and requested == 3  # the count said when to stop


def test_the_edfi_profile_merges_people_by_identifier_by_default():
    settings = ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "edfi", "ONEROSTER_BASE_URL":
                                            "https://edfi.example.org/oneroster/ims/oneroster/rostering/v1p2",
                                            "ONEROSTER_AUTH": "none"})
    assert settings.person_key == "identifier" and settings.page_size == 500
    assert ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "edfi", "ONEROSTER_AUTH": "none", "ONEROSTER_PERSON_KEY":
                                        "none", "ONEROSTER_BASE_URL": settings.base_url}).person_key is None
