"""`CsvSource`: a OneRoster CSV export pulled like `RestSource`: staged tables streamed out in batches, value rules.

The export is found and its manifest checked by export.py, each file staged into DuckDB by reading.py, the rows of
a pull selected by the SQL of queries.py; here each batch gets normalize.py's per-value rules (status, type, role,
enabledUser, and tables.timestamps: the date rule), so the CSV and REST sources agree. A row whose sourcedId,
status, type or role fails them is a `Rejection`; an unreadable dateLastModified or enabledUser is dropped (NULL, a
`value_dropped` rejection) and the row kept.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .. import normalize
from ..errors import OneRosterError
from ..normalize import Rejection
from ..paging import DUPLICATE_SAMPLE, PullReport, delta_filter
from ..schemas import ORG_SCHEMA, USER_SCHEMA
from ..settings import VERSIONS, ConnectionSettings
from ..tables import timestamps
from .export import MANIFEST, CsvExportError, Export
from .queries import SQL_SETUP, org_query, roles_by_user, student_query
from .reading import MISSING, LineIndex, StagedFile, stage

__all__ = ["DEFAULT_BATCH_ROWS", "CsvSource"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 50_000


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
        self._files: dict[str, StagedFile] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="oneroster-csv-"))  # private (0700); holds extracts and DuckDB
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        try:
            self._export = Export(self.path, self._tmp)
            self.manifest, self.manifest_modes = self._export.manifest, self._export.modes
            self.version = self._export.version
            if settings.version and VERSIONS.get(str(settings.version).strip().lower()) != self.version:
                log.warning(f"ONEROSTER_VERSION is {settings.version} but {MANIFEST} of {self.path} says "
                            f"oneroster.version {self.version}: the manifest decides")
            self.settings = settings.with_overrides(version=self.version)
            self._con = duckdb.connect(str(self._tmp / "staging.duckdb"))
            self._con.execute(f"SET memory_limit = '{memory_limit}'")
            self._con.execute(f"SET temp_directory = '{_sql_str(str(self._tmp / 'spill'))}'")
            for statement in SQL_SETUP:
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

    # ---- staging and queries ------------------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise OneRosterError(f"{self!r} is closed")
        return self._con.cursor()

    def _staged(self, key: str) -> StagedFile:
        """The file for `key` (orgs | users | roles) loaded into DuckDB, once per source (reading.stage)."""
        if key not in self._files:
            self._files[key] = stage(self._export, key, self.version, self._cursor)
        return self._files[key]

    def _org_query(self, modified_since: datetime | None) -> tuple[str, list]:
        return org_query(self._staged("orgs"))

    def _student_query(self, modified_since: datetime | None) -> tuple[str, list]:
        users = self._staged("users")
        by_user = roles_by_user(self._cursor(), self._staged("roles")) if self.version == "1.2" else None
        return student_query(self.version, users, by_user, modified_since)

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
        lines, seen, cursor = LineIndex(main), 0, self._cursor()
        try:
            for batch in cursor.sql(sql, params=params).to_arrow_reader(self.batch_rows):
                seen += batch.num_rows
                table = self._apply_value_rules(batch, schema, entity, main, lines, report)
                report.pages += 1
                report.rows += table.num_rows
                if table.num_rows:
                    yield table
        finally:
            cursor.close()
        report.skipped = main.rows - seen
        report.rejected = sum(r.kind == normalize.REJECTED for r in self.rejections)
        deltas = [f"{f.name} is a delta file ({MANIFEST}: file.{k}=delta)" for k, f in zip(keys, files)
                  if self.manifest_modes[k] == "delta"]
        report.complete = not deltas
        report.incomplete_reason = ("; ".join(deltas) + ": only changed records, not a full pull") if deltas else None
        if deltas or report.rejected or report.duplicates:
            log.warning(f"{collection} from {self.path}: {report.rows} rows, {report.rejected} rejected, "
                        f"{report.duplicates} duplicates, complete={report.complete}")

    def _apply_value_rules(self, batch: pa.RecordBatch, schema: pa.Schema, entity: str, file: StagedFile,
                           lines: LineIndex, report: PullReport) -> pa.Table:
        """Apply the per-value rules of normalize.py (status, type, role, enabledUser, the date rule: one rule with
        the REST source), report duplicates, rejections and dropped values, and keep the good rows as `schema`."""
        columns = {name: batch.column(name) for name in batch.schema.names}
        columns["status"], _, bad_status = _per_value(columns["status"], _csv_status, pa.string())
        no_text = pa.scalar(None, pa.string())
        problems = [("sourcedId", pc.if_else(pc.is_null(columns["sourced_id"]), MISSING, no_text)),
                    ("status", bad_status)]
        columns["date_last_modified"], bad_dates = timestamps(columns["date_text"])
        unread = [None] * batch.num_rows
        for i in bad_dates:
            unread[i] = normalize.UNREADABLE_DATE
        drops = [("dateLastModified", pa.array(unread, pa.string()))]
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
            drops.append(("enabledUser", bad_flag))
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
        keep = pc.invert(pc.or_(rejected, duplicate))
        dropped = pa.array([False] * batch.num_rows)
        for _, why in drops:
            dropped = pc.or_(dropped, pc.is_valid(why))
        dropped = pc.and_(dropped, keep)
        if pc.any(pc.or_(rejected, dropped)).as_py():
            self._reject(columns, problems, rejected, drops, dropped, entity, file, lines)
        arrays = [pc.filter(columns[f.name], keep).cast(f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)

    def _reject(self, columns: dict, problems: list, rejected: pa.Array, drops: list, dropped: pa.Array,
                entity: str, file: StagedFile, lines: LineIndex) -> None:
        """In row order: one Rejection per rejected row, the first field at fault (sourcedId, status, type or role:
        the order of the REST normaliser) with normalize's reason for it; one `value_dropped` Rejection per
        unreadable value of a kept row (dateLastModified, enabledUser; the column is already NULL there)."""
        reasons = [(name, why.to_pylist()) for name, why in problems]
        dropped_reasons = [(name, why.to_pylist()) for name, why in drops]
        is_rejected = rejected.to_pylist()
        for i in pc.indices_nonzero(pc.or_(rejected, dropped)).to_pylist():
            where = f"{file.name} line {lines.line_of(columns['rec'][i].as_py())}"
            sourced_id = columns["sourced_id"][i].as_py()
            if is_rejected[i]:
                name, reason = next((n, why[i]) for n, why in reasons if why[i] is not None)
                self.rejections.append(Rejection(entity, sourced_id, where, name, reason))
            else:
                self.rejections += [Rejection(entity, sourced_id, where, name, why[i], normalize.VALUE_DROPPED)
                                    for name, why in dropped_reasons if why[i] is not None]


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


def _sql_str(text: str) -> str:
    return text.replace("'", "''")
