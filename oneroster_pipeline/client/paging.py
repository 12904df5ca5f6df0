"""limit/offset paging that ends exactly once every record was received, whatever signals the server offers.

`fetch_page` does one GET and checks the envelope; `Pager` decides what comes next, knowing nothing of HTTP:
- the next offset is the previous one plus the records actually received (servers cap `limit` silently);
- the end is `X-Total-Count` reached when the server sends it, else the `Link` header without rel="next", else a
  page shorter than the server's page size (a short page before any full one may be a cap: one more request
  confirms it), and always an empty page;
- a page repeating the previous page's sourcedIds (a server ignoring offset) is an error, and pages are bounded;
- records are deduplicated by sourcedId within the pull; duplicates are counted with a sample in the `PullReport`.
Bounded concurrent fetching sits on top (rest.py): once the first page gives the total and the served page size,
the remaining offsets are known, are fetched in parallel and are fed to `Pager.accept` in offset order.
`PullReport` (what one pull saw) and `delta_filter` (the dateLastModified filter) serve the REST and CSV sources.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import requests

from .errors import OneRosterDataError
from .http import get_ok, parse_json
from .page_decode import Unsplittable, decode_page

MAX_PAGES = 100_000
# headers carrying the provider's data revision, which must not change while a pull pages (requests' headers are
# case-insensitive: X-Perm-Rev, x-perm-rev ...)
REVISION_HEADERS = ("x-perm-rev",)
DUPLICATE_SAMPLE = 10


def delta_filter(modified_since: datetime) -> str:
    """The OneRoster filter for records modified after `modified_since` (naive datetimes are taken as UTC)."""
    if modified_since.tzinfo is None:
        modified_since = modified_since.replace(tzinfo=timezone.utc)
    return f"dateLastModified>'{modified_since.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}'"


@dataclass
class PullReport:
    """What one pull of a collection saw. `complete` is True only when the end was reached as the server said."""

    collection: str  # orgs | students | schools
    endpoint: str  # the URL path, e.g. /ims/oneroster/rostering/v1p2/students
    page_size: int  # the limit asked for
    filter: str | None = None
    sorted_by: str | None = None  # the sort requested (None: not requested, or refused by the server)
    reported_total: int | None = None  # X-Total-Count, as last seen
    first_reported_total: int | None = None  # X-Total-Count on the first page
    received: int = 0  # records received, duplicates and rejected ones included
    duplicates: int = 0
    duplicate_sample: list[str] = field(default_factory=list)
    rejected: int = 0  # records that could not be normalised (see source.rejections)
    skipped: int = 0  # records left out on purpose (a /students record without the student role)
    rows: int = 0  # normalised rows yielded
    pages: int = 0
    served_page_size: int | None = None  # the largest page seen, when the server capped below page_size
    complete: bool = False
    incomplete_reason: str | None = "the pull has not finished"
    fields: str | None = None  # the `fields=` asked (None: not asked, or refused by the server)
    concurrency: int = 1  # page requests allowed in flight when the pull started (peak hours included)
    lowest_concurrency: int = 1  # the lowest it went after 429s
    rate_limited: int = 0  # 429 answers seen (each retried after Retry-After)
    read_timeouts: int = 0  # page requests that timed out (each retried at the same offset with half the limit)
    page_size_reduced_to: int | None = None  # the limit after read timeouts halved it (None: never reduced)
    events: list[str] = field(default_factory=list)  # what the pull adapted to, in order (no payload values)
    revision: str | None = None  # the data revision the pages were served from (x-perm-rev), when sent
    # CSV: records read per file (rows plus rejected rows), e.g. {"users.csv": 2000, "roles.csv": 2400}; REST: {}
    received_by_file: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    offset: int
    records: list
    total: int | None  # X-Total-Count, if sent and numeric
    has_next: bool | None  # Link rel="next" present (None: no Link header)
    url: str
    envelope: str | None = None  # the key the records came in (e.g. "users", or "students" from some servers)
    links: dict | None = None  # the parsed Link header (rel -> {"url": ...}), None when not sent
    revision: str | None = None  # the provider's data revision of this answer (ClassLink's x-perm-rev), if sent
    clean: bool = True  # every record decoded at once (else some may be `Quarantined` placeholders)


def fetch_page(session: requests.Session, url: str, params: dict, envelopes: tuple[str, ...], offset: int,
               limit: int, timeout: float) -> Page:
    """GET one page; a 200 without one of the `envelopes` keys holding a list is an error, never an empty page."""
    return page_from_response(request_page(session, url, params, offset, limit, timeout), envelopes, offset)


def request_page(session: requests.Session, url: str, params: dict, offset: int, limit: int,
                 timeout: float) -> requests.Response:
    """The HTTP half of `fetch_page`: the 2xx response of one page, body read but not parsed."""
    return get_ok(session, url, {**params, "limit": limit, "offset": offset}, timeout)


def page_from_response(response: requests.Response, envelopes: tuple[str, ...], offset: int) -> Page:
    """The parsing half of `fetch_page` (JSON, envelope, paging headers). A record that cannot be decoded is a
    `Quarantined` placeholder among the records (page_decode.py); a body that cannot be split into records is an
    error naming the page."""
    if not response.content:
        payload = parse_json(response, offset)  # the error for an empty body
    try:
        payload, clean = decode_page(response.content, envelopes)
    except Unsplittable as error:
        kind = response.headers.get("Content-Type") or "no Content-Type"
        raise OneRosterDataError(response.url, f"HTTP {response.status_code} answer is not JSON and cannot be split "
                                 f"into records ({kind}: {error})", offset) from None
    key = next((k for k in envelopes if isinstance(payload, dict) and k in payload), None)
    records = payload[key] if key is not None else None
    if not isinstance(records, list):
        found = ", ".join(sorted(payload)[:10]) if isinstance(payload, dict) else type(payload).__name__
        raise OneRosterDataError(response.url, f"HTTP {response.status_code} answer has no {' or '.join(envelopes)} "
                                 f"list (found: {found or 'an empty object'}); refusing to treat it as empty", offset)
    total = response.headers.get("X-Total-Count", "").strip()
    total = int(total) if total.isdigit() else _body_total(payload)
    links = response.links if "Link" in response.headers else None
    has_next = "next" in links if links is not None else _body_has_next(payload)
    revision = next((response.headers[h].strip()[:100] for h in REVISION_HEADERS if h in response.headers), None)
    return Page(offset, records, total, has_next, response.url, key, links, revision or None, clean)


# counts some providers put in the body instead of X-Total-Count (Focus SIS `total`, Timeback `totalCount`)
BODY_TOTALS = ("total", "totalCount")


def _body_total(payload: dict) -> int | None:
    value = next((payload[k] for k in BODY_TOTALS if k in payload), None)
    return value if value.__class__ is int and value >= 0 else None


def _body_has_next(payload: dict) -> bool | None:
    """Whether a body's `pagination` object (Focus SIS) names a next page; None when there is none."""
    pagination = payload.get("pagination")
    if not isinstance(pagination, dict) or "next" not in pagination:
        return None
    return bool(pagination["next"])


_REINSERT_CHUNK = 1 << 15


class SeenIds:
    """The sourcedIds seen in one pull, as 64-bit hashes in a numpy open-addressing table (8 bytes a slot, at most
    half full: 16-32 MB for a 1M-record pull, against ~100 MB for a Python set of the strings).

    A 64-bit collision (odds about 1 in 3.7e7 for a 1M-record pull) would count one record as a duplicate: reported
    with a sample, so the pull's verdict no longer reads complete-and-clean."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._table = np.zeros(capacity, dtype=np.uint64)  # 0 = empty slot
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, ids: list[str]) -> np.ndarray:
        """Record `ids` (in order); returns a bool array: True where the id was not seen before (in earlier calls,
        or earlier in `ids`)."""
        keys = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)).view(np.uint64)
        keys[keys == 0] = 1  # 0 marks an empty slot
        while (self._count + len(keys)) * 2 > len(self._table):
            self._grow()
        return self._insert(keys)

    def _insert(self, keys: np.ndarray) -> np.ndarray:
        table, mask = self._table, np.uint64(len(self._table) - 1)
        new = np.zeros(len(keys), dtype=bool)
        pending = np.arange(len(keys))
        slots = keys & mask
        while len(pending):
            at = table[slots]
            found = at == keys[pending]
            empty = at == 0
            # several pending keys may want one empty slot: the first (in page order) takes it, the rest probe on
            candidates = np.flatnonzero(empty)
            _, first = np.unique(slots[candidates], return_index=True)
            taking = candidates[first]
            table[slots[taking]] = keys[pending[taking]]
            new[pending[taking]] = True
            self._count += len(taking)
            done = found.copy()
            done[taking] = True
            pending, slots = pending[~done], slots[~done]
            slots = np.where(table[slots] == keys[pending], slots, (slots + np.uint64(1)) & mask)
        return new

    def _grow(self) -> None:
        old = self._table[self._table != 0]
        self._table = np.zeros(len(self._table) * 2, dtype=np.uint64)
        self._count = 0
        for start in range(0, len(old), _REINSERT_CHUNK):  # in chunks: _insert's temporaries stay small
            self._insert(old[start:start + _REINSERT_CHUNK])


class Throttle:
    """How many page requests may be in flight, shared by the threads of one pull: halved on a 429 (at most once
    per Retry-After), no new request before Retry-After has passed, and one more again after a run of pages
    answered without 429 (never above the starting limit)."""

    GROW_AFTER_PAGES = 4  # consecutive answered pages per in-flight request before allowing one more

    def __init__(self, limit: int, report: PullReport) -> None:
        self.ceiling = self.limit = max(1, limit)
        self.report = report
        self._lock = threading.Lock()
        self._resume_at = 0.0  # monotonic time before which no request is sent
        self._calm_until = 0.0  # 429s before this belong to the episode already halved for
        self._streak = 0
        report.concurrency = report.lowest_concurrency = self.limit

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429 answer (called from the thread that got it, before urllib3 waits and retries)."""
        now = time.monotonic()
        wait = min(max(retry_after or 0.0, 0.0), 120.0)
        with self._lock:
            self.report.rate_limited += 1
            self._streak = 0
            self._resume_at = max(self._resume_at, now + wait)
            if now >= self._calm_until:
                self._calm_until = now + max(wait, 0.2)
                if self.limit > 1:
                    self.limit //= 2
                    self.report.lowest_concurrency = min(self.report.lowest_concurrency, self.limit)
                    waited = retry_after if retry_after is not None else "-"
                    self.report.events.append(f"429 after {self.report.pages} pages: {self.limit} page requests "
                                              f"in flight (Retry-After {waited})")

    def answered(self) -> None:
        with self._lock:
            self._streak += 1
            if self.limit < self.ceiling and self._streak >= self.GROW_AFTER_PAGES * self.limit:
                self.limit += 1
                self._streak = 0

    def wait(self) -> None:
        """Sleep until Retry-After has passed (called before sending a new page request)."""
        delay = self._resume_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@dataclass(frozen=True)
class PullBounds:
    """Where a pull that never ends is stopped (each bound named by its variable in the error)."""

    max_records: int = 5_000_000  # ONEROSTER_MAX_RECORDS: unique records of the collection
    max_records_beyond_total: int = 10_000  # ONEROSTER_MAX_RECORDS_BEYOND_TOTAL: past the first X-Total-Count
    max_pages_without_progress: int = 10  # ONEROSTER_MAX_PAGES_WITHOUT_PROGRESS: pages with no new sourcedId
    max_pages: int = MAX_PAGES

    @classmethod
    def of(cls, settings) -> PullBounds:
        return cls(settings.max_records, settings.max_records_beyond_total, settings.max_pages_without_progress)


class PullBoundExceeded(OneRosterDataError):
    """A pull stopped by one of its bounds (`PullBounds`): the provider never signalled the end. A failed pull."""


class RevisionChanged(OneRosterDataError):
    """The provider's data revision changed while the pull paged: records may have moved between the pages already
    fetched and the rest, so the pull is not the whole truth (the caller restarts it from the first page)."""

    def __init__(self, url: str, collection: str, first: str, now: str, pages: int, offset: int) -> None:
        self.first, self.now, self.collection = first, now, collection
        super().__init__(url, f"the provider's data revision (x-perm-rev) changed from {first!r} to {now!r} after "
                         f"{pages} page(s) of the {collection} pull", offset)


class Pager:
    """The offset of the next page, whether the pull is done, and the deduplicated records of each page."""

    def __init__(self, limit: int, report: PullReport, max_pages: int = MAX_PAGES,
                 bounds: PullBounds | None = None) -> None:
        self.bounds = bounds or PullBounds(max_pages=max_pages)
        self.limit, self.report, self.max_pages = limit, report, self.bounds.max_pages
        self._pages_without_progress = 0
        self.offset = 0
        self.done = False
        self._suspected_cap: int | None = None
        self._full_page_seen = False  # a page of the full limit: the server does not cap below it
        self._previous_ids: list | None = None
        self._seen = SeenIds()
        self._unique_count = 0  # unique records before the current page

    def accept(self, page: Page) -> list:
        """Take a fetched page (the one at `self.offset`); returns its records not seen before in this pull."""
        report, n = self.report, len(page.records)
        report.pages += 1
        report.received += n
        if page.revision is not None:
            if report.revision is None:
                report.revision = page.revision
            elif page.revision != report.revision:
                raise RevisionChanged(page.url, report.collection, report.revision, page.revision, report.pages,
                                      page.offset)
        if page.total is not None:
            report.reported_total = page.total
            if report.first_reported_total is None:
                report.first_reported_total = page.total
        ids = [r.get("sourcedId") if isinstance(r, dict) else None for r in page.records]
        if n and ids == self._previous_ids:
            raise OneRosterDataError(page.url, "the server sent the previous page again: it ignores offset",
                                     page.offset)
        self._previous_ids = ids
        self.offset += n
        unique = self._unique(page.records, ids)
        self._decide(page, n, len(unique))
        self._unique_count += len(unique)
        if not self.done:
            self._check_bounds(page, n, len(unique))
        return unique

    def _check_bounds(self, page: Page, n: int, new: int) -> None:
        """Stop a pull the server never ends: too many pages, records, records past the total it first reported,
        or pages in a row that bring nothing new (`PullBoundExceeded`, naming the bound and its variable)."""
        bounds, report = self.bounds, self.report
        self._pages_without_progress = self._pages_without_progress + 1 if n and not new else 0
        if report.pages >= self.max_pages:
            problem = f"more than {self.max_pages} pages"
        elif self._unique_count > bounds.max_records:
            problem = f"more than {bounds.max_records} records (ONEROSTER_MAX_RECORDS)"
        elif (report.first_reported_total is not None and
              self._unique_count > report.first_reported_total + bounds.max_records_beyond_total):
            problem = (f"{self._unique_count} records, more than {bounds.max_records_beyond_total} beyond the "
                       f"{report.first_reported_total} the first page's X-Total-Count reported (now "
                       f"{report.reported_total}; ONEROSTER_MAX_RECORDS_BEYOND_TOTAL)")
        elif self._pages_without_progress >= bounds.max_pages_without_progress:
            problem = (f"{self._pages_without_progress} pages in a row brought no sourcedId not seen before in this "
                       "pull: the server repeats records instead of paging (ONEROSTER_MAX_PAGES_WITHOUT_PROGRESS)")
        else:
            return
        raise PullBoundExceeded(page.url, f"the {report.collection} pull was stopped after {report.pages} pages: "
                                f"{problem}. Nothing is applied from it", page.offset)

    def _decide(self, page: Page, n: int, new: int) -> None:
        if 0 < n < self.limit:
            self.report.served_page_size = max(self.report.served_page_size or 0, n)
        if n == 0:
            missing = page.total is not None and self.offset < page.total
            self._finish(None if not missing else
                         f"the server reported {page.total} records but sent an empty page at offset {self.offset}")
        elif page.total is not None:
            if self.offset >= page.total:
                short = page.total - self._unique_count - new
                self._finish(None if short <= 0 else f"{short} of the {page.total} records the server reported never "
                             "came (pages overlapped: the server's order is not stable across pages)")
        elif page.has_next is not None:
            if not page.has_next:
                self._finish(None)
        elif n < (self._suspected_cap or self.limit):
            if self._suspected_cap is None and not self._full_page_seen:
                self._suspected_cap = n  # maybe a server-side cap: one more request tells
            else:
                self._finish(None)
        self._full_page_seen = self._full_page_seen or n >= self.limit

    def _finish(self, incomplete_reason: str | None) -> None:
        self.done = True
        self.report.complete = incomplete_reason is None
        self.report.incomplete_reason = incomplete_reason

    def _unique(self, records: list, ids: list) -> list:
        """The records whose sourcedId was not seen before in this pull (records without a string id are kept:
        normalisation rejects them)."""
        if ids and all(i.__class__ is str for i in ids):  # the common page: every id a string
            fresh = self._seen.add(ids)
            repeated = set() if fresh.all() else set(np.flatnonzero(~fresh).tolist())
        else:
            string_ids = [(n, i) for n, i in enumerate(ids) if isinstance(i, str)]
            fresh = self._seen.add([i for _, i in string_ids]) if string_ids else []
            repeated = {n for (n, _), is_new in zip(string_ids, fresh) if not is_new}
        if not repeated:
            return list(records)
        for n in sorted(repeated):
            self.report.duplicates += 1
            if len(self.report.duplicate_sample) < DUPLICATE_SAMPLE:
                self.report.duplicate_sample.append(ids[n])
        return [record for n, record in enumerate(records) if n not in repeated]
