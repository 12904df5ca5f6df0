"""Property-based tests of CsvSource (hypothesis): small OneRoster 1.1 and 1.2 exports, as a folder or a zip, with
the dialect noise of real exports (byte order mark, CRLF/LF/CR mixes, trailing empty columns in the header and/or
the rows, every field quoted or none, blank optional fields, shuffled columns, header case and spaces) and a few
corrupted rows (a stray quote, a bad date, a column too many). Whatever the input:
- nothing but a CsvExportError escapes;
- every uncorrupted row with a unique sourcedId comes out with the same values;
- every corrupted row comes out or is a Rejection, which carries the row's sourcedId whenever it can be read: all
  fields up to the sourcedId column intact (stray quote) or the sourcedId the first column (a row of the wrong
  width, where a column too many before the sourcedId would shift it); but a broken record over several lines
  carries none (it may hold other records a stray quote swallowed), which makes the pull incomplete.
The number of generated cases is printed (pytest -s) and recorded in CASES; CSV_PROPERTY_EXAMPLES=400 runs more.
Any corrupted row that comes out counts, also when the stray quote made it a non-student (a role, a 1.2 id)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from oneroster_pipeline.client.csv import CsvExportError, CsvSource

COLUMNS = {
    "1.1": ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username", "givenName",
            "familyName", "middleName", "identifier", "email", "grades", "password"),
    "1.2": ("sourcedId", "status", "dateLastModified", "enabledUser", "username", "givenName", "familyName",
            "middleName", "identifier", "email", "grades", "password", "primaryOrgSourcedId"),
}
ROLE_COLUMNS = ("sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role", "orgSourcedId")
ORGS = "sourcedId,name,type\nd1,District,district\no1,North,school\no2,South,school\n"
CASES = {"generated": 0, "export_errors": 0, "corrupted_rows": 0, "ambiguous_quoting": 0}

text = st.text(st.sampled_from("abcXYZ é,'-\"\n"), max_size=8).map(str.strip)
user = st.fixed_dictionaries({
    "status": st.sampled_from(["", "active", "tobedeleted"]),
    "dateLastModified": st.sampled_from(["", "2025-07-01T10:00:00Z", "2025-08-02T00:00:00.000Z"]),
    "enabledUser": st.sampled_from(["", "true", "false"]),
    "givenName": text, "familyName": text, "middleName": text,
    "email": st.sampled_from(["", "a@example.org"]),
    "grades": st.sampled_from(["", "09", "09,10"]),
    "org": st.sampled_from(["o1", "o2"]),
})


@dataclass
class Export:
    version: str
    users: list[dict]
    order: list[int]  # column order (indices into the version's columns)
    quote_all: bool
    bom: bool
    line_ends: list[str]  # cycled over the lines
    header_trailing: int  # empty columns after the header's names
    row_trailing: list[int]  # empty cells after each row's values (cycled)
    header_case: int
    as_zip: bool
    corrupt: dict[int, tuple[str, int]]  # user index -> (kind, where)


@st.composite
def exports(draw) -> Export:
    version = draw(st.sampled_from(["1.1", "1.2"]))
    users = draw(st.lists(user, min_size=1, max_size=6))
    for i, u in enumerate(users):
        u["sourcedId"] = draw(st.sampled_from([f"s{i}", f"S-{i}x", f"{i}0"]))
    n = len(COLUMNS[version])
    order = draw(st.permutations(range(n))) if draw(st.booleans()) else list(range(n))
    corrupt = draw(st.dictionaries(st.integers(0, len(users) - 1),
                                   st.tuples(st.sampled_from(["stray quote", "bad date", "too many columns"]),
                                             st.integers(0, 10_000)), max_size=2))
    return Export(version, users, list(order), draw(st.booleans()), draw(st.booleans()),
                  draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3)),
                  draw(st.integers(0, 3)), draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)),
                  draw(st.integers(0, 2)), draw(st.booleans()), corrupt)


def cell(value: str, quote_all: bool) -> str:
    if quote_all or any(c in value for c in ',"\n\r') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def values_of(u: dict, version: str) -> dict[str, str]:
    extra = {"role": "student", "orgSourcedIds": u["org"], "primaryOrgSourcedId": "", "username": u["sourcedId"],
             "identifier": "", "password": "secret"}
    return {c: {**u, **extra}.get(c, "") for c in COLUMNS[version]}


def serialise(export: Export) -> tuple[dict[str, bytes], dict[int, bool]]:
    """The export's files, and for each corrupted user whether its Rejection must carry the sourcedId."""
    columns = [COLUMNS[export.version][i] for i in export.order]
    names = [(c.upper(), c.lower(), f" {c} ")[export.header_case] if i % 2 else c for i, c in enumerate(columns)]
    lines = [",".join(cell(h, export.quote_all) for h in names) + "," * export.header_trailing]
    must_carry: dict[int, bool] = {}
    for i, u in enumerate(export.users):
        values = values_of(u, export.version)
        kind, where = export.corrupt.get(i, (None, 0))
        if kind == "bad date":
            values["dateLastModified"] = "not a date"
        cells = [cell(values[c], export.quote_all) for c in columns]
        line = ",".join(cells) + "," * export.row_trailing[i % len(export.row_trailing)]
        id_end = len(",".join(cells[:columns.index("sourcedId") + 1]))
        if kind == "too many columns":
            line += ",extra"
            must_carry[i] = columns[0] == "sourcedId"
        elif kind == "stray quote":
            at = where % (len(line) + 1)
            if "role" in columns:  # a quote in the role makes it another role: the row is then no student
                role_start = len(",".join(cells[:columns.index("role")]))
                if role_start <= at <= role_start + len(cells[columns.index("role")]) + 1:
                    at = len(line)
            line = line[:at] + '"' + line[at:]
            must_carry[i] = at > id_end  # after the comma that ends the sourcedId cell
        elif kind:
            must_carry[i] = True
        lines.append(line)
    files = {"users.csv": lines, "orgs.csv": ORGS.splitlines()}
    if export.version == "1.2":
        files["roles.csv"] = [",".join(ROLE_COLUMNS)] + [f"r{i},,,{u['sourcedId']},primary,student,{u['org']}"
                                                           for i, u in enumerate(export.users)]
    manifest = {"manifest.version": "1.0", "oneroster.version": export.version, "file.orgs": "bulk",
                "file.users": "bulk", "file.roles": "bulk" if export.version == "1.2" else "absent"}
    files["manifest.csv"] = [",".join(cell(x, export.quote_all) for x in row)
                             for row in [("propertyName", "value"), *manifest.items()]]
    ends = export.line_ends
    data = {name: ("\ufeff" if export.bom else "") + "".join(line + ends[k % len(ends)] for k, line in enumerate(rows))
            for name, rows in files.items()}
    return {name: content.encode() for name, content in data.items()}, must_carry


def expected(u: dict) -> dict:
    grades = [g for g in u["grades"].split(",") if g]
    return {"sourced_id": u["sourcedId"], "status": u["status"] or "active",
            "given_name": u["givenName"] or None, "family_name": u["familyName"] or None,
            "middle_name": u["middleName"] or None, "email": u["email"] or None,
            "enabled_user": {"": None, "true": True, "false": False}[u["enabledUser"]], "grades": grades,
            "org_sourced_ids": [u["org"]], "date": u["dateLastModified"][:19] or None}


def _blank_user(sourced_id: str, middle_name: str = "") -> dict:
    return {"status": "", "dateLastModified": "", "enabledUser": "", "givenName": "", "familyName": "",
            "middleName": middle_name, "email": "", "grades": "", "org": "o1", "sourcedId": sourced_id}


def _found(version: str, users: list[dict], order: list[int], corrupt: dict) -> Export:
    return Export(version, users, order, False, False, ["\n"], 0, [1] if version == "1.1" else [0], 0, False, corrupt)


# cases 150 examples found: a stray quote in a file whose values also run over lines made one broken record of two
# (the second student vanished under the first's id) or read a name's fragment after a line break as a sourcedId
_SPLIT_NAME = [_blank_user("s0"), _blank_user("s1", ",\nX,")]
FOUND = [
    _found("1.1", _SPLIT_NAME, list(range(14)), {0: ("stray quote", 8)}),
    _found("1.1", _SPLIT_NAME, list(range(14)), {0: ("stray quote", 8), 1: ("stray quote", 4)}),
    _found("1.1", _SPLIT_NAME, list(range(14)), {0: ("stray quote", 8), 1: ("stray quote", 8)}),
    _found("1.2", [_blank_user("s0"), _blank_user("s1", "X\nX"), _blank_user("s2"), _blank_user("s3")],
           [1, 7, 2, 3, 4, 5, 6, 0, 8, 9, 10, 11, 12], {0: ("stray quote", 0), 1: ("stray quote", 17)}),
]


@settings(max_examples=int(os.environ.get("CSV_PROPERTY_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports())
@example(FOUND[0])
@example(FOUND[1])
@example(FOUND[2])
@example(FOUND[3])
def test_any_dialect_and_a_few_corrupted_rows(export):
    CASES["generated"] += 1
    files, must_carry = serialise(export)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export"
        path.mkdir()
        for name, content in files.items():
            (path / name).write_bytes(content)
        if export.as_zip:
            with zipfile.ZipFile(Path(folder) / "export.zip", "w") as archive:
                for name, content in files.items():
                    archive.writestr(f"district/{name}", content)
            path = Path(folder) / "export.zip"
        try:
            with CsvSource.from_path(path) as source:
                rows = [r for batch in source.student_batches() for r in batch.to_pylist()]
                rejections = list(source.rejections)
                skipped = source.reports["students"].skipped  # a stray quote may change a role or (1.2) an id
        except CsvExportError as error:
            CASES["export_errors"] += 1
            # refusing the whole export is the answer only where two CSV readers could split it differently (a
            # stray quote), naming the file and line: a reader that refused every export would fail here
            assert any(kind == "stray quote" for kind, _ in export.corrupt.values()), error
            assert ".csv" in str(error) and "line" in str(error), error
            return
    CASES["corrupted_rows"] += len(export.corrupt)
    ids = [u["sourcedId"] for u in export.users]
    got = {}
    for row in rows:
        row["date"] = row.pop("date_last_modified").strftime("%Y-%m-%dT%H:%M:%S") if row["date_last_modified"] \
            else None
        got.setdefault(row["sourced_id"], row)
    rejected = {r.sourced_id for r in rejections}
    # A stray quote in a file whose values also span lines makes quote pairing ambiguous: the rows between may be
    # swallowed into one unreadable record. The reader then reports a rejection without a sourcedId, which makes
    # the pull incomplete, so nothing is deactivated by absence (the sync's rule); only the rows' own values are
    # unknown until the provider fixes the line.
    spans_lines = any("\n" in v or "\r" in v for u in export.users for v in u.values())
    ambiguous = spans_lines and any(kind == "stray quote" for kind, _ in export.corrupt.values())
    if ambiguous and len(rows) + len(rejections) + skipped < len(export.users):
        CASES["ambiguous_quoting"] += 1
        assert any(r.sourced_id is None for r in rejections), rejections
        return
    assert len(rows) + len(rejections) + skipped >= len(export.users)  # no row vanished without a word
    for i, u in enumerate(export.users):
        if i in export.corrupt:  # came out (maybe with the stray quote in a value) or rejected, with its id if intact
            # a row of the wrong width carries its id only from the first column (a column before it may have shifted)
            shifted = export.order[0] != 0 and any(r.sourced_id is None and "columns" in r.reason for r in rejections)
            # with ambiguous quoting the reader cannot tell whose line it refused: a rejection without a sourcedId
            # (which makes the pull incomplete, so nobody is deactivated by absence) is the honest answer
            # and so is it for a broken record over several lines, which may hold other records
            over_lines = ambiguous or any("\n" in v or "\r" in v for v in u.values())
            unattributable = over_lines and any(r.sourced_id is None for r in rejections)
            if must_carry[i] and not shifted and not unattributable:
                assert u["sourcedId"] in got or u["sourcedId"] in rejected, (i, export.corrupt[i], rejections)
        elif ids.count(u["sourcedId"]) == 1:
            want = expected(u)
            if ambiguous and u["sourcedId"] not in got:  # swallowed by the stray quote: the pull is incomplete
                CASES["ambiguous_quoting"] += 1
                assert any(r.sourced_id is None for r in rejections), rejections
                continue
            assert u["sourcedId"] in got, (i, rejections)
            assert {k: got[u["sourcedId"]][k] for k in want} == want


def teardown_module(module):
    print(f"\ncsv property cases: {CASES}")
