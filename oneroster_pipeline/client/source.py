"""`RestSource`: pulls orgs and students from a OneRoster REST provider as normalised Arrow batches.

Every provider is served by this one class; what differs lives in the provider profile (profiles.py) and in the
lenient parsing (normalize.py). After each pull, `reports[collection]` says what the server reported and what
arrived, and `rejections` lists the records of the latest pull that could not be normalised.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from itertools import islice
from urllib.parse import urlsplit

import pyarrow as pa

from .auth import build_auth
from .errors import OneRosterHTTPError
from .http import build_session
from .normalize import Rejection, orgs_table, users_table
from .paging import Page, Pager, PullReport, fetch_page
from .settings import ConnectionSettings, SettingsError

__all__ = ["RestSource", "PullReport", "Rejection", "open_source"]

log = logging.getLogger(__name__)
# endpoint -> the envelope keys accepted for it (the spec's first; then the endpoint's own name, as some send)
ENVELOPES = {"/orgs": ("orgs",), "/schools": ("orgs", "schools"), "/students": ("users", "students")}
SORT_FIELD = "sourcedId"


def open_source(settings: ConnectionSettings):
    """The source for the settings: `CsvSource` for provider csv, else `RestSource`. Use as a context manager."""
    if settings.provider == "csv":
        from .csv_source import CsvSource  # noqa: PLC0415 (only CSV connections need it)

        return CsvSource(settings)
    return RestSource(settings)


def delta_filter(modified_since: datetime) -> str:
    """The OneRoster filter for records modified after `modified_since` (naive datetimes are taken as UTC)."""
    if modified_since.tzinfo is None:
        modified_since = modified_since.replace(tzinfo=timezone.utc)
    return f"dateLastModified>'{modified_since.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}'"


class RestSource:
    """A OneRoster REST connection (1.1 or 1.2, any auth mode) with retries, paging and normalisation."""

    def __init__(self, settings: ConnectionSettings) -> None:
        if settings.needs_demo_provider:
            raise SettingsError("ONEROSTER_BASE_URL", "the demo provider is not started: run it and set its base "
                                "URL and credentials (the Dagster resource does this)")
        self.settings = settings
        self.profile = settings.profile
        self.session = build_session(settings)
        self.session.auth = build_auth(settings, self.session)
        self.reports: dict[str, PullReport] = {}
        self.rejections: list[Rejection] = []
        self._sort = self.profile.accepts_sort

    def __enter__(self) -> RestSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"RestSource({self.settings.connection_label()}, auth={self.settings.auth})"

    # ---- pulls --------------------------------------------------------------------------------------------------
    def org_batches(self) -> Iterator[pa.Table]:
        """Every org (GET /orgs) as ORG_SCHEMA tables, one per page."""
        return self._pull("orgs", "/orgs", lambda records, where, report: orgs_table(records, where, self.rejections))

    def student_batches(self, modified_since: datetime | None = None) -> Iterator[pa.Table]:
        """Every user with the student role (GET /students, core scope only) as USER_SCHEMA tables, one per page;
        with `modified_since`, only those modified after it (a dateLastModified filter)."""
        def to_table(records: list, where: str, report: PullReport) -> pa.Table:
            table, skipped = users_table(records, where, self.rejections, role="student")
            report.skipped += skipped
            return table

        params = {"filter": delta_filter(modified_since)} if modified_since else {}
        return self._pull("students", "/students", to_table, params)

    def fetch_school_count(self) -> int:
        """How many schools the provider shares (X-Total-Count of GET /schools, or by paging through them)."""
        count = 0
        for page, records in self._pages("schools", "/schools", {}):
            if page.total is not None:
                return page.total
            count += len(records)
        return count

    def connection_test(self):
        """Authenticate and fetch one page of schools: a `ConnectionReport` (see connection_test.py)."""
        from .connection_test import connection_test  # noqa: PLC0415 (that module imports this one)

        return connection_test(self)

    # ---- internals ----------------------------------------------------------------------------------------------
    def _pull(self, collection: str, path: str, to_table: Callable[[list, str, PullReport], pa.Table],
              params: dict | None = None) -> Iterator[pa.Table]:
        self.rejections = []
        for page, records in self._pages(collection, path, params or {}):
            report, rejected = self.reports[collection], len(self.rejections)
            table = to_table(records, f"GET {path} offset {page.offset}", report)
            report.rejected += len(self.rejections) - rejected
            report.rows += table.num_rows
            if table.num_rows:
                yield table

    def _pages(self, collection: str, path: str, params: dict) -> Iterator[tuple[Page, list]]:
        """Fetch pages in offset order until the pager is done; after the first page, up to
        ONEROSTER_MAX_CONCURRENCY pages are fetched at once when the server tells the total."""
        url, limit = self.settings.base_url + path, self.settings.page_size
        params = {**params, "sort": SORT_FIELD} if self._sort else dict(params)
        report = PullReport(collection, urlsplit(url).path, limit, params.get("filter"), params.get("sort"))
        self.reports[collection] = report
        pager = Pager(limit, report)
        first = self._first_page(url, params, ENVELOPES[path], limit, report)
        yield first, pager.accept(first)

        def fetch(offset: int) -> Page:
            return fetch_page(self.session, url, params, ENVELOPES[path], offset, limit, self.settings.timeout_seconds)

        if self.settings.max_concurrency > 1 and not pager.done and first.total is not None:
            yield from _concurrent_pages(fetch, pager, len(first.records), first.total, self.settings.max_concurrency)
        while not pager.done:
            page = fetch(pager.offset)
            yield page, pager.accept(page)
        if report.duplicates or not report.complete:
            log.warning(f"{collection} pull from {self.settings.connection_label()}: {report.duplicates} duplicates, "
                        f"complete={report.complete} ({report.incomplete_reason or 'ok'})")

    def _first_page(self, url: str, params: dict, envelopes: tuple[str, ...], limit: int,
                    report: PullReport) -> Page:
        """The page at offset 0; a server that refuses `sort` (400) is asked again without it, and from then on
        never with it (`params` is the pull's own dict)."""
        timeout = self.settings.timeout_seconds
        try:
            return fetch_page(self.session, url, params, envelopes, 0, limit, timeout)
        except OneRosterHTTPError as error:
            if error.status != 400 or "sort" not in params:
                raise
        unsorted = {k: v for k, v in params.items() if k != "sort"}
        page = fetch_page(self.session, url, unsorted, envelopes, 0, limit, timeout)  # its error if not the sort
        log.warning(f"{self.settings.connection_label()} refused sort={params.pop('sort')}: paging without it")
        self._sort, report.sorted_by = False, None
        return page


def _concurrent_pages(fetch: Callable[[int], Page], pager: Pager, step: int, total: int,
                      concurrency: int) -> Iterator[tuple[Page, list]]:
    """The planned offsets (every `step` records up to `total`), `concurrency` requests in flight, accepted in
    order. A page that is not where the pager expects it (records moved, a shorter page) stops the plan: the
    caller goes on sequentially from the pager's offset."""
    if step <= 0:
        return
    offsets = iter(range(pager.offset, total, step))
    with ThreadPoolExecutor(concurrency, thread_name_prefix="oneroster-page") as pool:
        window = deque(pool.submit(fetch, offset) for offset in islice(offsets, concurrency))
        try:
            while window and not pager.done:
                page = window.popleft().result()
                if page.offset != pager.offset:
                    break
                yield page, pager.accept(page)
                window.extend(pool.submit(fetch, offset) for offset in islice(offsets, 1))
        finally:
            for future in window:
                future.cancel()
