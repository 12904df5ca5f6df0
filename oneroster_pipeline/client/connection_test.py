"""Connection test: authenticate, fetch one page of schools, probe /students; a report for the CLI and the UI.

    python -m oneroster_pipeline.client.connection_test     # uses ONEROSTER_* from the environment

prints the report and exits 0, or prints the error (no secrets) and exits 1. With the demo provider and no base
URL, it starts the built-in demo district for the test.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field

from .errors import OneRosterError
from .paging import fetch_page
from .settings import ConnectionSettings, SettingsError

LOW_STUDENTS_PER_SCHOOL = 20  # below this, the provider may share only enrolled users (ClassLink's default)


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


def connection_test(source_or_settings) -> ConnectionReport:
    """Test a connection (an open source, or settings to open one with); never raises for a provider problem."""
    from .source import RestSource, open_source  # noqa: PLC0415 (source imports this module lazily)

    started = time.monotonic()
    settings = getattr(source_or_settings, "settings", source_or_settings)
    report = ConnectionReport(False, settings.connection_label(), settings.version, settings.auth)
    try:
        with ExitStack() as stack:
            source = source_or_settings
            if isinstance(source_or_settings, ConnectionSettings):
                source = stack.enter_context(open_source(source_or_settings))
            if isinstance(source, RestSource):
                _probe_rest(source, report)
            else:
                _probe_batches(source, report)
        report.ok = True
    except (OneRosterError, SettingsError, OSError, ValueError) as error:
        report.error = str(error)
    report.elapsed_seconds = round(time.monotonic() - started, 3)
    return report


def _probe_rest(source, report: ConnectionReport) -> None:
    base, timeout, limit = source.settings.base_url, source.settings.timeout_seconds, source.settings.page_size
    schools = fetch_page(source.session, base + "/schools", {}, ("orgs", "schools"), 0, limit, timeout)
    report.school_count = schools.total if schools.total is not None else len(schools.records)
    report.school_count_exact = schools.total is not None or (len(schools.records) < limit and not schools.has_next)
    report.sample_schools = [str(r.get("name")) for r in schools.records[:3] if isinstance(r, dict)]
    students = fetch_page(source.session, base + "/students", {}, ("users", "students"), 0, 1, timeout)
    report.student_count = students.total
    if report.school_count == 0:
        report.warnings.append("the provider shares no school: check the district's sharing settings")
    elif students.total is not None and students.total < LOW_STUDENTS_PER_SCHOOL * report.school_count:
        report.warnings.append(
            f"only {students.total} students for {report.school_count} schools: the provider may share only "
            "students enrolled in a class (ClassLink: ask the district to share unenrolled users)")


def _probe_batches(source, report: ConnectionReport) -> None:
    """A source without HTTP (a CSV export): count its schools by reading its orgs."""
    names = []
    for batch in source.org_batches():
        names += [n for n, t in zip(batch.column("name").to_pylist(), batch.column("type").to_pylist())
                  if t == "school"]
    report.school_count, report.school_count_exact, report.sample_schools = len(names), True, names[:3]


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        settings = ConnectionSettings.from_env(env)
    except SettingsError as error:
        print(f"connection test failed: {error}", file=sys.stderr)
        return 1
    with ExitStack() as stack:
        if settings.needs_demo_provider:
            settings = stack.enter_context(_demo(settings))
        report = connection_test(settings)
    print("\n".join(report.as_lines()))
    if not report.ok:
        print(f"connection test failed: {report.error}", file=sys.stderr)
    return 0 if report.ok else 1


@contextmanager
def _demo(settings: ConnectionSettings) -> Iterator[ConnectionSettings]:
    """Start the built-in demo district and point the settings at it (OAuth2 with a throwaway secret)."""
    from ..demo.server import DemoProvider, DemoSettings  # noqa: PLC0415 (only the demo needs it)

    secret = secrets.token_urlsafe(16)
    with DemoProvider(settings=DemoSettings(client_secret=secret)) as provider:
        print(f"(started the built-in demo provider at {provider.url})")
        yield settings.with_overrides(base_url=provider.base_url("1.2"), version=None, auth="oauth2",
                                      token_url=provider.token_url, client_id="demo-client", client_secret=secret)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
