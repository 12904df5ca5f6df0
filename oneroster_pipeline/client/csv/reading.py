"""Staging each file of a CSV export into DuckDB: the columns kept, the rows rejected for their structure, lines.

`stage` copies a file out of the export (dialect.py), has DuckDB read it (every column VARCHAR, strict quoting) into
a table of its usable records, and turns the rows it cannot use (a stray quote, bad UTF-8, too few or too many
columns) into `Rejection`s with their line; Python's strict CSV reader counts the records to check DuckDB's, and a
line whose stray quote swallowed the lines after it is emptied and the file read again. `LineIndex` tells the line
of a record (DuckDB's rowid) when a rejection needs it.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from ..normalize import Rejection
from .dialect import blank_lines, leading_field
from .export import FILES, MANIFEST, CsvExportError, Export, header_of

__all__ = ["MISSING", "LineIndex", "StagedFile", "stage"]

log = logging.getLogger(__name__)

# header name (lower-cased) of the Infinite Campus crosswalk id, when an export carries it as a metadata column
LEGACY_COLUMN = "metadata.ic.legacysourceid"
# the columns kept from each file (OneRoster header names; matched case-insensitively); `password` is never one
ORG_COLUMNS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId")
USER_COLUMNS = {
    "1.1": ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username",
            "givenName", "familyName", "middleName", "identifier", "email", "grades"),
    "1.2": ("sourcedId", "status", "dateLastModified", "enabledUser", "username", "givenName", "familyName",
            "middleName", "identifier", "email", "grades", "primaryOrgSourcedId", "userMasterIdentifier"),
}
ROLE_COLUMNS = ("sourcedId", "userSourcedId", "roleType", "role", "orgSourcedId")
REQUIRED = {"orgs.csv": ("sourcedId",), "users.csv": ("sourcedId",), "roles.csv": ("userSourcedId", "role")}
# DuckDB's reject error types -> our reason (never the line's content)
_STRUCTURE_REASONS = {
    "TOO MANY COLUMNS": "too many columns (expected {n})",
    "MISSING COLUMNS": "too few columns (expected {n})",
    "UNQUOTED VALUE": "a stray quote (a quote inside an unquoted value, or text after a closing quote)",
    "LINE SIZE OVER MAXIMUM": "the line is longer than the CSV reader's maximum line size",
    "INVALID ENCODING": "not valid UTF-8",
    "INVALID UNICODE": "not valid UTF-8",
}
MISSING = "missing or empty"
SLACK_COLUMNS = 16  # empty cells a row may carry beyond the header's named columns
MAX_REREADS = 20  # reads of a file whose stray quotes swallow the lines after them, each emptying those lines
NOT_NULL = "\x01"  # DuckDB's nullstr: no cell is read as NULL, so NULL means a column the row lacks
_ENTITY = {"orgs.csv": "org", "users.csv": "user", "roles.csv": "role"}


@dataclass
class StagedFile:
    """One CSV of the export, once staged: a DuckDB table of its kept columns, rows in file order (rowid)."""

    name: str  # orgs.csv | users.csv | roles.csv
    path: Path
    header: list[str]
    table: str  # the DuckDB table
    rows: int = 0  # records staged
    records: int = 0  # records read: staged ones plus those rejected for their structure
    file_rejections: list[Rejection] = field(default_factory=list)  # reported by every pull that reads the file
    rejected_lines: frozenset[int] = frozenset()

    def column(self, name: str) -> int | None:
        lowered = name.lower()
        return next((i for i, h in enumerate(self.header) if h.strip().lower() == lowered), None)


def stage(export: Export, key: str, version: str, open_cursor: Callable[[], duckdb.DuckDBPyConnection]) -> StagedFile:
    """The file for `key` (orgs | users | roles) loaded into DuckDB as the table `stage_<key>` (the view of its
    usable records; `<table>_all` every row, `<table>_repeats` the rows repeating an earlier sourcedId)."""
    name, where = FILES[key], str(export.path)
    if export.modes[key] == "absent":
        raise CsvExportError(name, f"not in this export ({MANIFEST} says file.{key}=absent) but the "
                                   f"{'org' if key == 'orgs' else 'student'} pull needs it", where)
    path = export.copy(name)
    header = header_of(path)
    if not header:
        raise CsvExportError(name, "is empty (no header row)", where)
    file = StagedFile(name, path, header, f"stage_{key}")
    missing = [c for c in REQUIRED[name] if file.column(c) is None]
    if missing:
        raise CsvExportError(name, f"has no {', '.join(missing)} column (header: {len(header)} columns)", where)
    kept = {"orgs": ORG_COLUMNS, "users": USER_COLUMNS[version], "roles": ROLE_COLUMNS}[key]
    _load(file, kept + (("legacy",) if key in ("orgs", "users") else ()), open_cursor, where)
    return file


def _load(file: StagedFile, kept: tuple[str, ...], open_cursor: Callable[[], duckdb.DuckDBPyConnection],
          where: str) -> None:
    """DuckDB reads the CSV (all VARCHAR, strict quoting, short rows padded with NULL) into `<table>_all`; the
    view `<table>` holds its usable records with the `kept` columns, `rec` = the record number in file order.
    Rejected, each with its sourcedId when it can be read: a row DuckDB cannot split (a stray quote, bad UTF-8),
    a row with too few columns or a non-empty cell beyond the header's named columns (empty trailing cells are
    fine). A rejected record that ran over several lines (a stray quote that swallowed the lines after it) has
    its first line emptied and the file is read again, so the swallowed lines are read as the rows they are."""
    swallowers: dict[int, Rejection] = {}
    for _ in range(MAX_REREADS):
        failures, shapes, rows_inside = _read(file, kept, open_cursor, where)
        spans = {line: end for line, end, _, _ in shapes if end > line}
        # DuckDB does not tell how far a broken record ran, and drops a quote open at the end without a word
        open_at, counted, broken_by_quotes = _strict_read(file.path)
        broken = dict.fromkeys(rows_inside) | broken_by_quotes | ({open_at: None} if open_at else {})
        spanning = set(broken) | _swallowers(file.path, spans, len(file.header))
        if not spanning:
            break
        texts = _line_texts(file.path, spanning)
        for line in sorted(spanning):
            swallowers[line] = _structure_rejection(file, line, texts.get(line, ""), "UNQUOTED VALUE")
        blank_lines(file.path, spanning)
    else:
        raise CsvExportError(file.name, f"stray quotes keep swallowing lines (first near line {min(swallowers)}): "
                                        "check the quotes", where)
    texts = _line_texts(file.path, {line for line, _, _, _ in failures})
    file.file_rejections = sorted(
        [_structure_rejection(file, line, texts.get(line, "") if end == line else None, kind)
         for line, end, kind, _ in failures]
        + [_structure_rejection(file, line, None, kind, sid if end == line else None, unattributed=end > line)
           for line, end, kind, sid in shapes]
        + list(swallowers.values()), key=lambda r: int(r.location.rsplit(" ", 1)[1]))
    if swallowers and _has_multiline_records(file.path):
        file.file_rejections = _unattributed_after(min(swallowers), file.file_rejections)
    file.records = file.rows + len(file.file_rejections)
    if counted + len(swallowers) != file.records:  # two CSV readers disagree: no row can be trusted
        first = min((int(r.location.rsplit(" ", 1)[1]) for r in file.file_rejections), default="?")
        raise CsvExportError(file.name, f"its quoting is broken near line {first}: {counted} records by one CSV "
                                        f"reader, {file.records - len(swallowers)} by another; check the quotes",
                             where)
    if file.file_rejections:
        log.warning(f"{file.name} of {where}: {len(file.file_rejections)} rows could not be read "
                    f"(as {len(file.header)} UTF-8 columns) and are skipped")


def _read(file: StagedFile, kept: tuple[str, ...], open_cursor: Callable[[], duckdb.DuckDBPyConnection],
          where: str) -> tuple[list, list, list[int]]:
    """One DuckDB read of the file -> (rows it could not split, rows of the wrong shape), each as
    (first line, last line, DuckDB's error type, sourcedId or None); the first lines of records with a value that
    holds a line break and a row's worth of commas (swallowed rows)."""
    con, n = open_cursor(), len(file.header)
    width = n + SLACK_COLUMNS
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width)) + "}"
    select = []
    for name in kept:
        index = file.column(LEGACY_COLUMN if name == "legacy" else name)
        select.append(f'c{index} AS "{name}"' if index is not None else f'NULL::VARCHAR AS "{name}"')
    extra = " OR ".join(f"trim(c{i}) <> ''" for i in range(n, width))
    rows_inside = " OR ".join(f"(strpos(c{i}, chr(10)) > 0 "
                              f"AND length(c{i}) - length(replace(c{i}, ',', '')) >= {n - 1})" for i in range(width))
    shape = f"CASE WHEN c{n - 1} IS NULL THEN 'MISSING COLUMNS' WHEN {extra} THEN 'TOO MANY COLUMNS' END"
    table, rejects = file.table, f"rejects_{file.table}"
    try:  # nullstr: an empty cell is '' and a padded one NULL (txt() makes both NULL)
        con.execute(f"""
            CREATE OR REPLACE TABLE {table}_all AS SELECT {', '.join(select)}, {shape} AS _shape,
                   {rows_inside} AS _rows_inside
            FROM read_csv(?, columns = {columns}, header = true, auto_detect = false, delim = ',', quote = '"',
                          escape = '"', new_line = '\\n', strict_mode = true, null_padding = true,
                          parallel = false, nullstr = '{NOT_NULL}', ignore_errors = true, store_rejects = true,
                          rejects_table = '{rejects}', rejects_scan = '{rejects}_scan', encoding = 'utf-8')""",
                    [str(file.path)])
    except duckdb.Error as error:
        line = re.search(r"[Ll]ine:? (\d+)", str(error))
        raise CsvExportError(file.name, f"cannot be read as CSV near line {line.group(1) if line else '?'} "
                                        f"({type(error).__name__})", where) from None
    con.execute(f"""CREATE OR REPLACE VIEW {table} AS SELECT rowid AS rec, {', '.join(f'"{k}"' for k in kept)}
                    FROM {table}_all WHERE _shape IS NULL""")
    file.rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    # the rows repeating an earlier row's sourcedId (a narrow window, computed once)
    con.execute(f"""
        CREATE OR REPLACE TABLE {table}_repeats AS
        SELECT rec FROM (SELECT rec, row_number() OVER (PARTITION BY sid("sourcedId") ORDER BY rec) AS k
                         FROM {table} WHERE sid("sourcedId") IS NOT NULL)
        WHERE k > 1""")
    errors = con.execute(f"""
        SELECT coalesce(line_byte_position, byte_position) AS pos, arg_min(error_type, byte_position),
               max(byte_position) FROM {rejects} GROUP BY pos ORDER BY pos""").fetchall()
    bad_shapes = con.execute(f"""SELECT rowid, _shape, sid("sourcedId") FROM {table}_all
                                 WHERE _shape IS NOT NULL ORDER BY rowid""").fetchall()
    inside = [r for (r,) in con.execute(f"SELECT rowid FROM {table}_all WHERE _rows_inside ORDER BY rowid").fetchall()]
    con.close()
    ends = {at: max(end - 1, at) for at, _, end in errors}  # DuckDB's error position may be past the line end
    positions = sorted({*ends, *ends.values()})
    line_at = dict(zip(positions, _lines_at(file.path, positions)))
    starts = [line_at[at] for at, _, _ in errors]
    failures = [(line_at[at], line_at[ends[at]], kind, None) for at, kind, _ in errors]
    file.rejected_lines = frozenset(starts)
    lines = LineIndex(file)
    shapes = [(*lines.span_of(rec), kind, sid) for rec, kind, sid in bad_shapes]
    lines = LineIndex(file)
    return failures, shapes, [lines.line_of(rec) for rec in inside]


def _unattributed_after(first: int, rejections: list[Rejection]) -> list[Rejection]:
    """The rejections from line `first` on without their sourcedIds. A stray quote in a file whose values also run
    over several lines makes quote pairing ambiguous from that line on: a rejected "row" there may be the tail of
    another record's value (its first cell a fragment of a name, not an id), so no id read there can be trusted. A
    rejection without an id makes the pull incomplete: nobody is deactivated by absence until the file is fixed."""
    return [replace(r, sourced_id=None) if int(r.location.rsplit(" ", 1)[1]) >= first else r for r in rejections]


def _has_multiline_records(path: Path) -> bool:
    """Whether a record Python's CSV reader reads from the file runs over more than one line."""
    return any(end > start for start, end, _ in _records(path))


def _structure_rejection(file: StagedFile, line: int, text: str | None, kind: str,
                         sourced_id: str | None = None, unattributed: bool = False) -> Rejection:
    """A row that is not a record of the header's shape: its sourcedId is read from the line when every field up
    to it is clean CSV, but for a row of the wrong width only from the first column (a column too many or too
    few before the sourcedId would shift it). A broken record over several lines (`unattributed`, or no `text`)
    gets none: it may hold other records swallowed by a stray quote, so its rejection must make the pull
    incomplete (nobody deactivated by absence) rather than name one record."""
    index = file.column("sourcedId")
    if unattributed:
        sourced_id = None
    elif kind in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
        sourced_id = (sourced_id or (leading_field(text, 0) if text else None)) if index == 0 else None
    elif text and index is not None:
        sourced_id = leading_field(text, index)
    reason = _STRUCTURE_REASONS.get(kind, kind.lower()).format(n=len(file.header))
    if unattributed:
        reason += ", over several lines (it may hold other records, so no sourcedId is read from it)"
    return Rejection(_ENTITY[file.name], sourced_id, f"{file.name} line {line}", "(record)", reason)


class LineIndex:
    """Record number (DuckDB rowid, 0-based, rows it could split) -> the lines the record spans, by reading the
    file with Python's csv module up to that record, only when a rejection needs it (calls in increasing order)."""

    def __init__(self, file: StagedFile) -> None:
        self.file = file
        self._records: Iterator[tuple[int, int, list[str]]] | None = None
        self._rec = -1
        self._span = (0, 0)

    def line_of(self, rec: int) -> int:
        return self.span_of(rec)[0]

    def span_of(self, rec: int) -> tuple[int, int]:
        if self._records is None or rec < self._rec:
            self._records, self._rec = _records(self.file.path), -1
            next(self._records, None)  # the header
        while self._rec < rec:
            item = next(self._records, None)
            if item is None:  # the readers disagree (a row DuckDB split differently): the best guess
                return rec + 2, rec + 2
            start, end, row = item
            if row and start not in self.file.rejected_lines:
                self._rec, self._span = self._rec + 1, (start, end)
        return self._span


def _records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(line the record starts on, line it ends on, fields) for every record, blank lines as []."""
    with open(path, encoding="utf-8", errors="replace", newline="") as text:
        reader = csv.reader(text)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:  # a NUL byte, a field over the size limit: DuckDB has reported or dropped it
                continue
            yield start, reader.line_num, row


def _strict_read(path: Path) -> tuple[int | None, int, set[int]]:
    """Python's strict reader over the rows: (the line where a quoted value still open at the end of the file
    starts, else None; the records it counted; the first -> last lines of broken records over several lines)."""
    records, open_at, spanning = 0, None, {}
    with open(path, encoding="utf-8", errors="replace", newline="") as text:
        reader = csv.reader(text, strict=True)
        next(reader, None)  # the header
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return open_at, records, spanning
            except csv.Error as error:  # one broken record; the reader goes on at the next line
                records += 1
                if reader.line_num > start:
                    spanning[start] = reader.line_num
                open_at = start if "end of data" in str(error) or "field limit" in str(error) else None
                continue
            records, open_at = records + bool(row), None


def _swallowers(path: Path, spans: dict[int, int], width: int) -> set[int]:
    """The first lines of the broken records (first -> last line) that swallowed a row: a line after the first that
    read alone has the header's `width` (further cells empty). A value legitimately over several lines has none."""
    found: set[int] = set()
    if not spans:
        return found
    starts, last = sorted(spans), max(spans.values())
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            if number > last or len(found) == len(spans):
                break
            inside = [s for s in starts if s < number <= spans[s] and s not in found]
            if inside:
                fields = next(csv.reader([line.rstrip(b"\n").decode("utf-8", errors="replace")]), [])
                if len(fields) >= width and not any(f.strip() for f in fields[width:]):
                    found.update(inside)
    return found


def _line_texts(path: Path, wanted: set[int]) -> dict[int, str]:
    """The text of some lines (1-based) of an LF file, in one pass."""
    texts: dict[int, str] = {}
    if wanted:
        last = max(wanted)
        with open(path, "rb") as raw:
            for number, line in enumerate(raw, start=1):
                if number in wanted:
                    texts[number] = line.rstrip(b"\n").decode("utf-8", errors="replace")
                if number >= last:
                    break
    return texts


def _lines_at(path: Path, positions: list[int]) -> list[int]:
    """Line numbers (1-based) of byte offsets in the file, in one pass (positions sorted ascending)."""
    lines, line, offset, chunk_size = [], 1, 0, 1 << 20
    if not positions:
        return lines
    pending = iter(positions)
    target = next(pending)
    with open(path, "rb") as raw:
        while target is not None:
            chunk = raw.read(chunk_size)
            while target is not None and (not chunk or target < offset + len(chunk)):
                lines.append(line + chunk.count(b"\n", 0, max(target - offset, 0)))
                target = next(pending, None)
            if not chunk:
                break
            line += chunk.count(b"\n")
            offset += len(chunk)
    return lines
