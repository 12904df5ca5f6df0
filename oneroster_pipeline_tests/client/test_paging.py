"""Paging over real HTTP: server caps, missing paging headers, off-by-one links, overlaps, retries under storms."""

from __future__ import annotations

import time

import pytest

from oneroster_pipeline.client.errors import OneRosterConnectionError, OneRosterDataError
from oneroster_pipeline.client.paging import Page, Pager, PullReport
from oneroster_pipeline.client.sources import open_source

from .client_fixtures import PAGE_SIZE, api_requests, concat, expected_student_ids, serve, settings_for


def pull(provider, version: str = "1.2", **overrides):
    """(sorted student ids, the pull's report) from a full student pull."""
    with open_source(settings_for(provider, version, **overrides)) as source:
        ids = concat(source.student_batches()).column("sourced_id").to_pylist()
        return ids, source.reports["students"]


@pytest.mark.parametrize("quirks", [set(), {"no_total_count"}, {"no_link"}, {"no_total_count", "no_link"},
                                    {"link_off_by_one"}, {"link_off_by_one", "no_total_count"}])
def test_server_page_cap_below_the_limit_returns_every_record_exactly_once(quirks):
    with serve(auth="none", page_cap=15, quirks=quirks) as provider:
        ids, report = pull(provider)
        assert ids == expected_student_ids(provider)  # sorted, so a duplicate or a gap would show
        assert report.complete and report.duplicates == 0 and report.served_page_size == 15
        offsets = sorted(int(e.query["offset"]) for e in api_requests(provider))  # concurrent: any order
        assert offsets[:3] == [0, 15, 30]  # the count received drives the next offset, not the asked limit
        assert all(e.query["limit"] == str(PAGE_SIZE) for e in api_requests(provider))
        assert report.pages <= len(ids) // 15 + 2  # at most one confirming request beyond the data


@pytest.mark.parametrize("quirks", [set(), {"no_total_count", "no_link"}])
def test_paging_stops_on_the_signal_the_server_offers(quirks):
    with serve(auth="none", quirks=quirks) as provider:
        ids, report = pull(provider)
        n = len(expected_student_ids(provider))
        assert ids == expected_student_ids(provider) and report.received == n
        assert report.pages == -(-n // PAGE_SIZE)  # a short last page ends it: no extra empty request
        assert report.reported_total == (None if quirks else n) and report.complete


def test_link_without_next_ends_the_pull():
    with serve(auth="none", quirks={"no_total_count"}) as provider:
        n = len(expected_student_ids(provider))
        ids, report = pull(provider, page_size=n // 2)  # two full pages: only the Link says the second is last
        assert len(ids) == n and report.pages == 2 + (n % 2) and report.complete


def test_records_shifted_between_pages_are_deduplicated_and_reported():
    with serve(auth="none") as provider, open_source(settings_for(provider)) as source:
        batches = source.student_batches()
        first = next(batches)
        provider.district.add_school("Late Addition Academy")  # new students sort in before later pages
        ids = first.column("sourced_id").to_pylist() + concat(batches).column("sourced_id").to_pylist()
        report = source.reports["students"]
        assert len(ids) == len(set(ids)) == report.rows
        assert report.duplicates > 0 and set(report.duplicate_sample) <= set(ids)
        assert report.first_reported_total < report.reported_total
        assert report.received == report.rows + report.duplicates
        # the added students sorted in before the offset already passed were never sent: flagged, not hidden
        assert not report.complete and "never came" in report.incomplete_reason


@pytest.mark.parametrize("knob", [{"rate_limit_every": 3}, {"error_5xx_every": 4},
                                  {"rate_limit_every": 2, "error_5xx_every": 5}])
def test_429_and_5xx_storms_are_retried_with_exact_counts(knob):
    with serve(auth="oauth2", page_cap=20, **knob) as provider:
        # one request at a time: the storm's "every Nth request fails" then never lands on one page's retries in
        # lockstep with other workers (concurrent retries under 429s: test_politeness.py)
        ids, report = pull(provider, max_retries=5, max_concurrency=1)
        assert ids == expected_student_ids(provider) and report.duplicates == 0 and report.complete
        statuses = [e.status for e in api_requests(provider)]
        assert set(statuses) - {200} and statuses[-1] == 200


def test_queued_faults_within_the_retry_budget_are_recovered():
    with serve(auth="none") as provider, open_source(settings_for(provider, max_retries=3)) as source:
        batches = source.student_batches()
        ids = next(batches).column("sourced_id").to_pylist()
        provider.faults.fail_next(3, status=502, body="html")
        ids += concat(batches).column("sourced_id").to_pylist()
        assert sorted(ids) == expected_student_ids(provider)
        assert [e.status for e in api_requests(provider)][1:5] == [502, 502, 502, 200]


def test_retry_after_is_respected():
    with serve(auth="none") as provider:
        provider.faults.fail_next(1, status=429, body="imsx", retry_after=1)
        started = time.monotonic()
        ids, _ = pull(provider, max_retries=2)
        assert time.monotonic() - started >= 0.9 and ids == expected_student_ids(provider)


def test_refused_sort_is_dropped_and_a_profile_without_sort_never_sends_it():
    with serve(auth="none", quirks={"reject_sort"}) as provider:
        ids, report = pull(provider)
        assert ids == expected_student_ids(provider) and report.sorted_by is None
        assert [e.status for e in api_requests(provider)][0] == 400
        provider.clear_request_log()
        with open_source(settings_for(provider, auth="bearer", env={"ONEROSTER_PROVIDER": "classlink"})) as source:
            list(source.org_batches())
        assert all("sort" not in e.query for e in api_requests(provider))


def _page(offset: int, ids: list[str], total: int | None = None) -> Page:
    return Page(offset, [{"sourcedId": i} for i in ids], total, None, "http://h/students")


def test_a_server_ignoring_offset_is_an_error_not_an_endless_loop():
    pager = Pager(2, PullReport("students", "/students", 2))
    pager.accept(_page(0, ["a", "b"]))
    with pytest.raises(OneRosterDataError, match="ignores offset"):
        pager.accept(_page(2, ["a", "b"]))


def test_the_number_of_pages_is_bounded():
    pager = Pager(1, PullReport("students", "/students", 1), max_pages=3)
    pager.accept(_page(0, ["a"]))
    pager.accept(_page(1, ["b"]))
    with pytest.raises(OneRosterDataError, match="more than 3 pages"):
        pager.accept(_page(2, ["c"]))


def test_a_total_never_reached_is_reported_incomplete():
    report = PullReport("students", "/students", 2)
    pager = Pager(2, report)
    pager.accept(_page(0, ["a", "b"], total=5))
    pager.accept(_page(2, [], total=5))
    assert pager.done and not report.complete and "reported 5" in report.incomplete_reason


@pytest.mark.parametrize("knob", [{}, {"page_cap": 7, "rate_limit_every": 4, "error_5xx_every": 7}])
def test_concurrent_page_fetching_returns_every_record_exactly_once(knob):
    with serve(auth="oauth2", latency_ms=60, **knob) as provider:
        started = time.monotonic()
        ids, report = pull(provider, page_size=10, max_concurrency=4)
        elapsed = time.monotonic() - started
        assert ids == expected_student_ids(provider) and report.duplicates == 0 and report.complete
        if not knob:  # 15 pages of 60 ms each: sequential would take at least 0.9 s
            assert report.pages == 15 and elapsed < 0.75


def test_concurrent_pull_survives_token_expiry():
    with serve(auth="oauth2", latency_ms=20) as provider, \
            open_source(settings_for(provider, page_size=10, max_concurrency=3)) as source:
        ids = []
        for n, batch in enumerate(source.student_batches()):
            ids += batch.column("sourced_id").to_pylist()
            if n == 2:
                provider.expire_tokens()  # requests already in flight and new ones all meet a 401 once
        assert sorted(ids) == expected_student_ids(provider)
        assert 401 in [e.status for e in api_requests(provider)] and source.reports["students"].complete
        assert len([e for e in provider.request_log if e.path.endswith("/oauth2/token")]) == 2  # one refresh


def test_read_timeouts_are_retried_then_reported():
    with serve(auth="none", latency_ms=400) as provider:
        with pytest.raises(OneRosterConnectionError, match="timed out") as info, \
                open_source(settings_for(provider, timeout_seconds=0.1, max_retries=1)) as source:
            list(source.org_batches())
        assert provider.base_url("1.2") + "/orgs" in str(info.value)
        time.sleep(0.5)  # let the server finish answering the abandoned requests
        assert len(api_requests(provider)) == 2  # the first try and one retry


def test_seen_ids_table_matches_a_set_through_growth_and_repeats_within_a_page():
    import random

    from oneroster_pipeline.client.paging import SeenIds

    rng, seen, reference = random.Random(5), SeenIds(capacity=8), set()
    for _ in range(200):
        ids = [f"id-{rng.randrange(5000)}" for _ in range(rng.randrange(0, 120))]
        expected = []
        for sourced_id in ids:
            expected.append(sourced_id not in reference)
            reference.add(sourced_id)
        assert list(seen.add(ids)) == expected
    assert len(seen) == len(reference)


def test_duplicates_within_one_page_are_counted_once_each():
    report = PullReport("students", "/students", 5)
    pager = Pager(5, report)
    kept = pager.accept(_page(0, ["a", "b", "a", "c", "b"], total=5))
    assert [r["sourcedId"] for r in kept] == ["a", "b", "c"]
    assert report.duplicates == 2 and report.duplicate_sample == ["a", "b"]
