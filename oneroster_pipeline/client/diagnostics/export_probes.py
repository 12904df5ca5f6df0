"""The CSV export checks of the connection test: the manifest, then the org and student pulls read in full.

A file that cannot be read fails the test; rows the sync would reject are a warning with their count per file.
"""

from __future__ import annotations

from ..sources import Source
from .buildings import check_schools
from .report import OK, WARNING, ConnectionReport

__all__ = ["probe_export"]


def probe_export(source: Source, report: ConnectionReport, buildings: set[str] | None = None) -> None:
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

    check_schools(source, report, _Page(), buildings, None)
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
    dropped = [r for r in rejections if r.kind != "rejected"]  # values set NULL in kept rows (issue 25)
    rejections = [r for r in rejections if r.kind == "rejected"]
    extra.append(f"{len(dropped)} unreadable values dropped (rows kept, e.g. {dropped[0].location}: "
                 f"{dropped[0].field})" if dropped else "")
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
