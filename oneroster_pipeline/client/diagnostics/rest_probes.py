"""The REST checks of the connection test: version path, auth, envelopes, paging headers, sort, filter, fields.

Each probe asks for a few records (PROBE_LIMIT) and adds one row to the report; a refused optional parameter is a
warning (or info), never a failure. The schools are compared with the known buildings by buildings.py.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from ..errors import OneRosterHTTPError, redact_url
from ..paging import Page, fetch_page
from ..rest import USER_FIELDS, RestSource
from ..settings import ConnectionSettings
from .buildings import check_schools
from .report import INFO, OK, WARNING, ConnectionReport

__all__ = ["probe_rest"]

LOW_STUDENTS_PER_SCHOOL = 20  # below this, the provider may share only enrolled users (ClassLink's default)
PROBE_LIMIT = 5  # records per probe request (paging headers, sort, filter, fields)
SPEC_BASE_PATHS = {"1.1": "/ims/oneroster/v1p1", "1.2": "/ims/oneroster/rostering/v1p2"}
SPEC_ENVELOPES = {"/schools": "orgs", "/students": "users"}


def probe_rest(source: RestSource, report: ConnectionReport, buildings: set[str] | None) -> None:
    """Every REST check, in the report's order; the first request authenticates (a 401 ends the test)."""
    settings = source.settings
    base, timeout, limit = settings.base_url, settings.timeout_seconds, settings.page_size
    _check_version_path(settings, report)
    _check_auth_mode(source, report)

    def get(path: str, params: dict, page_limit: int, offset: int = 0) -> tuple[Page, str]:
        envelopes = ("orgs", "schools") if path == "/schools" else ("users", "students")
        page = fetch_page(source.session, base + path, params, envelopes, offset, page_limit, timeout)
        return page, _envelope_key(page, envelopes)

    # authenticates (a 401 here ends the test with the provider's message) and counts schools
    schools, key = get("/schools", {}, limit)
    _check_auth_result(source, report)
    report.envelope_keys["/schools"] = key
    report.school_count = schools.total if schools.total is not None else len(schools.records)
    report.school_count_exact = schools.total is not None or (len(schools.records) < limit and not schools.has_next)
    report.sample_schools = [str(r.get("name")) for r in schools.records[:3] if isinstance(r, dict)]

    students, key = get("/students", {}, PROBE_LIMIT)
    report.envelope_keys["/students"] = key
    report.student_count = students.total
    _check_envelopes(report)
    _check_paging(source, report, students, get)
    report.sort_supported = _accepted(report, "sort", lambda: get("/students", {"sort": "sourcedId"}, PROBE_LIMIT),
                                      "sort=sourcedId accepted: pages keep a stable order",
                                      "refused: the client pages without it; records moving between pages during a "
                                      "pull show as duplicates or gaps in the completeness verdict")
    report.date_filter_supported = _accepted(
        report, "dateLastModified filter",
        lambda: get("/students", {"filter": "dateLastModified>'2000-01-01T00:00:00Z'"}, PROBE_LIMIT),
        "accepted: the nightly student sync can be a delta",
        "refused: every student sync is a full pull (slower; the provider may ask for deltas)")
    report.fields_supported = _accepted(
        report, "fields", lambda: get("/students", {"fields": USER_FIELDS[settings.version or "1.2"]}, PROBE_LIMIT),
        "fields= accepted: only the fields the sync uses are requested",
        "refused: whole records are requested and unneeded fields (e.g. password) dropped on arrival", level=INFO)
    check_schools(source, report, schools, buildings, get)
    _check_students(report)


def _check_version_path(settings: ConnectionSettings, report: ConnectionReport) -> None:
    path = urlsplit(settings.base_url).path.rstrip("/") or "/ (no path)"
    spec = SPEC_BASE_PATHS.get(settings.version or "")
    if spec and path.endswith(spec):
        report.add("version path", OK, f"OneRoster {settings.version} at {path}")
    else:
        report.add("version path", WARNING, f"OneRoster {settings.version or '?'} at {path}: the standard path ends "
                   f"{spec or ' /v1p1 or /v1p2'}; check ONEROSTER_BASE_URL if requests fail with 404")


def _check_auth_mode(source, report: ConnectionReport) -> None:
    settings = source.settings
    detail = {"oauth2": f"OAuth 2.0 client credentials, token URL {redact_url(settings.token_url or '')}",
              "oauth1": f"OAuth 1.0a request signing, {settings.oauth1_signature_method}",
              "bearer": "static bearer token (ONEROSTER_ACCESS_TOKEN)",
              "none": "no authentication"}.get(settings.auth, settings.auth or "?")
    report.add("auth mode", OK, detail)


def _check_auth_result(source, report: ConnectionReport) -> None:
    """After the first API request: the scopes the OAuth 2.0 token granted, when the token response said."""
    auth = source.session.auth
    if source.settings.auth != "oauth2":
        return
    scope = getattr(auth, "scope", None)
    style = getattr(auth, "credential_style", "basic")
    names = [s.rsplit("/", 1)[-1] for s in (scope or "").split()]
    detail = f"token granted ({'HTTP Basic' if style == 'basic' else 'form'} credentials)"
    if scope is None:
        report.add("auth scopes", INFO, detail + "; the token response names no scope")
    elif source.settings.version == "1.2" and not any(n.startswith("roster") for n in names):
        report.add("auth scopes", WARNING, detail + f", scopes {', '.join(names)}: no roster-core.readonly, "
                   "which /students and /schools need")
    else:
        report.add("auth scopes", OK, detail + f", scopes {', '.join(names)}")


def _envelope_key(page: Page, envelopes: tuple[str, ...]) -> str:
    return getattr(page, "envelope", None) or envelopes[0]


def _check_envelopes(report: ConnectionReport) -> None:
    odd = {path: key for path, key in report.envelope_keys.items() if key != SPEC_ENVELOPES[path]}
    found = ", ".join(f"{path} -> {key}" for path, key in report.envelope_keys.items())
    if odd:
        report.add("envelope keys", INFO, f"{found} (not the spec's {', '.join(SPEC_ENVELOPES[p] for p in odd)}; "
                   "accepted)")
    else:
        report.add("envelope keys", OK, found)


def _link_offsets(page: Page, links: dict) -> dict[str, int]:
    offsets = {}
    for rel, link in links.items():
        values = parse_qs(urlsplit(link.get("url", "")).query).get("offset")
        if values and values[0].isdigit():
            offsets[rel] = int(values[0])
    return offsets


def _check_paging(source, report: ConnectionReport, first: Page, get) -> None:
    total, n = first.total, len(first.records)
    links = getattr(first, "links", None)
    report.paging_headers = {"X-Total-Count": total is not None, "Link": first.has_next is not None}
    sent = [name for name, present in report.paging_headers.items() if present]
    problems = []
    if total is not None and total > 0 and n == 0:
        problems.append(f"X-Total-Count says {total} but the first page is empty")
    if total is not None and n > min(total, PROBE_LIMIT):
        problems.append(f"{n} records for limit={PROBE_LIMIT} (X-Total-Count {total})")
    if first.has_next is not None:
        offsets = _link_offsets(first, links or {})
        more = total > n if total is not None else None
        if more is not None and first.has_next != more:
            problems.append(f"Link {'has' if first.has_next else 'has no'} rel=next while X-Total-Count {total} "
                            f"and {n} records received")
        if "next" in offsets and offsets["next"] != n:
            problems.append(f"Link rel=next points at offset {offsets['next']} after {n} records (the client follows "
                            "the count received, not the link)")
    if not sent:
        detail = ("neither X-Total-Count nor Link: the end of a pull is a page shorter than the limit; "
                  "completeness cannot be checked against a total")
        report.add("paging headers", WARNING, detail)
    elif total is None:
        report.add("paging headers", WARNING, "no X-Total-Count (Link only): pages are fetched one at a time and "
                   "completeness cannot be checked against a total")
    if problems:
        report.paging_agrees = False
        report.add("paging agreement", WARNING, "; ".join(problems))
    elif sent:
        report.paging_agrees = True
        detail = f"{' and '.join(sent)} sent" + (f"; they agree with the {n} records received" if sent else "")
        if total is not None:
            report.add("paging headers", OK, detail)
        else:
            report.add("paging agreement", OK, detail)


def _accepted(report: ConnectionReport, check: str, probe, ok_detail: str, refused_detail: str,
              level: str = WARNING) -> bool | None:
    try:
        probe()
    except OneRosterHTTPError as error:
        if error.status not in (400, 422):
            raise
        minor = f" ({error.code_minor})" if error.code_minor else ""
        report.add(check, level, f"HTTP {error.status}{minor}: {refused_detail}")
        return False
    report.add(check, OK, ok_detail)
    return True


def _check_students(report: ConnectionReport) -> None:
    total, schools = report.student_count, report.school_count
    if total is None:
        report.add("students", INFO, "the count is unknown without X-Total-Count (a full pull counts them)")
    elif schools and total < LOW_STUDENTS_PER_SCHOOL * schools:
        report.add("students", WARNING,
                   f"only {total} students for {schools} schools: the provider may share only students enrolled in "
                   "a class (ClassLink: ask the district to share unenrolled users)")
    else:
        report.add("students", OK, f"{total} shared" + (f" (~{total // schools} per school)" if schools else ""))
