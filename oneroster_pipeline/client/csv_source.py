"""`CsvSource`: a OneRoster 1.1 / 1.2 CSV bulk export (a .zip or a folder) with the pull interface of `RestSource`.

    with CsvSource.from_path("/sftp/district/oneroster.zip") as source:      # or CsvSource(settings), provider csv
        for batch in source.org_batches(): ...                                # pa.Table, ORG_SCHEMA
        for batch in source.student_batches(): ...                            # pa.Table, USER_SCHEMA
        source.reports["students"], source.rejections

How it reads an export, in bounded memory whatever its size (a district file can hold a million users):
- `manifest.csv` decides the OneRoster version (`oneroster.version`) and which files are there (`file.orgs`,
  `file.users`, `file.roles` = bulk | delta | absent); anything inconsistent is a `CsvExportError` naming the file.
- Each file needed is copied (from the folder, or extracted from the zip) into a private temporary directory, removed
  by `close()`, in one dialect: no byte order mark, LF line ends (csv_dialect.py; header names trimmed, any case,
  empty trailing header columns ignored).
- Each CSV is read by DuckDB's CSV reader, every column as VARCHAR, into a table of a DuckDB database in that
  temporary directory (DuckDB spills to disk beyond `memory_limit`, 512MB by default: a 1.2 export of a million
  students reads in about 10 s with the process under 0.9 GB); only the needed columns are kept — `password`
  is never read into it. The pulls are SQL over these tables (1.2: roles.csv aggregated per user and joined to
  users.csv), streamed out `batch_rows` rows at a time in file order; per batch, the value rules of normalize.py
  (status, type, enabledUser) are applied to each distinct value, so the CSV and REST sources agree.
- A row that cannot be used becomes a `Rejection` ("users.csv line 17", the field, the reason; no payload value
  beyond the sourcedId, which it carries whenever it can be read) and the pull goes on: a missing sourcedId, an
  unparseable dateLastModified, an enabledUser that is not a boolean, a stray quote, too few columns or a non-empty
  cell beyond the header's (empty trailing cells are fine), a roles.csv row without userSourcedId or role. A line whose
  stray quote swallowed the lines after it is rejected alone and the file read again from the next line. Python's
  strict CSV reader counts every file's records: if the two readers disagree, one CsvExportError names file and line.
  A repeated sourcedId keeps its first row; the others are counted as duplicates, as in the REST pull.
- A `file.users=delta` (or orgs / 1.2 roles) export is reported as not a full pull: `complete` False.

Rows (see records.py): students are the users whose role (1.1 `role`) or roles (1.2: the roles.csv rows of that
user) include student. `org_sourced_ids`: 1.1 the `orgSourcedIds` list in order; 1.2 the orgs of the user's
roles.csv rows, the primary role first, then in file order. `primary_org_sourced_id`: 1.1 null; 1.2 the org of the
user's primary role (else users.csv `primaryOrgSourcedId`). `grades` from the comma list. An empty `status` (bulk
files leave it empty) is `active`; `inactive` is `tobedeleted`. `dateLastModified` is read as UTC when it has no
offset; empty is null. Never imports dagster.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
import tempfile
import weakref
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from . import normalize
from .csv_dialect import blank_lines, header_fields, leading_field, normalise_copy
from .errors import OneRosterError
from .normalize import Rejection
from .paging import DUPLICATE_SAMPLE
from .schemas import ORG_SCHEMA, USER_SCHEMA
from .settings import VERSIONS, ConnectionSettings
from .sources import PullReport, delta_filter

__all__ = ["CsvSource", "CsvExportError", "MANIFEST"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
FILES = {"orgs": "orgs.csv", "users": "users.csv", "roles": "roles.csv"}
FILE_MODES = ("bulk", "delta", "absent")
DEFAULT_BATCH_ROWS = 50_000
# header name (lower-cased) of the Infinite Campus crosswalk id, when an export carries it as a metadata column
LEGACY_COLUMN = "metadata.ic.legacysourceid"
# the columns kept from each file (OneRoster header names; matched case-insensitively); `password` is never one
ORG_COLUMNS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId")
USER_COLUMNS = {
    "1.1": ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username",
            "givenName", "familyName", "middleName", "identifier", "email", "grades"),
    "1.2": ("sourcedId", "status", "dateLastModified", "enabledUser", "username", "givenName", "familyName",
            "middleName", "identifier", "email", "grades", "primaryOrgSourcedId"),
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
_MISSING = "missing or empty"
SLACK_COLUMNS = 16  # empty cells a row may carry beyond the header's named columns
MAX_REREADS = 20  # reads of a file whose stray quotes swallow the lines after them, each emptying those lines
NOT_NULL = "\x01"  # DuckDB's nullstr: no cell is read as NULL, so NULL means a column the row lacks
_SQL_SETUP = (
    "SET TimeZone = 'UTC'",
    "SET preserve_insertion_order = true",
    # text as the REST normaliser sees it: trimmed, empty -> NULL
    "CREATE OR REPLACE MACRO txt(x) AS NULLIF(trim(x, ' ' || chr(9) || chr(10) || chr(13)), '')",
    # a list without repeats, first occurrence kept, order kept
    "CREATE OR REPLACE MACRO uniq(l) AS list_filter(l, lambda v, i: list_position(l, v) = i)",
    # a comma separated cell -> its trimmed, non-empty, distinct items in order
    "CREATE OR REPLACE MACRO csv_list(s) AS "
    "uniq(list_filter(list_transform(string_split(coalesce(s, ''), ','), lambda v: txt(v)), lambda v: v IS NOT NULL))",
    # normalize's role rule, to tell in SQL the users that are not students (skipped) from those the student pull
    # must see: a student, or a user with no role or a role outside the vocabulary (rejected by normalize._role)
    "CREATE OR REPLACE MACRO role_norm(r) AS lower(trim(r, '"
    + "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) + "'))",
    "CREATE OR REPLACE MACRO role_known(r) AS list_contains(['" + "', '".join(sorted(normalize.ROLES)) + "'], "
    f"role_norm(r)) OR regexp_full_match(role_norm(r), '{normalize.EXT_PATTERN}')",
    "CREATE OR REPLACE MACRO pulled_as_student(roles) AS len(roles) = 0 OR "
    "list_bool_or(list_transform(roles, lambda r: role_norm(r) = 'student' OR NOT role_known(r)))",
)


class CsvExportError(OneRosterError):
    """The export cannot be read: a missing or inconsistent manifest.csv, a missing file or column, a corrupt zip
    or file. `file` names the file at fault (e.g. "manifest.csv"); the message starts with it."""

    def __init__(self, file: str, message: str, where: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" + (f" (in {where})" if where else ""))


@dataclass
class _CsvFile:
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


class CsvSource:
    """A OneRoster CSV export (zip or folder), pulled like `RestSource`. Use as a context manager."""

    def __init__(self, settings: ConnectionSettings, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 memory_limit: str = "512MB") -> None:
        if not settings.csv_path:
            raise CsvExportError("ONEROSTER_CSV_PATH", "no CSV export path (the folder or zip of the export)")
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
        self.path = Path(settings.csv_path).expanduser()
        self.batch_rows = batch_rows
        self.reports: dict[str, PullReport] = {}
        self.rejections: list[Rejection] = []
        self._files: dict[str, _CsvFile] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="oneroster-csv-"))  # private (0700); holds extracts and DuckDB
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        try:
            self._locate()
            self.manifest = self._read_manifest()
            self.version = self._check_manifest()
            if settings.version and VERSIONS.get(str(settings.version).strip().lower()) != self.version:
                log.warning(f"ONEROSTER_VERSION is {settings.version} but {MANIFEST} of {self.path} says "
                            f"oneroster.version {self.version}: the manifest decides")
            self.settings = settings.with_overrides(version=self.version)
            self._con = duckdb.connect(str(self._tmp / "staging.duckdb"))
            self._con.execute(f"SET memory_limit = '{memory_limit}'")
            self._con.execute(f"SET temp_directory = '{_sql_str(str(self._tmp / 'spill'))}'")
            for statement in _SQL_SETUP:
                self._con.execute(statement)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_path(cls, path: str | Path, **kwargs) -> CsvSource:
        """A source for the export at `path` (a .zip, a folder, or the folder's manifest.csv)."""
        return cls(ConnectionSettings(provider="csv", csv_path=str(path)), **kwargs)

    def __enter__(self) -> CsvSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close DuckDB and remove the temporary directory (extracted files, staged tables)."""
        if self._con is not None:
            self._con.close()
            self._con = None
        self._cleanup()

    def __repr__(self) -> str:
        return f"CsvSource({self.path}, OneRoster {getattr(self, 'version', '?')})"

    # ---- pulls --------------------------------------------------------------------------------------------------
    def org_batches(self) -> Iterator[pa.Table]:
        """Every row of orgs.csv as ORG_SCHEMA tables of at most `batch_rows` rows, in file order."""
        return self._pull("orgs", "org", ("orgs",), self._org_query, None)

    def student_batches(self, modified_since: datetime | None = None) -> Iterator[pa.Table]:
        """Every user with the student role as USER_SCHEMA tables of at most `batch_rows` rows, in users.csv
        order; with `modified_since` (naive = UTC), only those whose dateLastModified is later or empty (a bulk
        file may leave it empty: such a row cannot be ruled out)."""
        files = ("users", "roles") if self.version == "1.2" else ("users",)
        return self._pull("students", "user", files, self._student_query, modified_since)

    def fetch_school_count(self) -> int:
        """How many orgs of type school orgs.csv holds."""
        table = self._staged("orgs").table
        with self._cursor() as con:
            return con.execute(f"SELECT count(*) FROM {table} WHERE lower(txt(type)) = 'school'").fetchall()[0][0]

    def connection_test(self):
        """Read the export's orgs: a `ConnectionReport` (see connection_test.py)."""
        from .diagnostics import connection_test  # noqa: PLC0415 (that module imports the sources)

        return connection_test(self)

    # ---- the export on disk -------------------------------------------------------------------------------------
    def _locate(self) -> None:
        """Find the export's files: `self._members` maps lower-cased file names to a path or a zip member."""
        path = self.path
        if path.is_file() and path.name.lower() == MANIFEST:
            path = path.parent
        self._zip: Path | None = None
        if path.is_dir():
            self._members = {p.name.lower(): p for p in path.iterdir() if p.is_file()}
            return
        if not path.exists():
            raise CsvExportError(str(self.path), "no such file or folder (ONEROSTER_CSV_PATH: the folder or .zip of "
                                                 "the OneRoster CSV export)")
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as error:
            raise CsvExportError(path.name, f"not a readable zip file ({error})") from None
        manifests = sorted((n for n in names if PurePosixPath(n).name.lower() == MANIFEST),
                           key=lambda n: n.count("/"))
        folder = str(PurePosixPath(manifests[0]).parent) if manifests else "."
        self._zip = path
        self._members = {PurePosixPath(n).name.lower(): n for n in names
                         if str(PurePosixPath(n).parent) == folder}

    def _has(self, name: str) -> bool:
        return name in self._members

    def _local(self, name: str) -> Path:
        """The file copied (from the folder, or extracted from the zip) into the temporary directory in one dialect:
        no byte order mark, LF line ends (csv_dialect.normalise_copy)."""
        member = self._members.get(name)
        if member is None:
            raise CsvExportError(name, f"missing from {self.path}")
        target = self._tmp / name
        if not target.exists():
            try:
                if self._zip is None:
                    with open(member, "rb") as source:
                        normalise_copy(source, target)
                else:
                    with zipfile.ZipFile(self._zip) as archive, archive.open(member) as source:
                        normalise_copy(source, target)
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                target.unlink(missing_ok=True)
                origin = self._zip.name if self._zip else self.path
                raise CsvExportError(name, f"cannot be copied from {origin} ({error})") from None
        return target

    def _read_manifest(self) -> dict[str, str]:
        if not self._has(MANIFEST):
            raise CsvExportError(MANIFEST, "missing: a OneRoster CSV export needs manifest.csv (propertyName,value) "
                                           "naming its OneRoster version and files", str(self.path))
        rows = list(_read_rows(self._local(MANIFEST), MANIFEST))
        if not rows or [h.strip().lower() for h in rows[0][:2]] != ["propertyname", "value"]:
            raise CsvExportError(MANIFEST, "the header must be propertyName,value", str(self.path))
        return {r[0].strip().lower(): r[1].strip() for r in rows[1:] if len(r) >= 2 and r[0].strip()}

    def _check_manifest(self) -> str:
        """The OneRoster version ("1.1" | "1.2") from the manifest, checked against its other entries and the
        files present; anything inconsistent is a CsvExportError naming the file."""
        manifest, where = self.manifest, str(self.path)
        raw = manifest.get("oneroster.version")
        if not raw:
            raise CsvExportError(MANIFEST, "has no oneroster.version (1.1 or 1.2)", where)
        version = VERSIONS.get(raw.lower())
        if version is None:
            raise CsvExportError(MANIFEST, f"oneroster.version is {raw!r}: only OneRoster 1.1 and 1.2 CSV exports "
                                           "can be read", where)
        manifest_version = manifest.get("manifest.version")
        if manifest_version and manifest_version != "1.0":
            if VERSIONS.get(manifest_version.lower()) not in (None, version):
                raise CsvExportError(MANIFEST, f"is inconsistent: manifest.version {manifest_version} but "
                                               f"oneroster.version {raw}", where)
            log.warning(f"{MANIFEST} of {where}: manifest.version is {manifest_version!r} (expected 1.0)")
        self.manifest_modes = {}
        for key, name in FILES.items():
            given = manifest.get(f"file.{key}", "").lower()
            if given and given not in FILE_MODES:
                raise CsvExportError(MANIFEST, f"file.{key} is {given!r}; one of bulk, delta, absent", where)
            mode = given or ("bulk" if self._has(name) else "absent")  # an entry left out: go by the file
            if mode != "absent" and not self._has(name):
                raise CsvExportError(name, f"missing, but {MANIFEST} says file.{key}={mode}", where)
            if mode == "absent" and self._has(name):
                raise CsvExportError(MANIFEST, f"is inconsistent: file.{key}=absent but the export has {name}", where)
            self.manifest_modes[key] = mode
        if version == "1.1" and self.manifest_modes["roles"] != "absent":
            raise CsvExportError(MANIFEST, f"is inconsistent: oneroster.version {raw} but file.roles="
                                           f"{self.manifest_modes['roles']} (roles.csv is OneRoster 1.2)", where)
        if version == "1.2" and self.manifest_modes["users"] != "absent" and self.manifest_modes["roles"] == "absent":
            raise CsvExportError(MANIFEST, f"is inconsistent: oneroster.version {raw} with users.csv but no roles.csv "
                                           "(1.2 users get their roles and orgs from roles.csv)", where)
        if self._has("users.csv"):
            self._check_users_header(version, raw, where)
        return version

    def _check_users_header(self, version: str, raw: str, where: str) -> None:
        header = {h.strip().lower() for h in self._header("users.csv")}
        if version == "1.1" and "role" not in header:
            raise CsvExportError(MANIFEST, f"is inconsistent with users.csv: oneroster.version {raw} but users.csv "
                                           "has no role column (a 1.2 users.csv?)", where)
        if version == "1.2" and {"role", "orgsourcedids"} & header:
            raise CsvExportError(MANIFEST, f"is inconsistent with users.csv: oneroster.version {raw} but users.csv "
                                           "has the 1.1 columns role/orgSourcedIds", where)

    def _header(self, name: str) -> list[str]:
        """The header row of a file (read from the zip member without extracting the whole file)."""
        if self._zip is None:
            return _first_row(self._members[name])
        with zipfile.ZipFile(self._zip) as archive, archive.open(self._members[name]) as raw:
            return header_fields(raw.read(1 << 20))

    # ---- staging ------------------------------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise OneRosterError(f"{self!r} is closed")
        return self._con.cursor()

    def _staged(self, key: str) -> _CsvFile:
        """The file for `key` (orgs | users | roles) loaded into DuckDB, once per source."""
        if key in self._files:
            return self._files[key]
        name = FILES[key]
        if self.manifest_modes[key] == "absent":
            raise CsvExportError(name, f"not in this export ({MANIFEST} says file.{key}=absent) but the "
                                       f"{'org' if key == 'orgs' else 'student'} pull needs it", str(self.path))
        path = self._local(name)
        header = _first_row(path)
        if not header:
            raise CsvExportError(name, "is empty (no header row)", str(self.path))
        file = _CsvFile(name, path, header, f"stage_{key}")
        missing = [c for c in REQUIRED[name] if file.column(c) is None]
        if missing:
            raise CsvExportError(name, f"has no {', '.join(missing)} column (header: {len(header)} columns)",
                                 str(self.path))
        kept = {"orgs": ORG_COLUMNS, "users": USER_COLUMNS[self.version], "roles": ROLE_COLUMNS}[key]
        self._load(file, kept + (("legacy",) if key in ("orgs", "users") else ()))
        self._files[key] = file
        return file

    def _load(self, file: _CsvFile, kept: tuple[str, ...]) -> None:
        """DuckDB reads the CSV (all VARCHAR, strict quoting, short rows padded with NULL) into `<table>_all`; the
        view `<table>` holds its usable records with the `kept` columns, `rec` = the record number in file order.
        Rejected, each with its sourcedId when it can be read: a row DuckDB cannot split (a stray quote, bad UTF-8),
        a row with too few columns or a non-empty cell beyond the header's named columns (empty trailing cells are
        fine). A rejected record that ran over several lines (a stray quote that swallowed the lines after it) has
        its first line emptied and the file is read again, so the swallowed lines are read as the rows they are."""
        swallowers: dict[int, Rejection] = {}
        for _ in range(MAX_REREADS):
            failures, shapes, rows_inside = self._read(file, kept)
            spans = {line: end for line, end, _, _ in shapes if end > line}
            # DuckDB does not tell how far a broken record ran, and drops a quote open at the end without a word
            open_at, counted, broken_by_quotes = _strict_read(file.path)
            broken = dict.fromkeys(rows_inside) | broken_by_quotes | ({open_at: None} if open_at else {})
            spanning = set(broken) | _swallowers(file.path, spans, len(file.header))
            if not spanning:
                break
            texts = _line_texts(file.path, spanning)
            for line in sorted(spanning):
                swallowers[line] = self._structure_rejection(file, line, texts.get(line, ""), "UNQUOTED VALUE")
            blank_lines(file.path, spanning)
        else:
            raise CsvExportError(file.name, f"stray quotes keep swallowing lines (first near line {min(swallowers)}): "
                                            "check the quotes", str(self.path))
        texts = _line_texts(file.path, {line for line, _, _, _ in failures})
        file.file_rejections = sorted(
            [self._structure_rejection(file, line, texts.get(line, ""), kind) for line, _, kind, _ in failures]
            + [self._structure_rejection(file, line, None, kind, sid) for line, _, kind, sid in shapes]
            + list(swallowers.values()), key=lambda r: int(r.location.rsplit(" ", 1)[1]))
        file.records = file.rows + len(file.file_rejections)
        if counted + len(swallowers) != file.records:  # two CSV readers disagree: no row can be trusted
            first = min((int(r.location.rsplit(" ", 1)[1]) for r in file.file_rejections), default="?")
            raise CsvExportError(file.name, f"its quoting is broken near line {first}: {counted} records by one CSV "
                                            f"reader, {file.records - len(swallowers)} by another; check the quotes",
                                 str(self.path))
        if file.file_rejections:
            log.warning(f"{file.name} of {self.path}: {len(file.file_rejections)} rows could not be read "
                        f"(as {len(file.header)} UTF-8 columns) and are skipped")

    def _read(self, file: _CsvFile, kept: tuple[str, ...]) -> tuple[list, list, list[int]]:
        """One DuckDB read of the file -> (rows it could not split, rows of the wrong shape), each as
        (first line, last line, DuckDB's error type, sourcedId or None); the first lines of records with a value that holds a line break and a row's worth of commas (swallowed rows)."""
        con, n = self._cursor(), len(file.header)
        width = n + SLACK_COLUMNS
        columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width)) + "}"
        select = []
        for name in kept:
            index = file.column(LEGACY_COLUMN if name == "legacy" else name)
            select.append(f'c{index} AS "{name}"' if index is not None else f'NULL::VARCHAR AS "{name}"')
        extra = " OR ".join(f"trim(c{i}) <> ''" for i in range(n, width))
        rows_inside = " OR ".join(f"(strpos(c{i}, chr(10)) > 0 AND length(c{i}) - length(replace(c{i}, ',', '')) >= {n - 1})"
                                  for i in range(width))
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
                                            f"({type(error).__name__})", str(self.path)) from None
        con.execute(f"""CREATE OR REPLACE VIEW {table} AS SELECT rowid AS rec, {', '.join(f'"{k}"' for k in kept)}
                        FROM {table}_all WHERE _shape IS NULL""")
        file.rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        # the rows repeating an earlier row's sourcedId (a narrow window, computed once)
        con.execute(f"""
            CREATE OR REPLACE TABLE {table}_repeats AS
            SELECT rec FROM (SELECT rec, row_number() OVER (PARTITION BY txt("sourcedId") ORDER BY rec) AS k
                             FROM {table} WHERE txt("sourcedId") IS NOT NULL)
            WHERE k > 1""")
        errors = con.execute(f"""
            SELECT coalesce(line_byte_position, byte_position) AS pos, arg_min(error_type, byte_position),
                   max(byte_position) FROM {rejects} GROUP BY pos ORDER BY pos""").fetchall()
        bad_shapes = con.execute(f"""SELECT rowid, _shape, txt("sourcedId") FROM {table}_all
                                     WHERE _shape IS NOT NULL ORDER BY rowid""").fetchall()
        inside = [r for (r,) in con.execute(f"SELECT rowid FROM {table}_all WHERE _rows_inside ORDER BY rowid").fetchall()]
        con.close()
        ends = {at: max(end - 1, at) for at, _, end in errors}  # DuckDB's error position may be past the line end
        positions = sorted({*ends, *ends.values()})
        line_at = dict(zip(positions, _lines_at(file.path, positions)))
        starts = [line_at[at] for at, _, _ in errors]
        failures = [(line_at[at], line_at[ends[at]], kind, None) for at, kind, _ in errors]
        file.rejected_lines = frozenset(starts)
        lines = _LineIndex(file)
        shapes = [(*lines.span_of(rec), kind, sid) for rec, kind, sid in bad_shapes]
        lines = _LineIndex(file)
        return failures, shapes, [lines.line_of(rec) for rec in inside]

    def _structure_rejection(self, file: _CsvFile, line: int, text: str | None, kind: str,
                             sourced_id: str | None = None) -> Rejection:
        """A row that is not a record of the header's shape: its sourcedId is read from the line when every field up
        to it is clean CSV, but for a row of the wrong width only from the first column (a column too many or too
        few before the sourcedId would shift it)."""
        index = file.column("sourcedId")
        if kind in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
            sourced_id = (sourced_id or (leading_field(text, 0) if text else None)) if index == 0 else None
        elif text and index is not None:
            sourced_id = leading_field(text, index)
        reason = _STRUCTURE_REASONS.get(kind, kind.lower()).format(n=len(file.header))
        return Rejection(_ENTITY[file.name], sourced_id, f"{file.name} line {line}", "(record)", reason)

    # ---- queries ------------------------------------------------------------------------------------------------
    def _org_query(self, modified_since: datetime | None) -> tuple[str, list]:
        table = self._staged("orgs").table
        return f"""
            SELECT rec, rec IN (SELECT rec FROM {table}_repeats) AS repeated,
                   txt("sourcedId") AS sourced_id, txt(status) AS status,
                   txt("dateLastModified") AS date_text,
                   TRY_CAST(txt("dateLastModified") AS TIMESTAMPTZ) AS date_last_modified,
                   txt(name) AS name, txt(type) AS type, txt(identifier) AS identifier,
                   txt("parentSourcedId") AS parent_sourced_id, txt(legacy) AS legacy_sourced_id
            FROM {table}
            ORDER BY rec""", []

    def _student_query(self, modified_since: datetime | None) -> tuple[str, list]:
        users = self._staged("users").table
        if self.version == "1.1":
            roles = """CASE WHEN txt(role) IS NULL THEN []::VARCHAR[] ELSE [lower(txt(role))] END"""
            orgs, primary, join, unknown_role = 'csv_list("orgSourcedIds")', "NULL::VARCHAR", "", "false"
        else:
            by_user = self._roles_by_user()
            roles, orgs = "coalesce(uniq(r.roles), []::VARCHAR[])", "coalesce(uniq(r.orgs), []::VARCHAR[])"
            primary = 'coalesce(r.primary_org, txt(u."primaryOrgSourcedId"))'
            join = f'LEFT JOIN {by_user} r ON r.user_id = txt(u."sourcedId")'
            unknown_role = "sourced_id IS NULL"  # no id: its roles cannot be known, so it is reported
        since, params = "", []
        if modified_since is not None:
            since, params = " AND (date_last_modified IS NULL OR date_last_modified > ?)", [_utc(modified_since)]
        return f"""
            SELECT * FROM (
                  SELECT u.rec, u.rec IN (SELECT rec FROM {users}_repeats) AS repeated,
                         txt(u."sourcedId") AS sourced_id, txt(u.status) AS status,
                         txt(u."dateLastModified") AS date_text,
                         TRY_CAST(txt(u."dateLastModified") AS TIMESTAMPTZ) AS date_last_modified,
                         txt(u.username) AS username, txt(u."givenName") AS given_name,
                         txt(u."familyName") AS family_name, txt(u."middleName") AS middle_name,
                         txt(u.email) AS email, txt(u.identifier) AS identifier,
                         txt(u."enabledUser") AS enabled_text, {roles} AS roles, {orgs} AS org_sourced_ids,
                         {primary} AS primary_org_sourced_id, csv_list(u.grades) AS grades,
                         txt(u.legacy) AS legacy_sourced_id
                  FROM {users} u {join})
            WHERE (pulled_as_student(roles) OR {unknown_role}){since}
            ORDER BY rec""", params

    def _roles_by_user(self) -> str:
        """roles.csv aggregated per user (once): roles and orgs, the primary role first then file order, and the
        primary role's org. Rows without userSourcedId or role are rejections of the student pull."""
        roles = self._staged("roles")
        table = "roles_by_user"
        con = self._cursor()
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall()[0][0]:
            con.execute(f"""
                CREATE TABLE {table} AS
                SELECT user_id, list_transform(items, lambda x: x.role) AS roles,
                       list_filter(list_transform(items, lambda x: x.org), lambda o: o IS NOT NULL) AS orgs, primary_org
                FROM (SELECT user_id,  -- list_sort of a plain list: an ordered aggregate would not spill to disk
                             list_sort(list({{'secondary': NOT is_primary, 'rec': rec, 'role': role, 'org': org}}))
                                 AS items,
                             arg_min(org, rec) FILTER (WHERE is_primary AND org IS NOT NULL) AS primary_org
                      FROM (SELECT rec, txt("userSourcedId") AS user_id, lower(txt(role)) AS role,
                                   txt("orgSourcedId") AS org,
                                   coalesce(lower(txt("roleType")) = 'primary', false) AS is_primary
                            FROM {roles.table})
                      WHERE user_id IS NOT NULL AND role IS NOT NULL
                      GROUP BY user_id)""")
            bad = con.execute(f"""
                SELECT rec, txt("sourcedId"), CASE WHEN txt("userSourcedId") IS NULL THEN 'userSourcedId'
                                                     ELSE 'role' END
                FROM {roles.table} WHERE txt("userSourcedId") IS NULL OR txt(role) IS NULL ORDER BY rec""").fetchall()
            lines = _LineIndex(roles)
            roles.file_rejections = roles.file_rejections + [
                Rejection("role", sourced_id, f"{roles.name} line {lines.line_of(rec)}", column, _MISSING)
                for rec, sourced_id, column in bad]
        return table

    # ---- one pull -----------------------------------------------------------------------------------------------
    def _pull(self, collection: str, entity: str, keys: tuple[str, ...],
              query: Callable[[datetime | None], tuple[str, list]], modified_since: datetime | None,
              ) -> Iterator[pa.Table]:
        self.rejections = []
        main = self._staged(keys[0])
        sql, params = query(modified_since)  # stages the other files too
        files = [self._files[k] for k in keys]
        report = PullReport(collection, " + ".join(f.name for f in files), self.batch_rows,
                            delta_filter(modified_since) if modified_since else None, None)
        self.reports[collection] = report
        for file in files:
            self.rejections += file.file_rejections
        report.received = main.records
        report.received_by_file = {f.name: f.records for f in files}
        schema = ORG_SCHEMA if entity == "org" else USER_SCHEMA
        lines, seen, cursor = _LineIndex(main), 0, self._cursor()
        try:
            for batch in cursor.sql(sql, params=params).to_arrow_reader(self.batch_rows):
                seen += batch.num_rows
                table = self._finish(batch, schema, entity, main, lines, report)
                report.pages += 1
                report.rows += table.num_rows
                if table.num_rows:
                    yield table
        finally:
            cursor.close()
        report.skipped = main.rows - seen
        report.rejected = len(self.rejections)
        deltas = [f"{f.name} is a delta file ({MANIFEST}: file.{k}=delta)" for k, f in zip(keys, files)
                  if self.manifest_modes[k] == "delta"]
        report.complete = not deltas
        report.incomplete_reason = ("; ".join(deltas) + ": only changed records, not a full pull") if deltas else None
        if deltas or self.rejections or report.duplicates:
            log.warning(f"{collection} from {self.path}: {report.rows} rows, {len(self.rejections)} rejected, "
                        f"{report.duplicates} duplicates, complete={report.complete}")

    def _finish(self, batch: pa.RecordBatch, schema: pa.Schema, entity: str, file: _CsvFile, lines: _LineIndex,
                report: PullReport) -> pa.Table:
        """Apply the per-value rules of normalize.py (status, type, role, enabledUser: one rule with the REST
        source), report duplicates and rejections, and keep the good rows as `schema`."""
        columns = {name: batch.column(name) for name in batch.schema.names}
        columns["status"], _, bad_status = _per_value(columns["status"], _csv_status, pa.string())
        no_text = pa.scalar(None, pa.string())
        problems = [("sourcedId", pc.if_else(pc.is_null(columns["sourced_id"]), _MISSING, no_text)),
                    ("status", bad_status),
                    ("dateLastModified", pc.if_else(pc.and_(pc.is_valid(columns["date_text"]),
                                                            pc.is_null(columns["date_last_modified"])),
                                                    "not an ISO 8601 date-time", no_text))]
        if entity == "org":
            columns["type"], _, bad_type = _per_value(columns["type"], normalize._org_type, pa.string())
            problems.append(("type", bad_type))
        else:
            roles = columns["roles"]
            flat = pc.list_flatten(roles)
            mapped, refused, why = _per_value(flat, normalize._role, pa.string())
            lengths = pc.list_value_length(roles).to_pylist()
            bad_role: list[str | None] = [normalize.MISSING if n == 0 else None for n in lengths]
            if pc.any(refused).as_py():
                for row, reason in zip(pc.list_parent_indices(roles).to_pylist(), why.to_pylist()):
                    if reason and bad_role[row] is None:
                        bad_role[row] = reason
            if not pc.all(pc.equal(mapped, flat)).as_py():  # a value normalize trims further (e.g. a no-break space)
                values, at = mapped.to_pylist(), 0
                new_roles = []
                for n in lengths:
                    new_roles.append(list(dict.fromkeys(v for v in values[at:at + n] if v)))
                    at += n
                columns["roles"] = pa.array(new_roles, pa.list_(pa.string()))
            problems.append(("role", pa.array(bad_role, pa.string())))
            columns["enabled_user"], _, bad_flag = _per_value(columns["enabled_text"], normalize._enabled,
                                                              pa.bool_())
            problems.append(("enabledUser", bad_flag))
        duplicate = columns["repeated"]
        if pc.any(duplicate).as_py():
            ids = pc.filter(columns["sourced_id"], duplicate)
            report.duplicates += len(ids)
            room = DUPLICATE_SAMPLE - len(report.duplicate_sample)
            report.duplicate_sample += ids.slice(0, max(room, 0)).to_pylist()
        rejected = pa.array([False] * batch.num_rows)
        for _, why in problems:
            rejected = pc.or_(rejected, pc.is_valid(why))
        rejected = pc.and_(rejected, pc.invert(duplicate))
        if pc.any(rejected).as_py():
            self._reject(columns, problems, rejected, entity, file, lines)
        keep = pc.invert(pc.or_(rejected, duplicate))
        arrays = [pc.filter(columns[f.name], keep).cast(f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)

    def _reject(self, columns: dict, problems: list, rejected: pa.Array, entity: str, file: _CsvFile,
                lines: _LineIndex) -> None:
        """One Rejection per rejected row: the first field at fault (sourcedId, status, dateLastModified, type or
        role, enabledUser: the order of the REST normaliser) with normalize's reason for it."""
        reasons = [(name, why.to_pylist()) for name, why in problems]
        for i in pc.indices_nonzero(rejected).to_pylist():
            name, reason = next((n, why[i]) for n, why in reasons if why[i] is not None)
            rec = columns["rec"][i].as_py()
            self.rejections.append(Rejection(entity, columns["sourced_id"][i].as_py(),
                                             f"{file.name} line {lines.line_of(rec)}", name, reason))


_ENTITY = {"orgs.csv": "org", "users.csv": "user", "roles.csv": "role"}


class _LineIndex:
    """Record number (DuckDB rowid, 0-based, rows it could split) -> the lines the record spans, by reading the
    file with Python's csv module up to that record, only when a rejection needs it (calls in increasing order)."""

    def __init__(self, file: _CsvFile) -> None:
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


def _first_row(path: Path) -> list[str]:
    """The header's column names, trailing empty ones dropped (a bad byte in a row is that row's problem)."""
    with open(path, "rb") as raw:
        return header_fields(raw.read(1 << 20))


def _read_rows(path: Path, name: str) -> Iterator[list[str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as text:
            yield from csv.reader(text)
    except (UnicodeDecodeError, csv.Error) as error:
        raise CsvExportError(name, f"cannot be read as UTF-8 CSV ({error})") from None


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


def _per_value(values: pa.Array, rule: Callable[[object], object],
               type_: pa.DataType) -> tuple[pa.Array, pa.Array, pa.Array]:
    """`rule` applied once per distinct value -> (the mapped column, a mask of the rows whose value the rule
    refused with normalize's _Reject, the reason of that refusal per row: null where the value was accepted)."""
    distinct = pc.unique(values)
    mapped, reasons = [], []
    for value in distinct.to_pylist():
        try:
            mapped.append(rule(value))
            reasons.append(None)
        except normalize._Reject as reject:
            mapped.append(None)
            reasons.append(reject.reason)
    index = pc.index_in(values, value_set=distinct)
    why = pa.array(reasons, pa.string()).take(index)
    return pa.array(mapped, type_).take(index), pc.is_valid(why), why


def _csv_status(value: object) -> str:
    """normalize's status rule: active | tobedeleted (inactive -> tobedeleted); empty, as bulk files leave it, is
    active (as a REST record without status); any other value is refused (the row is rejected, field status)."""
    return normalize._status(value)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _sql_str(text: str) -> str:
    return text.replace("'", "''")
