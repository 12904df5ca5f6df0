"""The result of a connection test: `ConnectionReport`, its checks (check, result, detail) and their table.

Never holds a secret or a payload value: the details say what was seen and what to do about a warning.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field

__all__ = ["FAILED", "INFO", "OK", "WARNING", "Check", "ConnectionReport"]

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
