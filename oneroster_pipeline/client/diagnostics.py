"""Connection test: a diagnostic of one provider connection, as a table for the CLI and the UI.

    python -m oneroster_pipeline.client.connection_test [--building-sis ID ...] [--buildings-csv FILE]

authenticates, then checks, each as one row (check, result, detail): the version path, the auth mode and its
signature method or granted scopes, the envelope keys, which paging headers the server sends and whether they agree
(X-Total-Count vs Link vs the records received), whether `sort`, a `dateLastModified` filter and `fields` are
accepted, the schools visible against the district's known buildings (`building_sis`), and the students shared
against the schools (ClassLink shares only class-enrolled users unless the district turns on "Unenrolled Users").
A CSV export (ONEROSTER_PROVIDER=csv) is read as the sync reads it: the manifest (its OneRoster version and file
modes), every org, and the student pull (users.csv, and roles.csv for 1.2); a file that cannot be read fails the
test, rows the sync would reject are a warning with their count per file.
Exits 0 when the connection works (warnings included), else 1 with the error on stderr, printed once; never prints
a secret or a payload. With the demo provider and no base URL, it starts the same built-in demo district as the
sync (ONEROSTER_DEMO_SCHOOLS / ONEROSTER_DEMO_STUDENTS / ONEROSTER_DEMO_SEED, default 8 / 2000 / 42).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qs, urlsplit

from .builtin_demo import DemoShape, start_demo_district
from .errors import OneRosterError, OneRosterHTTPError, redact_url
from .paging import Page, fetch_page
from .settings import ConnectionSettings, SettingsError

LOW_STUDENTS_PER_SCHOOL = 20  # below this, the provider may share only enrolled users (ClassLink's default)
PROBE_LIMIT = 5  # records per probe request (paging headers, sort, filter, fields)
SPEC_BASE_PATHS = {"1.1": "/ims/oneroster/v1p1", "1.2": "/ims/oneroster/rostering/v1p2"}
SPEC_ENVELOPES = {"/schools": "orgs", "/students": "users"}
OK, WARNING, FAILED, INFO = "ok", "warning", "failed", "info"


@dataclass(frozen=True)
class Check:
    check: str  # what was checked, e.g. "paging headers"
    result: str  # ok | warning | failed | info
    detail: str  # what was seen, and what to do about a warning (never a secret or a payload value)


@dataclass
class ConnectionReport:
    ok: bool
    connection: str  # provider, base URL without credentials, version
    version: str | None
    auth: str | None
    school_count: int | None = None
    school_count_exact: bool = False  # False: counted from the first page only (no X-Total-Count)
    student_count: int | None = None  # from X-Total-Count of /students, when the server sends it
    sample_schools: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)  # every check in order; rows() is the table
    envelope_keys: dict[str, str] = field(default_factory=dict)  # endpoint -> the key its list came in
    paging_headers: dict[str, bool] = field(default_factory=dict)  # "X-Total-Count" / "Link" -> sent on /students
    paging_agrees: bool | None = None  # the headers and the records received tell the same story
    sort_supported: bool | None = None
    date_filter_supported: bool | None = None
    fields_supported: bool | None = None
    schools_without_building: list[str] = field(default_factory=list)  # "name (sourcedId)" of active schools
    buildings_without_school: list[str] = field(default_factory=list)  # building_sis that match no school

    def add(self, check: str, result: str, detail: str) -> None:
        self.checks.append(Check(check, result, detail))
        if result == WARNING:
            self.warnings.append(f"{check}: {detail}")

    def rows(self, failure_detail: str | None = None) -> list[tuple[str, str, str]]:
        """(check, result, detail) for each check, then the overall result, whose detail is the error of a failed
        test (said once; `failure_detail` replaces it where the error is shown elsewhere): a table for the CLI and
        the UI."""
        rows = [(c.check, c.result, c.detail) for c in self.checks]
        rows.append(("result", OK if self.ok else FAILED,
                     f"connection works ({len(self.warnings)} warnings) in {self.elapsed_seconds:.2f}s" if self.ok
                     else failure_detail or self.error or "failed"))
        return rows

    def as_table(self, width: int = 100, failure_detail: str | None = None) -> str:
        """rows() as a plain-text table (details wrapped to `width` columns)."""
        import textwrap  # noqa: PLC0415

        rows = self.rows(failure_detail)
        first, second = max(len("check"), *(len(r[0]) for r in rows)), max(len("result"), *(len(r[1]) for r in rows))
        room = max(30, width - first - second - 6)
        lines = [f"{'check':<{first}}  {'result':<{second}}  detail", f"{'-' * first}  {'-' * second}  {'-' * 6}"]
        for check, result, detail in rows:
            wrapped = textwrap.wrap(detail, room) or [""]
            lines.append(f"{check:<{first}}  {result:<{second}}  {wrapped[0]}")
            lines += [f"{'':<{first}}  {'':<{second}}  {more}" for more in wrapped[1:]]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return asdict(self)

    def as_lines(self) -> list[str]:
        lines = [f"connection: {self.connection}", f"OneRoster version: {self.version or '?'}",
                 f"auth: {self.auth or '?'}"]
        if self.school_count is not None:
            count = str(self.school_count) if self.school_count_exact else f"at least {self.school_count}"
            lines.append(f"schools: {count}" + (f" (e.g. {', '.join(self.sample_schools)})"
                                                 if self.sample_schools else ""))
        if self.student_count is not None:
            lines.append(f"students: {self.student_count}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"result: OK in {self.elapsed_seconds:.2f}s" if self.ok else f"result: FAILED: {self.error}")
        return lines


def connection_test(source_or_settings, building_sis: Iterable[str] | None = None) -> ConnectionReport:
    """Test a connection (an open source, or settings to open one with); never raises for a provider problem.
    `building_sis`: the district's known buildings, to report schools without a building and vice versa."""
    from .sources import RestSource, open_source  # noqa: PLC0415 (source imports this module lazily)

    started = time.monotonic()
    settings = getattr(source_or_settings, "settings", source_or_settings)
    report = ConnectionReport(False, settings.connection_label(), settings.version, settings.auth)
    buildings = None if building_sis is None else {b.strip() for b in building_sis if b and b.strip()}
    try:
        with ExitStack() as stack:
            source = source_or_settings
            if isinstance(source_or_settings, ConnectionSettings):
                source = stack.enter_context(open_source(source_or_settings))
            # what the source found out (a CSV export's version is its manifest's)
            report.version = getattr(source, "settings", settings).version or report.version
            if isinstance(source, RestSource):
                _probe_rest(source, report, buildings)
            else:
                _probe_batches(source, report, buildings)
        report.ok = True
    except (OneRosterError, SettingsError, OSError, ValueError) as error:
        report.error = str(error)  # the final `result` row says it (once)
    report.elapsed_seconds = round(time.monotonic() - started, 3)
    return report


def _probe_rest(source, report: ConnectionReport, buildings: set[str] | None) -> None:
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
    from .sources import USER_FIELDS  # noqa: PLC0415

    report.fields_supported = _accepted(
        report, "fields", lambda: get("/students", {"fields": USER_FIELDS[settings.version or "1.2"]}, PROBE_LIMIT),
        "fields= accepted: only the fields the sync uses are requested",
        "refused: whole records are requested and unneeded fields (e.g. password) dropped on arrival", level=INFO)
    _check_schools(source, report, schools, buildings, get)
    _check_students(report)


def _check_version_path(settings: ConnectionSettings, report: ConnectionReport) -> None:
    path = urlsplit(settings.base_url).path.rstrip("/")
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


def _check_schools(source, report: ConnectionReport, first: Page, buildings: set[str] | None, get) -> None:
    count = f"{report.school_count}" if report.school_count_exact else f"at least {report.school_count}"
    sample = f" (e.g. {', '.join(report.sample_schools)})" if report.sample_schools else ""
    if report.school_count == 0:
        report.add("schools", WARNING, "the provider shares no school: check the district's sharing settings")
        return
    report.add("schools", OK, f"{count} visible{sample}")
    if buildings is None:
        return
    schools = _all_active_schools(source, first, get)
    known = set(schools)
    report.schools_without_building = sorted(f"{name} ({sid})" for sid, name in schools.items() if sid not in buildings)
    report.buildings_without_school = sorted(buildings - known)
    if not report.schools_without_building and not report.buildings_without_school:
        report.add("schools vs buildings", OK, f"each of the {len(known)} active schools is one of the "
                   f"{len(buildings)} buildings")
        return
    parts = []
    if report.schools_without_building:
        parts.append(f"{len(report.schools_without_building)} schools with no building: "
                     f"{_sample(report.schools_without_building)} (building sync creates them)")
    if report.buildings_without_school:
        parts.append(f"{len(report.buildings_without_school)} buildings with no school: "
                     f"{_sample(report.buildings_without_school)} (their students would be ignored; check the "
                     "building SIS ids and the district's sharing)")
    report.add("schools vs buildings", WARNING, "; ".join(parts))


def _sample(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _all_active_schools(source, first: Page, get) -> dict[str, str]:
    """sourcedId -> name of every active school (pages through /schools)."""
    schools: dict[str, str] = {}
    page, limit = first, source.settings.page_size
    for _ in range(10_000):
        for record in page.records:
            if isinstance(record, dict) and isinstance(record.get("sourcedId"), str):
                status = str(record.get("status") or "active").lower()
                if status == "active":
                    schools[record["sourcedId"]] = str(record.get("name") or "")
        offset = page.offset + len(page.records)
        if not page.records or (page.total is not None and offset >= page.total) or page.has_next is False or \
                (page.total is None and page.has_next is None and len(page.records) < limit):
            break
        page, _ = get("/schools", {}, limit, offset)
    return schools


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


def _probe_batches(source, report: ConnectionReport, buildings: set[str] | None = None) -> None:
    """A source without HTTP (a CSV export): its manifest, then a full read of its orgs (schools counted) and of its
    student pull (users.csv, and roles.csv for 1.2) through the sync's own reader. A file that cannot be read fails
    the test; rows the sync would reject are a warning with their counts."""
    if getattr(source, "manifest_modes", None) is not None:
        _check_manifest(source, report)
    else:
        report.add("source", OK, report.connection)
    schools: dict[str, str] = {}  # active ones, for the building comparison
    names = []
    for batch in source.org_batches():
        for sid, name, kind, status in zip(*(batch.column(c).to_pylist()
                                             for c in ("sourced_id", "name", "type", "status"))):
            if kind == "school":
                names.append(name)
                if status in (None, "active"):
                    schools[sid] = name
    _check_read(report, "orgs", source.reports.get("orgs"), list(source.rejections), "orgs")
    report.school_count, report.school_count_exact, report.sample_schools = len(names), True, names[:3]

    class _Page:  # the first page of schools, for the shared building comparison
        records = [{"sourcedId": sid, "name": name, "status": "active"} for sid, name in schools.items()]
        offset, total, has_next = 0, len(schools), False

    _check_schools(source, report, _Page(), buildings, None)
    students = sum(batch.num_rows for batch in source.student_batches())
    report.student_count = students
    _check_read(report, "students", source.reports.get("students"), list(source.rejections), "students")
    if students == 0 and report.school_count:
        report.add("students", WARNING, f"no student in the export for {report.school_count} schools: check that "
                   "the export includes the students (users.csv role / roles.csv)")


def _check_manifest(source, report: ConnectionReport) -> None:
    """The manifest's OneRoster version and file modes; a delta export is a warning (it deactivates nothing)."""
    modes = source.manifest_modes
    files = ", ".join(f"{name}.csv {mode}" for name, mode in modes.items())
    detail = f"OneRoster {source.version} CSV export (manifest.csv: oneroster.version {source.version}; {files})"
    deltas = [f"{name}.csv" for name, mode in modes.items() if mode == "delta"]
    if deltas:
        report.add("manifest", WARNING, f"{detail}: {', '.join(deltas)} only changed records (delta), so a sync "
                   "from it is not a full pull and deactivates nothing by absence")
    else:
        report.add("manifest", OK, detail)


def _check_read(report: ConnectionReport, check: str, pull, rejections: list, what: str) -> None:
    """How a CSV pull went: rows read and kept, and the rejected rows counted per file with a few examples
    (location, field, reason: never a value)."""
    if pull is None:
        return
    counts = f"{pull.endpoint}: {pull.received} rows read, {pull.rows} {what} kept"
    extra = [f"{pull.duplicates} duplicates" if pull.duplicates else "",
             f"{pull.skipped} not students" if what == "students" and pull.skipped else ""]
    counts += "".join(f", {e}" for e in extra if e)
    if not rejections:
        report.add(check, OK, counts + ", none rejected")
        return
    per_file: dict[str, int] = {}
    for rejection in rejections:
        name = rejection.location.split(" line ", 1)[0]
        per_file[name] = per_file.get(name, 0) + 1
    by_file = ", ".join(f"{n} in {name}" for name, n in per_file.items())
    examples = "; ".join(f"{r.location}: {r.field} {r.reason}" for r in rejections[:3])
    report.add(check, WARNING, f"{counts}, {len(rejections)} rejected ({by_file}), e.g. {examples}. The sync "
               "leaves them out and lists them in rejected_records: fix them in the export")


def known_buildings(path: str) -> list[str]:
    """The building_sis column of a buildings CSV (`name,building_sis`, as ONEROSTER_BUILDINGS_CSV)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = csv.DictReader(handle)
        if "building_sis" not in (rows.fieldnames or []):
            raise SettingsError("ONEROSTER_BUILDINGS_CSV", f"{path} has no building_sis column")
        return [row["building_sis"] for row in rows if row.get("building_sis")]


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python -m oneroster_pipeline.client.connection_test",
                                     description="Check a OneRoster connection (settings from ONEROSTER_* variables).")
    parser.add_argument("--building-sis", nargs="+", default=None, metavar="ID",
                        help="known building SIS ids (also comma separated) to compare with the schools visible")
    parser.add_argument("--buildings-csv", default=None, metavar="FILE",
                        help="a buildings CSV (name,building_sis); default ONEROSTER_BUILDINGS_CSV when set")
    args = parser.parse_args(argv or [])
    try:
        settings = ConnectionSettings.from_env(env)
        shape = DemoShape.from_env(env) if settings.needs_demo_provider else None
        buildings = None
        csv_path = args.buildings_csv or (env.get("ONEROSTER_BUILDINGS_CSV") or "").strip() or None
        if csv_path:
            buildings = known_buildings(csv_path)
        if args.building_sis:
            buildings = (buildings or []) + [b for arg in args.building_sis for b in re.split(r"[,\s]+", arg) if b]
    except (SettingsError, OSError) as error:
        print(f"connection test failed: {error}", file=sys.stderr)
        return 1
    with ExitStack() as stack:
        if settings.needs_demo_provider:  # the same district the sync starts (ONEROSTER_DEMO_* shape)
            settings, _ = stack.enter_context(start_demo_district(settings, shape))
            print(f"(no provider configured: started the built-in demo provider with the sync's demo district "
                  f"({shape.describe()}) at {settings.base_url})")
        report = connection_test(settings, buildings)
    print(f"connection: {report.connection}")
    # a failure's error is printed once: on stderr, at the end
    print(report.as_table(failure_detail="failed: the error is below"))
    # the summary below the table, without what the table already said (warnings, a failure)
    print("\n".join(line for line in report.as_lines()[1:]
                    if not line.startswith("warning: ") and (report.ok or not line.startswith("result:"))))
    if not report.ok:
        print(f"connection test failed: {report.error}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
