"""OneRoster 1.1 / 1.2 CSV bulk exports (a .zip or a folder) read with the pull interface of `RestSource`.

    with CsvSource.from_path("/sftp/district/oneroster.zip") as source:      # or CsvSource(settings), provider csv
        for batch in source.org_batches(): ...                                # pa.Table, ORG_SCHEMA
        for batch in source.student_batches(): ...                            # pa.Table, USER_SCHEMA
        source.reports["students"], source.rejections

How it reads an export, in bounded memory whatever its size (a district file can hold a million users):
- `manifest.csv` decides the OneRoster version (`oneroster.version`) and which files are there (`file.orgs`,
  `file.users`, `file.roles` = bulk | delta | absent); anything inconsistent is a `CsvExportError` naming the file.
- Each file needed is copied (from the folder, or extracted from the zip) into a private temporary directory, removed
  by `close()`, in one dialect: no byte order mark, LF line ends (dialect.py; header names trimmed, any case,
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

Rows (see ../schemas.py): students are the users whose role (1.1 `role`) or roles (1.2: the roles.csv rows of that
user) include student. `org_sourced_ids`: 1.1 the `orgSourcedIds` list in order; 1.2 the orgs of the user's
roles.csv rows, the primary role first, then in file order. `primary_org_sourced_id`: 1.1 null; 1.2 the org of the
user's primary role (else users.csv `primaryOrgSourcedId`). `grades` from the comma list. An empty `status` (bulk
files leave it empty) is `active`; `inactive` is `tobedeleted`. `dateLastModified` is read as UTC when it has no
offset; empty is null. Never imports dagster.

The parts: export.py (the files, the manifest, `CsvExportError`), reading.py (staging into DuckDB, rejections
of a row's structure, line numbers), queries.py (the SQL of the pulls), source.py (`CsvSource`).
"""

from .export import MANIFEST, CsvExportError
from .source import CsvSource

__all__ = ["MANIFEST", "CsvExportError", "CsvSource"]
