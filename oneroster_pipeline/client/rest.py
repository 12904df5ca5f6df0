"""`RestSource`: pulls orgs and students from a OneRoster REST provider (1.1 or 1.2) as normalised Arrow batches.

Every provider is served by this one class; what differs lives in the provider profile (profiles.py) and in the
lenient parsing (normalize.py, tables.py). After each pull, `reports[collection]` says what the server reported and what
arrived, and `rejections` lists the records of the latest pull that could not be normalised.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

import pyarrow as pa

from .auth import build_auth
from .errors import OneRosterHTTPError, OneRosterReadTimeout
from .http import build_session, surface_read_timeouts
from .normalize import REJECTED, Rejection
from .page_decode import Quarantined
from .paging import (
    Page,
    Pager,
    PullBounds,
    PullReport,
    Throttle,
    delta_filter,
    fetch_page,
    page_from_response,
    request_page,
)
from .settings import ConnectionSettings, SettingsError
from .tables import orgs_table, users_table

__all__ = ["ORG_FIELDS", "SORT_FIELD", "USER_FIELDS", "RestSource"]

log = logging.getLogger(__name__)
# endpoint -> the envelope keys accepted for it (the spec's first; then the endpoint's own name, as some send)
ENVELOPES = {"/orgs": ("orgs",), "/schools": ("orgs", "schools"), "/students": ("users", "students")}
SORT_FIELD = "sourcedId"
# `fields=`: only what normalize.py reads (never `password`, userIds, agents, sms, phone ...)
ORG_FIELDS = "sourcedId,status,dateLastModified,metadata,name,type,identifier,parent"
_USER_FIELDS = "sourcedId,status,dateLastModified,metadata,username,enabledUser,givenName,familyName,middleName," \
               "identifier,email,grades"
USER_FIELDS = {"1.1": _USER_FIELDS + ",role,orgs", "1.2": _USER_FIELDS + ",roles,primaryOrg,userMasterIdentifier"}


class RestSource:
    """A OneRoster REST connection (1.1 or 1.2, any auth mode) with retries, paging and normalisation."""

    def __init__(self, settings: ConnectionSettings) -> None:
        if settings.needs_demo_provider:
            raise SettingsError("ONEROSTER_BASE_URL", "the demo provider is not started: run it and set its base "
                                "URL and credentials (the Dagster resource does this)")
        self.settings = settings
        self.profile = settings.profile
        self.session = build_session(settings, on_rate_limited=self._on_rate_limited)
        self.session.auth = build_auth(settings, self.session)
        self.reports: dict[str, PullReport] = {}
        self.rejections: list[Rejection] = []
        self._sort = self.profile.accepts_sort
        self._fields = self.profile.accepts_fields
        self._page_size = settings.page_size  # halved for good after read timeouts
        self._throttle: Throttle | None = None

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

    # ---- internals ----------------------------------------------------------------------------------------------
    def _pull(self, collection: str, path: str, to_table: Callable[[list, str, PullReport], pa.Table],
              params: dict | None = None) -> Iterator[pa.Table]:
        self.rejections = []
        entity = "org" if collection == "orgs" else "user"
        for page, records in self._pages(collection, path, params or {}):
            report, rejected = self.reports[collection], len(self.rejections)
            where = f"GET {path} offset {page.offset}"
            if not page.clean and any(r.__class__ is Quarantined for r in records):
                records = self._quarantine(records, entity, where)
            table = to_table(records, where, report)
            report.rejected += sum(r.kind == REJECTED for r in self.rejections[rejected:])  # not dropped values
            report.rows += table.num_rows
            if table.num_rows:
                yield table

    def _quarantine(self, records: list, entity: str, where: str) -> list:
        """The page's records without the ones that could not be decoded, which become rejections with no sourcedId
        of theirs (the pull is then incomplete: nobody is deactivated by absence); the id, when readable, is named."""
        kept = []
        for record in records:
            if record.__class__ is not Quarantined:
                kept.append(record)
                continue
            named = f" (sourcedId {record.sourced_id[:64]!r})" if record.sourced_id else ""
            self.rejections.append(Rejection(entity, None, f"{where}, item {record.position}{named}", record.field,
                                             record.reason))
        return kept

    def _on_rate_limited(self, retry_after: float | None) -> None:
        if self._throttle is not None:
            self._throttle.rate_limited(retry_after)

    def _pages(self, collection: str, path: str, params: dict) -> Iterator[tuple[Page, list]]:
        """Fetch pages in offset order until the pager is done. After the first page, the next page is always
        requested before the current one is handed over (fetching overlaps normalising), and when the server tells
        the total, up to `settings.concurrency_at(now)` pages are in flight (fewer after a 429: see Throttle).
        A read timeout retries the same offset with half the page size (at most ONEROSTER_MAX_RETRIES times)."""
        settings = self.settings
        url, envelopes = settings.base_url + path, ENVELOPES[path]
        params = dict(params)
        if self._fields:
            params["fields"] = ORG_FIELDS if path != "/students" else USER_FIELDS[settings.version or "1.2"]
        if self._sort:
            params["sort"] = SORT_FIELD
        report = PullReport(collection, urlsplit(url).path, self._page_size, params.get("filter"),
                            params.get("sort"), fields=params.get("fields"))
        self.reports[collection] = report
        pager = Pager(self._page_size, report, bounds=PullBounds.of(settings))
        throttle = self._throttle = Throttle(settings.concurrency_at(), report)

        def fetch(offset: int, limit: int, started: threading.Event):
            """In a worker thread: HTTP only; the caller parses the JSON after the next request has left."""
            started.set()
            with surface_read_timeouts():
                return request_page(self.session, url, params, offset, limit, settings.timeout_seconds)

        while True:
            try:
                first = self._first_page(url, params, envelopes, pager.limit, report)
                break
            except OneRosterReadTimeout as error:
                self._smaller_pages(error, pager, 0)
        page, records = first, pager.accept(first)
        throttle.answered()
        step, total = len(first.records), first.total
        plan = _plan(pager, step, total)
        window: deque[tuple[int, Future, threading.Event]] = deque()

        def fill() -> None:
            """Submit the next requests: the planned offsets up to the in-flight limit, else the pager's next."""
            cap = min(throttle.limit, settings.concurrency_at()) if plan is not None else 1
            while not pager.done and len(window) < cap:
                if plan is None:
                    offset = pager.offset
                else:
                    offset = next(plan, None)
                    if offset is None:
                        return
                throttle.wait()
                started = threading.Event()
                window.append((offset, pool.submit(fetch, offset, pager.limit, started), started))

        with ThreadPoolExecutor(max(settings.max_concurrency, 1), thread_name_prefix="oneroster-page") as pool:
            try:
                yield page, records  # the first page alone: a caller that stops here sent no extra request
                while not pager.done:
                    if not window:
                        plan = plan if plan is not None and step else None
                        fill()
                        if not window:  # the plan ran out before the pager was done: go on page by page
                            plan = None
                            fill()
                    offset, future, _ = window.popleft()
                    try:
                        response = future.result()
                    except OneRosterReadTimeout as error:
                        _cancel(window)
                        self._smaller_pages(error, pager, offset)
                        step = min(step, pager.limit)
                        plan = _plan(pager, step, total)
                        continue
                    if offset != pager.offset:  # records moved, or a shorter page: page by page from here
                        _cancel(window)
                        plan = None
                        continue
                    if plan is not None:
                        fill()  # the next planned requests leave before this page is parsed and normalised;
                        for *_, started in window:  # parsing holds the GIL: let the workers send them first
                            started.wait(0.05)
                    page = page_from_response(response, envelopes, offset)
                    records = pager.accept(page)
                    throttle.answered()
                    fill()  # page by page: the next offset is known only now
                    yield page, records
            finally:
                _cancel(window)
                self._throttle = None
        if report.duplicates or not report.complete:
            log.warning(f"{collection} pull from {self.settings.connection_label()}: {report.duplicates} duplicates, "
                        f"complete={report.complete} ({report.incomplete_reason or 'ok'})")

    def _smaller_pages(self, error: OneRosterReadTimeout, pager: Pager, offset: int) -> None:
        """A page timed out: halve the page size (for the rest of this source's pulls) and let the caller retry
        the same offset; re-raise once ONEROSTER_MAX_RETRIES timeouts were spent or pages are down to 1."""
        report = pager.report
        report.read_timeouts += 1
        if report.read_timeouts > self.settings.max_retries or pager.limit <= 1:
            raise error
        smaller = max(1, pager.limit // 2)
        note = f"read timeout at offset {offset} with limit {pager.limit}: retrying with limit {smaller}"
        log.warning(f"{self.settings.connection_label()}: {note}")
        report.events.append(note)
        pager.limit = report.page_size_reduced_to = self._page_size = smaller

    def _first_page(self, url: str, params: dict, envelopes: tuple[str, ...], limit: int,
                    report: PullReport) -> Page:
        """The page at offset 0; a server that refuses `fields` or `sort` (400) is asked again without it, and
        from then on never with it (`params` is the pull's own dict). A refused filter is the caller's problem."""
        timeout = self.settings.timeout_seconds
        while True:
            try:
                with surface_read_timeouts():
                    return fetch_page(self.session, url, params, envelopes, 0, limit, timeout)
            except OneRosterHTTPError as error:
                optional = [name for name in ("fields", "sort") if name in params]
                said = f"{error.code_minor or ''} {error.description or ''}".lower()
                if error.status != 400 or not optional or ("filter" in said and "sort" not in said):
                    raise
                named = [n for n in optional if (n == "sort" and "sort" in said) or
                         (n == "fields" and ("selection" in said or "fields" in said))]
                for name in named[:1] or optional:  # the one the server names, else all of them at once
                    params.pop(name)
                    log.warning(f"{self.settings.connection_label()} refused {name}= (HTTP 400): asking without it")
                    report.events.append(f"the server refused {name}= (HTTP 400): asked without it")
                    if name == "sort":
                        self._sort, report.sorted_by = False, None
                    else:
                        self._fields, report.fields = False, None
                if not named:  # an unexplained 400: one more try without them, then its error
                    with surface_read_timeouts():
                        return fetch_page(self.session, url, params, envelopes, 0, limit, timeout)


def _plan(pager: Pager, step: int, total: int | None) -> Iterator[int] | None:
    """The offsets still to fetch when the total is known (every `step` records), else None (page by page)."""
    if total is None or step <= 0 or pager.done:
        return None
    return iter(range(pager.offset, total, step))


def _cancel(window: deque) -> None:
    """Forget requested pages (those already running finish in the background and are dropped)."""
    for _, future, _ in window:
        future.cancel()
    window.clear()
