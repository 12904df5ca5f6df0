"""Hostile and broken providers, against the client over real HTTP on loopback (issue 24, items 1 and 3-6): no
credential follows a redirect to another origin, every pull and every body is bounded, a drip is cut at the
request deadline, and one undecodable record is confined to itself."""

from __future__ import annotations

import functools
import itertools
import json
import random
import subprocess
import sys
import time
import zlib

import pytest

from oneroster_pipeline.client.errors import OneRosterConnectionError, OneRosterDataError, OneRosterRedirectRefused
from oneroster_pipeline.client.paging import PullBoundExceeded
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.warehouse.pulls import completeness_verdict

from .server import BASE_PATH, CLIENT_SECRET, TOKEN_PATH, HostileProvider, student


def settings(provider: HostileProvider, **extra: str) -> ConnectionSettings:
    return ConnectionSettings.from_env(provider.env(**extra)).with_overrides(backoff_jitter_seconds=0.0)


def pull_students(provider: HostileProvider, **extra: str):
    """(student rows, the pull's report, its rejections)."""
    with open_source(settings(provider, **extra)) as source:
        rows = [row for batch in source.student_batches() for row in batch.to_pylist()]
        return rows, source.reports["students"], list(source.rejections)


def credentials_in(seen) -> list[str]:
    """Whatever credential a recorded request carried: its Authorization header, and a form body's secret."""
    found = [seen.headers[h] for h in seen.headers if h.lower() == "authorization"]
    if CLIENT_SECRET.encode() in seen.body or b"Secret%2BValue" in seen.body:
        found.append("client_secret in the body")
    return found


# ---- 1. credentials are bound to their origin --------------------------------------------------------------------
@pytest.mark.parametrize("status", [302, 307])
def test_a_page_redirected_to_another_host_is_refused_and_gets_no_credential(status):
    with HostileProvider() as provider, HostileProvider() as elsewhere:
        def redirect(seen, handler):
            if seen.path.endswith("/students"):
                handler.redirect(status, elsewhere.base_url + "/students?offset=0")
                return True
            return False

        provider.behaviour = redirect
        with pytest.raises(OneRosterRedirectRefused) as refused:
            pull_students(provider)
        assert elsewhere.requests == []  # nothing at all reached the other host
        message = str(refused.value)
        assert provider.origin in message and elsewhere.origin in message and "ONEROSTER_BASE_URL" in message


def test_a_token_request_redirected_to_another_host_never_resends_the_secret():
    with HostileProvider() as provider, HostileProvider() as elsewhere:
        provider.behaviour = lambda seen, handler: seen.path == TOKEN_PATH and (
            handler.redirect(307, elsewhere.token_url) or True)
        with pytest.raises(OneRosterRedirectRefused) as refused:
            pull_students(provider)
        assert elsewhere.requests == []
        assert elsewhere.origin in str(refused.value)


def test_a_same_origin_redirect_is_followed_with_its_credentials():
    with HostileProvider() as provider:
        def moved(seen, handler):
            if seen.path.startswith("/old/"):  # the whole API and the token URL moved on the same host
                query = "&".join(f"{k}={v}" for k, v in seen.query.items())
                handler.redirect(301 if seen.method == "GET" else 307, seen.path.removeprefix("/old") + "?" + query)
                return True
            return False

        provider.behaviour = moved
        rows, report, _ = pull_students(provider, ONEROSTER_BASE_URL=provider.origin + "/old" + BASE_PATH,
                                        ONEROSTER_TOKEN_URL=provider.origin + "/old" + TOKEN_PATH)
        assert len(rows) == provider.district.students and report.complete
        tokens = [r for r in provider.requests if r.path == TOKEN_PATH]
        assert tokens and all(credentials_in(r) for r in tokens)  # the 307 resent the token request to its origin
        pages = [r for r in provider.requests if r.path == BASE_PATH + "/students"]
        assert pages and all(credentials_in(r) for r in pages)


# ---- 3. a provider that never stops is stopped -------------------------------------------------------------------
def test_the_same_records_shuffled_forever_stop_at_the_no_progress_bound():
    with HostileProvider() as provider:
        records = provider.district.students_list()[:50]

        def shuffled(seen, handler):
            if not seen.path.endswith("/students"):
                return False
            handler.send_json(200, {"users": random.sample(records, len(records))})  # no total, never short
            return True

        provider.behaviour = shuffled
        started = time.monotonic()
        with pytest.raises(PullBoundExceeded) as stopped:
            pull_students(provider, ONEROSTER_MAX_PAGES_WITHOUT_PROGRESS="5")
        assert "ONEROSTER_MAX_PAGES_WITHOUT_PROGRESS" in str(stopped.value)
        assert len(provider.api_requests()) <= 1 + 5 + 1 and time.monotonic() - started < 30


def test_unique_records_with_a_growing_total_stop_beyond_the_first_total():
    with HostileProvider() as provider:
        def growing(seen, handler):
            if not seen.path.endswith("/students"):
                return False
            offset, limit = int(seen.query["offset"]), int(seen.query["limit"])
            batch = [student(n, "sch-1") for n in range(offset + 1, offset + limit + 1)]
            handler.send_json(200, {"users": batch}, {"X-Total-Count": str(offset + 2 * limit)})
            return True

        provider.behaviour = growing
        with pytest.raises(PullBoundExceeded) as stopped:
            pull_students(provider, ONEROSTER_MAX_RECORDS_BEYOND_TOTAL="500")
        assert "ONEROSTER_MAX_RECORDS_BEYOND_TOTAL" in str(stopped.value)
        assert len(provider.api_requests()) <= 500 // 50 + 3


def test_a_link_next_that_never_ends_stops_at_the_record_bound():
    with HostileProvider() as provider:
        def endless(seen, handler):
            if not seen.path.endswith("/students"):
                return False
            offset, limit = int(seen.query["offset"]), int(seen.query["limit"])
            batch = [student(n, "sch-1") for n in range(offset + 1, offset + limit + 1)]
            nxt = f"<{provider.base_url}/students?limit={limit}&offset={offset + limit}>; rel=\"next\""
            handler.send_json(200, {"users": batch}, {"Link": nxt})
            return True

        provider.behaviour = endless
        with pytest.raises(PullBoundExceeded) as stopped:
            pull_students(provider, ONEROSTER_MAX_RECORDS="2000")
        assert "ONEROSTER_MAX_RECORDS" in str(stopped.value)
        assert len(provider.api_requests()) <= 2000 // 50 + 3


# ---- 4. unbounded bodies -----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def gzip_bomb(size: int) -> bytes:
    """A gzip body of a JSON page that is `size` bytes of blanks once inflated (made without holding them)."""
    packer, blank = zlib.compressobj(9, zlib.DEFLATED, 31), b" " * (1 << 20)
    parts = [packer.compress(b'{"users": [')] + [packer.compress(blank) for _ in range(size >> 20)]
    return b"".join(parts + [packer.compress(b"]}"), packer.flush()])


def _students_only(answer):
    def behaviour(seen, handler):
        if not seen.path.endswith("/students"):
            return False
        answer(handler)
        return True
    return behaviour


def test_an_endless_chunked_array_is_cut_at_the_page_size_bound():
    record = json.dumps(student(1, "sch-1")).encode()
    with HostileProvider() as provider:
        provider.behaviour = _students_only(lambda handler: handler.send_chunks(
            itertools.chain([b'{"users": ['], itertools.repeat(record + b",", 10_000_000))))
        with pytest.raises(OneRosterDataError) as refused:
            pull_students(provider, ONEROSTER_MAX_PAGE_MB="4")
        assert "ONEROSTER_MAX_PAGE_MB" in str(refused.value) and "4 MB" in str(refused.value)


def test_a_gzip_bomb_is_cut_after_decompression():
    bomb = gzip_bomb(1 << 30)  # ~1 MB that inflates to 1 GB
    with HostileProvider() as provider:
        provider.behaviour = _students_only(
            lambda handler: handler.send_body(200, bomb, headers={"Content-Encoding": "gzip"}))
        with pytest.raises(OneRosterDataError) as refused:
            pull_students(provider, ONEROSTER_MAX_PAGE_MB="8")
        assert "once decompressed" in str(refused.value)


# ---- 5. a slow drip is cut at the request deadline ---------------------------------------------------------------
@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_drip_is_cut_at_the_request_deadline(where):
    body = json.dumps({"users": [student(1, "sch-1")]}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)

    def drip(handler):
        if where == "body":
            handler.wfile.write(head)
            handler.drip(body, 0.3)
        else:
            handler.drip(head + body, 0.3)

    with HostileProvider() as provider:
        provider.behaviour = _students_only(drip)
        started = time.monotonic()
        with pytest.raises(OneRosterConnectionError) as cut:
            pull_students(provider, ONEROSTER_TIMEOUT_SECONDS="2", ONEROSTER_REQUEST_DEADLINE_SECONDS="3",
                          ONEROSTER_MAX_RETRIES="3")
        took = time.monotonic() - started
        assert cut.value.kind == "deadline" and "ONEROSTER_REQUEST_DEADLINE_SECONDS" in str(cut.value)
        assert took < 8, took  # one attempt's deadline, not retried (each retry would drip again)


# ---- 6. one bad record is confined to itself ---------------------------------------------------------------------
def test_undecodable_records_are_rejected_alone_and_the_pull_is_incomplete():
    with HostileProvider() as provider:
        good = provider.district.students_list()

        def broken(seen, handler):
            if not seen.path.endswith("/students"):
                return False
            offset, limit = int(seen.query["offset"]), int(seen.query["limit"])
            parts = [json.dumps(r).encode() for r in good[offset:offset + limit]]
            if offset == 0:
                parts[1] = parts[1].replace(b'"Given2"', b'"Giv\xffen2"')  # an invalid UTF-8 byte
                parts[2] = parts[2].replace(b'"grades"', b'"metadata": ' + b"[" * 10_000 + b"]" * 10_000 +
                                            b', "grades"')  # nested 10,000 deep
                parts[3] = parts[3].replace(b'"Family4"', b'"Fam\\ud800ily4"')  # a lone surrogate
            handler.send_body(200, b'{"users": [' + b", ".join(parts) + b"]}",
                              headers={"X-Total-Count": str(len(good))})
            return True

        provider.behaviour = broken
        rows, report, rejections = pull_students(provider)
    ids = {r["sourced_id"] for r in rows}
    assert ids == {r["sourcedId"] for r in good} - {"stu-00002", "stu-00003", "stu-00004"}
    found = {(r.field, r.reason.split(" (")[0]) for r in rejections}
    assert found == {("givenName", "holds bytes that are not valid UTF-8"),
                     ("metadata", "is JSON nested too deep to decode"),
                     ("familyName", "holds a lone surrogate")}, found
    assert all("sourcedId 'stu-0000" in r.location for r in rejections)
    verdict = completeness_verdict(report, rejections)
    assert not verdict.complete and "3 rejected record(s)" in verdict.reason  # nobody deactivated by absence


def test_a_page_that_cannot_be_split_fails_the_pull_naming_the_page():
    with HostileProvider() as provider:
        provider.behaviour = _students_only(lambda handler: handler.send_body(200, b'{"users": [{"sourcedId": "a"'))
        with pytest.raises(OneRosterDataError) as failed:
            pull_students(provider)
        assert "/students" in str(failed.value) and "cannot be split into records" in str(failed.value)


CHILD_PULL = """
import json, re, sys
from oneroster_pipeline.client.errors import OneRosterError
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source
try:
    with open_source(ConnectionSettings.from_env(json.loads(sys.argv[1]))) as source:
        for _ in source.student_batches():
            pass
    outcome = "finished"
except OneRosterError as error:
    outcome = str(error)
# this process's own peak (getrusage's ru_maxrss would carry the forking parent's peak across exec)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"outcome": outcome, "max_rss_mb": peak_kb / 1024}))
"""


@pytest.mark.parametrize("body", ["a 300 MB page", "a gzip bomb of 1 GB", "an endless chunked array"])
def test_an_unbounded_body_stays_far_below_600_mb_with_the_default_bound(body):
    record = json.dumps(student(1, "sch-1")).encode()
    answers = {
        "a 300 MB page": lambda h: h.send_body(200, b'{"users": [' + b",".join([record] * (300_000_000 // len(record)))
                                               + b"]}"),
        "a gzip bomb of 1 GB": lambda h: h.send_body(200, gzip_bomb(1 << 30), headers={"Content-Encoding": "gzip"}),
        "an endless chunked array": lambda h: h.send_chunks(
            itertools.chain([b'{"users": ['], itertools.repeat(record + b",", 100_000_000))),
    }
    if "gzip" in body:  # made before the server answers: compressing 1 GB takes seconds on a busy machine, longer
        gzip_bomb(1 << 30)  # than the client's read timeout
    with HostileProvider() as provider:
        provider.behaviour = _students_only(answers[body])
        done = subprocess.run([sys.executable, "-c", CHILD_PULL, json.dumps(provider.env())], check=False,
                              capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "ONEROSTER_MAX_PAGE_MB" in result["outcome"], result
    assert result["max_rss_mb"] < 600, result
