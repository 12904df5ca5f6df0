"""Connection test: a diagnostic of one provider connection, as a table for the CLI and the UI.

    python -m oneroster_pipeline.connection_test [--building-sis ID ...] [--buildings-csv FILE]

authenticates, then checks, each as one row (check, result, detail): the version path, the auth mode and its
signature method or granted scopes, the envelope keys, which paging headers the server sends and whether they agree
(X-Total-Count vs Link vs the records received), whether `sort`, a `dateLastModified` filter and `fields` are
accepted, the schools visible against the district's known buildings (`building_sis`), and the students shared
against the schools (ClassLink shares only class-enrolled users unless the district turns on "Unenrolled Users").
A CSV export (ONEROSTER_PROVIDER=csv) is read as the sync reads it: the manifest (its OneRoster version and file
modes), every org, and the student pull (users.csv, and roles.csv for 1.2); a file that cannot be read fails the
test, rows the sync would reject are a warning with their count per file.
Exits 0 when the connection works (warnings included), else 1 with the error on stderr, printed once; never prints
a secret or a payload. With the demo provider and no base URL, the command (`oneroster_pipeline/connection_test.py`,
not the client) starts the same built-in demo district as the sync (ONEROSTER_DEMO_SCHOOLS / ONEROSTER_DEMO_STUDENTS
/ ONEROSTER_DEMO_SEED, default 8 / 2000 / 42).

The parts: report.py (`ConnectionReport`, its table), probe.py (`connection_test`), rest_probes.py (the REST
checks), export_probes.py (the CSV export checks), buildings.py (schools against the known buildings), cli.py (the
command line).
"""

from .buildings import known_buildings
from .cli import main
from .probe import connection_test
from .report import FAILED, INFO, OK, WARNING, Check, ConnectionReport

__all__ = ["FAILED", "INFO", "OK", "WARNING", "Check", "ConnectionReport", "connection_test", "known_buildings",
           "main"]
