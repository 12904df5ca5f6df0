"""A data revision that changes mid-pull (issue 25, item 1): ClassLink sends `x-perm-rev` on every page; when it
changes while a pull pages, the pull restarts from the first page (a bounded number of times, then fails naming the
revisions), so records that moved between pages never deactivate anybody."""

from __future__ import annotations

import dagster as dg

from oneroster_pipeline.defs.resources import OneRosterResource
from oneroster_pipeline_tests.hostile.server import CLIENT_ID, CLIENT_SECRET, District, HostileProvider, student

from .sync_harness import SyncHarness

STUDENTS, PAGE = 600, 100


def oneroster(provider: HostileProvider, **extra) -> OneRosterResource:
    return OneRosterResource(provider="oneroster", base_url=provider.base_url, auth="oauth2",
                             token_url=provider.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                             page_size=PAGE, max_concurrency=1, max_retries=1, backoff_seconds=0, **extra)


def revised(district: District) -> list[dict]:
    """The district after a revision: 15 students of the first page withdrawn, 15 new ones enrolled at the end
    (the total stays the same)."""
    kept = [s for s in district.students_list() if not 10 <= int(s["sourcedId"][4:]) < 25]
    return kept + [student(n, "sch-1") for n in range(STUDENTS + 1, STUDENTS + 16)]


def change_revision_after_first_page(provider: HostileProvider, times: int = 1):
    """A behaviour that, the first `times` pulls, swaps in the revised district (and a new revision) right after
    the first page of students was served."""
    state = {"changes": 0}

    def behaviour(seen, handler):
        if seen.path.endswith("/students") and seen.query.get("offset") == "0" and state["changes"] < times:
            provider.honest(seen, handler)  # page 1 from the revision the pull started on
            state["changes"] += 1
            provider.students = revised(provider.district) if state["changes"] % 2 else None
            provider.revision = f"rev-{state['changes'] + 1}"
            return True
        return False
    return behaviour


def active_ids(harness: SyncHarness) -> set[str]:
    return {sid for (sid,) in harness.rows("SELECT sourced_id FROM students WHERE status = 'active'")}


def test_a_revision_change_mid_pull_restarts_the_pull_and_deactivates_only_the_withdrawn(tmp_path):
    with HostileProvider(District(schools=3, students=STUDENTS)) as provider:
        provider.revision = "rev-1"
        harness = SyncHarness(tmp_path, oneroster(provider))
        assert harness.run("full_sync").success
        before = active_ids(harness)
        assert len(before) == STUDENTS

        provider.behaviour = change_revision_after_first_page(provider)
        result = harness.run("full_sync", tags={"oneroster/sync_mode": "full"})
        assert result.success
        expected = {s["sourcedId"] for s in revised(provider.district)}
    assert active_ids(harness) == expected  # the 15 withdrawn deactivated, the 15 enrolled added, nobody else
    report = harness.rows("SELECT revision, complete FROM pull_reports WHERE collection = 'students' "
                          "ORDER BY fetched_at DESC LIMIT 1")
    assert report == [("rev-2", True)]


def test_a_revision_that_keeps_changing_fails_the_pull_naming_the_revisions(tmp_path):
    with HostileProvider(District(schools=3, students=STUDENTS)) as provider:
        provider.revision = "rev-1"
        harness = SyncHarness(tmp_path, oneroster(provider, max_revision_restarts=2))
        assert harness.run("full_sync").success
        before = harness.rows("SELECT * FROM students ORDER BY student_id")

        provider.behaviour = change_revision_after_first_page(provider, times=10)
        result = harness.run("full_sync", raise_on_error=False, tags={"oneroster/sync_mode": "full"})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.to_string()
    assert "x-perm-rev" in message and "rev-3" in message and "ONEROSTER_MAX_REVISION_RESTARTS" in message
    assert harness.rows("SELECT * FROM students ORDER BY student_id") == before  # nothing applied
