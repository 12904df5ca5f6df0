"""Provider politeness over real HTTP: concurrency per provider and time of day, slowing down on 429, smaller pages
after read timeouts; and privacy: only the fields we normalise are asked for, a `password` never gets through."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone

import pytest

from oneroster_pipeline.client.rest import USER_FIELDS
from oneroster_pipeline.client.settings import ConnectionSettings, SettingsError
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

from .client_fixtures import FAST, SHAPE, api_requests, concat, expected_student_ids, serve, settings_for


class ObservedProvider(DemoProvider):
    """The demo provider, recording when each API request started and ended and how many were in flight; with
    optional hooks to slow a request down or to change a JSON answer."""

    def __init__(self, *args, slow=None, rewrite=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slow, self.rewrite = slow, rewrite  # slow(query) -> seconds; rewrite(payload) -> payload
        self.calls: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()

    def handle(self, method, target, headers, body):
        if "/oauth2/token" in target:
            return super().handle(method, target, headers, body)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            call = {"start": time.monotonic(), "target": target, "in_flight": self.in_flight}
            self.calls.append(call)
        try:
            if self.slow is not None:
                time.sleep(self.slow(target))
            response = super().handle(method, target, headers, body)
            if self.rewrite is not None and response.status == 200:
                response.body = json.dumps(self.rewrite(json.loads(response.body))).encode()
            call["status"] = response.status
            return response
        finally:
            call["end"] = time.monotonic()
            with self._lock:
                self.in_flight -= 1


def observed(**settings) -> ObservedProvider:
    slow, rewrite = settings.pop("slow", None), settings.pop("rewrite", None)
    settings.setdefault("retry_after", 0)
    return ObservedProvider(SHAPE, DemoSettings(**settings), slow=slow, rewrite=rewrite)


def student_pull(settings):
    with open_source(settings) as source:
        ids = concat(source.student_batches()).column("sourced_id").to_pylist()
        return ids, source.reports["students"]


# ---- concurrency per provider and time of day ---------------------------------------------------------------------
IC_ENV = {"ONEROSTER_PROVIDER": "infinite_campus", "ONEROSTER_BASE_URL": "https://ic.example/campus/api/ims/oneroster/v1p1",
          "ONEROSTER_TOKEN_URL": "https://ic.example/campus/oauth2/token?appName=district",
          "ONEROSTER_CLIENT_ID": "id", "ONEROSTER_CLIENT_SECRET": "secret"}


def test_default_concurrency_per_provider():
    assert ConnectionSettings().max_concurrency == 8  # demo
    generic = ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_AUTH": "none",
                                           "ONEROSTER_BASE_URL": "https://x.example/ims/oneroster/v1p1"})
    assert generic.max_concurrency == 8 and generic.concurrency_at() == 8 and generic.peak_hours is None
    classlink = ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "classlink", "ONEROSTER_CLIENT_ID": "k",
                                             "ONEROSTER_CLIENT_SECRET": "s",
                                             "ONEROSTER_BASE_URL": "https://x.example/ims/oneroster/v1p1"})
    assert classlink.max_concurrency == 2
    ic = ConnectionSettings.from_env(IC_ENV)
    assert (ic.max_concurrency, ic.peak_concurrency, ic.peak_hours) == (5, 1, "mon-fri 07:00-16:00")


def test_infinite_campus_is_serial_in_school_hours_of_the_district_timezone():
    ic = ConnectionSettings.from_env({**IC_ENV, "ONEROSTER_TIMEZONE": "America/Chicago"})
    assert ic.district_timezone == "America/Chicago"  # the schedule's timezone, when no district timezone is set
    monday_9am_chicago = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)
    assert ic.in_peak_hours(monday_9am_chicago) and ic.concurrency_at(monday_9am_chicago) == 1
    assert ic.concurrency_at(datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)) == 5  # 17:00 in Chicago
    assert ic.concurrency_at(datetime(2026, 11, 30, 12, 30, tzinfo=timezone.utc)) == 5  # 06:30 in Chicago
    assert ic.concurrency_at(datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)) == 5  # a Sunday
    utc = ConnectionSettings.from_env(IC_ENV)
    assert utc.concurrency_at(monday_9am_chicago) == 1  # 15:00 UTC is school hours in UTC too
    custom = ConnectionSettings.from_env({**IC_ENV, "ONEROSTER_PEAK_HOURS": "daily 22:00-02:00",
                                          "ONEROSTER_DISTRICT_TIMEZONE": "Europe/London",
                                          "ONEROSTER_MAX_CONCURRENCY": "3"})
    assert custom.concurrency_at(datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc)) == 1
    assert custom.concurrency_at(datetime(2026, 11, 30, 1, 30, tzinfo=timezone.utc)) == 1  # across midnight
    assert custom.concurrency_at(datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)) == 3
    off = ConnectionSettings.from_env({**IC_ENV, "ONEROSTER_PEAK_HOURS": "none"})
    assert off.concurrency_at(monday_9am_chicago) == 5


@pytest.mark.parametrize("variable, value", [("ONEROSTER_PEAK_HOURS", "9 to 5"),
                                             ("ONEROSTER_PEAK_HOURS", "mon-fry 07:00-16:00"),
                                             ("ONEROSTER_DISTRICT_TIMEZONE", "Mars/Olympus"),
                                             ("ONEROSTER_PEAK_CONCURRENCY", "6")])
def test_bad_politeness_settings_name_the_variable(variable, value):
    with pytest.raises(SettingsError) as info:
        ConnectionSettings.from_env({**IC_ENV, variable: value})
    assert info.value.variable == variable


@pytest.mark.parametrize("peak_hours, expected", [("daily 00:00-23:59", 1), ("none", 5)])
def test_infinite_campus_pull_in_flight_follows_the_peak_window(peak_hours, expected):
    with observed(auth="oauth2", client_secret="s3cret", latency_ms=30) as provider:
        settings = ConnectionSettings.from_env({
            **IC_ENV, "ONEROSTER_BASE_URL": provider.base_url("1.2"), "ONEROSTER_CLIENT_ID": "demo-client",
            "ONEROSTER_CLIENT_SECRET": "s3cret", "ONEROSTER_TOKEN_URL": provider.token_url + "?appName=district",
            "ONEROSTER_PAGE_SIZE": "10", "ONEROSTER_PEAK_HOURS": peak_hours}).with_overrides(**FAST)
        ids, report = student_pull(settings)
        assert ids == expected_student_ids(provider) and report.complete
        assert report.concurrency == expected and provider.max_in_flight == expected


# ---- 429: fewer pages in flight, Retry-After honoured ---------------------------------------------------------------
def test_concurrency_backs_off_on_429_and_every_record_still_arrives():
    with observed(auth="none", latency_ms=30, rate_limit_every=5) as provider:
        ids, report = student_pull(settings_for(provider, page_size=10, max_concurrency=8))
        assert ids == expected_student_ids(provider)  # sorted: a gap or a duplicate would show
        assert report.complete and report.duplicates == 0
        assert report.rate_limited >= 1 and 429 in [c.get("status") for c in provider.calls]
        assert report.concurrency == 8 and report.lowest_concurrency <= 4  # halved at least once
        assert any("429" in event for event in report.events)
        assert provider.max_in_flight > 4  # it was busy before the provider pushed back


IN_FLIGHT = 0.05  # seconds: a loopback answer read, and the other workers' requests already sent meanwhile


def test_retry_after_holds_every_new_request():
    with observed(auth="none", latency_ms=10, rate_limit_every=7, retry_after=1) as provider:
        ids, report = student_pull(settings_for(provider, page_size=10, max_concurrency=4))
        assert ids == expected_student_ids(provider) and report.complete and report.rate_limited >= 1
        first_429 = next(c for c in provider.calls if c.get("status") == 429)
        started_after = [c["start"] - first_429["end"] for c in provider.calls if c["start"] > first_429["end"]]
        # a request the server starts within IN_FLIGHT of the 429's end was sent before the client read the 429
        # (the other workers' requests on their way); nothing sent afterwards comes before Retry-After has passed
        sent_after_the_429 = [delay for delay in started_after if delay > IN_FLIGHT]
        assert sent_after_the_429 and min(sent_after_the_429) > 0.8, started_after
        assert len(started_after) - len(sent_after_the_429) <= 3  # at most the 3 other workers' requests


# ---- read timeouts: half the page size, same offset -----------------------------------------------------------------
def _slow_big_pages(target: str) -> float:
    """Pages of more than 10 students from offset 40 take 0.6 s (the client waits 0.3 s)."""
    if "/students" not in target:
        return 0.0
    query = dict(part.split("=", 1) for part in target.split("?", 1)[1].split("&"))
    return 0.6 if int(query["offset"]) >= 40 and int(query["limit"]) > 10 else 0.0


@pytest.mark.parametrize("concurrency", [1, 4])
def test_read_timeouts_halve_the_page_size_and_retry_the_same_offset(concurrency):
    with observed(auth="none", slow=_slow_big_pages) as provider:
        settings = settings_for(provider, page_size=40, max_concurrency=concurrency, timeout_seconds=0.3,
                                max_retries=3)
        ids, report = student_pull(settings)
        assert ids == expected_student_ids(provider) and report.complete and report.duplicates == 0
        assert report.read_timeouts == 2 and report.page_size_reduced_to == 10
        assert report.events[:2] == ["read timeout at offset 40 with limit 40: retrying with limit 20",
                                     "read timeout at offset 40 with limit 20: retrying with limit 10"]
        at_40 = [c["target"] for c in provider.calls if "offset=40&" in c["target"] + "&"]
        assert ["limit=40" in at_40[0], any("limit=20" in t for t in at_40), "limit=10" in at_40[-1]] == [True] * 3
        time.sleep(0.7)  # let the provider finish the abandoned answers


def test_read_timeouts_beyond_the_retry_budget_are_an_error():
    with observed(auth="none", slow=lambda target: 0.6 if "/students" in target else 0.0) as provider:
        settings = settings_for(provider, page_size=40, timeout_seconds=0.3, max_retries=1)
        with open_source(settings) as source, pytest.raises(Exception, match="timed out") as info:
            list(source.student_batches())
        assert source.reports["students"].read_timeouts == 2 and "/students" in str(info.value)
        time.sleep(0.7)


# ---- privacy: fields=, no password, no payload in logs --------------------------------------------------------------
PASSWORD = "hunter2-PASSWORD-VALUE"


def _with_passwords(payload: dict) -> dict:
    for key in ("users", "students"):
        for user in payload.get(key, []):
            user["password"] = PASSWORD
    return payload


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_password_sent_by_the_provider_never_reaches_the_rows_or_the_logs(version):
    root, handler = logging.getLogger(), _ListHandler()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        given_name = _pull_with_passwords(version)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    text = "\n".join(handler.lines)
    assert "GET /" in text or "/students" in text  # the debug log was captured (urllib3 request lines)
    assert PASSWORD not in text and given_name not in text  # payloads are never logged


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _pull_with_passwords(version: str) -> str:
    with observed(auth="none", rewrite=_with_passwords) as provider:
        with open_source(settings_for(provider, version)) as source:
            table = concat(source.student_batches())
            report = source.reports["students"]
        assert sorted(table.column("sourced_id").to_pylist()) == expected_student_ids(provider)
        assert "password" not in table.column_names
        assert PASSWORD not in json.dumps(table.to_pylist(), default=str)
        assert report.fields == USER_FIELDS[version] and "password" not in report.fields
        assert all(e.query.get("fields") == USER_FIELDS[version] for e in api_requests(provider))
        return table.column("given_name")[0].as_py()


def test_a_server_refusing_fields_is_asked_without_them_once():
    with serve(auth="none", quirks={"reject_fields"}) as provider, \
            open_source(settings_for(provider, page_size=40)) as source:
        ids = concat(source.student_batches()).column("sourced_id").to_pylist()
        assert ids == expected_student_ids(provider)
        report = source.reports["students"]
        assert report.complete and report.fields is None and report.sorted_by == "sourcedId"
        assert [e.status for e in api_requests(provider)][:2] == [400, 200]
        list(source.org_batches())  # the next pull does not ask again
        statuses = [e.status for e in api_requests(provider)]
        assert statuses.count(400) == 1 and "fields" not in api_requests(provider)[-1].query


def test_classlink_persona_refusing_sort_and_fields_still_pulls_everything():
    with serve(auth="none", persona="classlink") as provider:
        ids, report = student_pull(settings_for(provider, page_size=40))
        assert ids == expected_student_ids(provider) and report.complete
        assert report.fields is None and report.sorted_by is None


def test_throttle_halves_once_per_episode_waits_and_grows_back():
    from oneroster_pipeline.client.paging import PullReport, Throttle

    report = PullReport("students", "/students", 10)
    throttle = Throttle(8, report)
    throttle.rate_limited(0.3)
    throttle.rate_limited(0.3)  # the same episode (requests already in flight): no second halving
    assert throttle.limit == 4 and report.rate_limited == 2 and report.lowest_concurrency == 4
    started = time.monotonic()
    throttle.wait()
    assert time.monotonic() - started >= 0.25  # Retry-After honoured before the next request
    for _ in range(Throttle.GROW_AFTER_PAGES * 4):
        throttle.answered()
    assert throttle.limit == 5  # one more after a calm run, never above the start
    for _ in range(1000):
        throttle.answered()
    assert throttle.limit == 8


def test_school_count_sends_one_request_when_the_total_is_known():
    with serve(auth="none") as provider, open_source(settings_for(provider, page_size=1)) as source:
        assert source.fetch_school_count() == len(provider.district.school_ids())
        time.sleep(0.1)
        assert len(api_requests(provider)) == 1  # no page was requested ahead for nothing
