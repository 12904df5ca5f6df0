"""CSV exports written by other tools (issue 13): trailing empty header columns, mixed line endings, byte order
marks, quoted manifests, odd header names, stray quotes; what cannot be read is one CsvExportError naming file and
line; rejected rows carry their sourcedId; the pull report counts the records read per file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from oneroster_pipeline.client.csv import CsvExportError, CsvSource

from .client_fixtures import concat
from .test_csv_source import MANIFEST_11, MANIFEST_12, ORGS, USERS_11_HEADER, user11

BOM = b"\xef\xbb\xbf"
USERS_12_HEADER = ("sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,"
                   "identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,"
                   "resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,"
                   "primaryOrgSourcedId,pronouns")
ROLES_HEADER = ("sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,"
                "userProfileSourcedId")
STRAY = "a stray quote (a quote inside an unquoted value, or text after a closing quote)"


def manifest(entries: dict[str, str], quoted: bool = False) -> str:
    q = '"' if quoted else ""
    return "".join(f"{q}{k}{q},{q}{v}{q}\n" for k, v in {"propertyName": "value", **entries}.items())


def write(folder: Path, files: dict[str, bytes | str], as_zip: bool = False) -> Path:
    data = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    folder.mkdir(parents=True, exist_ok=True)
    if as_zip:
        path = folder / "export.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in data.items():
                archive.writestr(name, content)
        return path
    for name, content in data.items():
        (folder / name).write_bytes(content)
    return folder


def user12(sid: str, given: str = "Ann") -> str:
    return f"{sid},,,true,{sid},,{given},Smith,,,,,,,09,,,,,,,,\n"


def role(rid: str, user: str, role_: str = "student", org: str = "o1", trailing: str = "") -> str:
    return f"{rid},,,{user},primary,{role_},,,{org},{trailing}\n"


def students(path: Path) -> tuple[list[dict], list, object]:
    with CsvSource.from_path(path) as source:
        rows = concat(source.student_batches()).to_pylist()
        return rows, list(source.rejections), source.reports["students"]


# ---- trailing empty header columns ---------------------------------------------------------------------------------
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_roles_header_with_trailing_empty_columns_keeps_every_student(tmp_path, as_zip):
    # the observed export: roles.csv's header ends in ",,"; rows with and without the matching empty cells
    roles = (ROLES_HEADER + ",,\n" + role("r1", "u1") + role("r2", "u2", trailing=",,") + role("r3", "u3", trailing=",")
             + role("r4", "u4", trailing=",,,,,"))
    users = USERS_12_HEADER + "\n" + "".join(user12(f"u{i}") for i in range(1, 5))
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_12), "orgs.csv": ORGS, "users.csv": users,
                            "roles.csv": roles}, as_zip)
    rows, rejections, _ = students(path)
    assert [r["sourced_id"] for r in rows] == ["u1", "u2", "u3", "u4"] and rejections == []
    assert [r["org_sourced_ids"] for r in rows] == [["o1"]] * 4


def test_a_non_empty_cell_beyond_the_named_columns_is_a_rejection_with_the_sourced_id(tmp_path):
    users = (USERS_11_HEADER.rstrip("\n") + ",,\n" + user11("s1") + user11("s2").replace("\n", ",,\n")
             + user11("s3").replace("\n", ",,surprise\n") + user11("s4").replace("\n", ",,,,,,\n"))
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_11), "orgs.csv": ORGS, "users.csv": users})
    rows, rejections, _ = students(path)
    assert [r["sourced_id"] for r in rows] == ["s1", "s2", "s4"]
    assert [(r.location, r.sourced_id, r.reason) for r in rejections] == [
        ("users.csv line 4", "s3", "too many columns (expected 18)")]


# ---- line endings, byte order marks, manifests, header names -------------------------------------------------------
LINE_ENDS = {
    "LF header, CRLF rows": lambda text: text.replace("\n", "\r\n").replace("\r\n", "\n", 1),
    "CRLF header, LF rows": lambda text: text.replace("\n", "\r\n", 1),
    "CR only": lambda text: text.replace("\n", "\r"),
    "mixed per line": lambda text: "".join(line + ("\r\n", "\n", "\r")[i % 3]
                                           for i, line in enumerate(text.splitlines())),
}


@pytest.mark.parametrize("ends", list(LINE_ENDS), ids=list(LINE_ENDS))
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_mixed_line_endings_and_byte_order_marks_in_every_file(tmp_path, ends, version):
    change = LINE_ENDS[ends]
    if version == "1.1":
        files = {"manifest.csv": manifest(MANIFEST_11),
                 "users.csv": USERS_11_HEADER + user11("s1", given='"Ann\nMarie"') + user11("s2") + user11("s3")}
    else:
        files = {"manifest.csv": manifest(MANIFEST_12),
                 "users.csv": USERS_12_HEADER + "\n" + user12("s1", given='"Ann\nMarie"') + user12("s2") + user12("s3"),
                 "roles.csv": ROLES_HEADER + "\n" + role("r1", "s1") + role("r2", "s2") + role("r3", "s3")}
    files["orgs.csv"] = ORGS
    path = write(tmp_path, {name: BOM + change(text).encode() for name, text in files.items()})
    rows, rejections, _ = students(path)
    assert [r["sourced_id"] for r in rows] == ["s1", "s2", "s3"] and rejections == []
    assert rows[0]["given_name"] == "Ann\nMarie"  # a line break inside a value is one LF whatever it was
    with CsvSource.from_path(path) as source:
        assert [o["sourced_id"] for o in concat(source.org_batches()).to_pylist()] == ["d1", "o1", "o2"]


def test_a_row_error_after_mixed_line_endings_names_the_line_an_editor_shows(tmp_path):
    users = (USERS_11_HEADER + user11("s1") + user11("s2") + user11("s3", date="yesterday")).replace("\n", "\r")
    users = users.replace("\r", "\n", 1) + "\r\n"
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_11), "orgs.csv": ORGS, "users.csv": users})
    _, rejections, _ = students(path)
    assert [(r.location, r.field, r.sourced_id) for r in rejections] == [("users.csv line 4", "dateLastModified",
                                                                           "s3")]


def test_a_quoted_manifest_with_odd_case_keys_and_header_names_with_odd_case_and_spaces(tmp_path):
    entries = {"Manifest.Version": "1.0", "OneRoster.Version": "1.1", "file.orgs": "Bulk", "FILE.USERS": "bulk",
               "file.roles": "absent"}
    header = ",".join(f" {h.upper()} " if i % 2 else f'"{h.lower()}"'
                      for i, h in enumerate(USERS_11_HEADER.strip().split(",")))
    users = header + "\n" + user11("s1", given="") + user11("s2")  # a blank optional field
    path = write(tmp_path, {"manifest.csv": BOM + manifest(entries, quoted=True).replace("\n", "\r\n").encode(),
                            "orgs.csv": ORGS, "users.csv": users}, as_zip=True)
    rows, rejections, _ = students(path)
    assert [(r["sourced_id"], r["given_name"], r["family_name"], r["org_sourced_ids"]) for r in rows] == [
        ("s1", None, "Smith", ["o1"]), ("s2", "Ann", "Smith", ["o1"])]
    assert rejections == []


# ---- stray quotes: a rejection that carries the sourcedId ----------------------------------------------------------
def test_a_stray_quote_is_a_rejection_carrying_the_sourced_id(tmp_path):
    users = (USERS_11_HEADER + user11("s1") + user11("s2", given='"Ann"e') + user11("s3")
             + "s4,,,true,o1,student,s4-name,,\"Bob,Smith,,,,,,,,,,\n" + user11("s5"))  # s4: never closed
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_11), "orgs.csv": ORGS, "users.csv": users})
    rows, rejections, report = students(path)
    assert [r["sourced_id"] for r in rows] == ["s1", "s3", "s5"]
    assert [(r.location, r.sourced_id, r.field, r.reason) for r in rejections] == [
        ("users.csv line 3", "s2", "(record)", STRAY), ("users.csv line 5", "s4", "(record)", STRAY)]
    assert report.received == 5 and report.received_by_file == {"users.csv": 5}


def test_a_stray_quote_that_swallows_the_next_rows_rejects_only_its_line(tmp_path):
    # the quote opened in s2's line closes in s4's: s3 and s4 were read as part of s2's name
    users = (USERS_11_HEADER + user11("s1") + "s2,,,true,o1,student,s2-name,,\"Bob,Smith,,,,,,,,,\n"
             + "s3,,,true,o1,student,s3-name,,Cy,Lee,,,,,,,,\n" + 's4,,,true,o1,student,s4-name,,"Di",Ray,,,,,,,,\n'
             + user11("s5"))
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_11), "orgs.csv": ORGS, "users.csv": users})
    rows, rejections, _ = students(path)
    assert [r["sourced_id"] for r in rows] == ["s1", "s3", "s4", "s5"]
    assert [(r.location, r.sourced_id) for r in rejections] == [("users.csv line 3", "s2")]


def test_a_rejected_line_whose_sourced_id_cannot_be_read_carries_none(tmp_path):
    users = USERS_11_HEADER + user11("s1") + '"s2,,,true,o1,student,s2-name,,Bob,Smith,,,,,,,,\n' + user11("s3")
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_11), "orgs.csv": ORGS, "users.csv": users})
    rows, rejections, _ = students(path)
    assert [r["sourced_id"] for r in rows] == ["s1", "s3"]
    assert [(r.location, r.sourced_id) for r in rejections] == [("users.csv line 3", None)]


# ---- what cannot be read: one error naming file and line -----------------------------------------------------------
def test_what_cannot_be_read_is_one_csv_export_error_naming_file_and_line(tmp_path):
    # two readers split these quotes differently: no row can be trusted to be the row it seems
    users = (USERS_11_HEADER + user11("s1") + user11("s2") + user11("s3").replace("true", '""true', 1)
             .replace("{LDAP:s3}", "{LDAP:s3\n}").replace("s3@example.org,", 's3@example.org,"', 1) + user11("s4"))
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_11), "orgs.csv": ORGS, "users.csv": users})
    with CsvSource.from_path(path) as source, pytest.raises(CsvExportError) as caught:
        list(source.student_batches())
    assert caught.value.file == "users.csv"
    assert str(caught.value).startswith("users.csv: its quoting is broken near line 4")


# ---- records read per file -----------------------------------------------------------------------------------------
def test_the_pull_report_counts_the_records_read_per_file(tmp_path):
    users = USERS_12_HEADER + "\n" + user12("u1") + user12("u2") + "u3,,\n" + user12("u4") + user12("t1")
    roles = (ROLES_HEADER + "\n" + role("r1", "u1") + role("r2", "u2") + role("r3", "u4") + role("r4", "t1", "teacher")
             + "r5,,,u1,\"primary,student\n" + role("r6", "", org="o2"))
    path = write(tmp_path, {"manifest.csv": manifest(MANIFEST_12), "orgs.csv": ORGS, "users.csv": users,
                            "roles.csv": roles})
    with CsvSource.from_path(path) as source:
        ids = [r["sourced_id"] for r in concat(source.student_batches()).to_pylist()]
        report = source.reports["students"]
        list(source.org_batches())
        orgs = source.reports["orgs"]
    assert ids == ["u1", "u2", "u4"]
    assert report.received_by_file == {"users.csv": 5, "roles.csv": 6} and report.received == 5
    assert orgs.received_by_file == {"orgs.csv": 3}


def test_the_sql_whitespace_is_every_character_str_strip_removes():
    from oneroster_pipeline.client.csv.queries import WHITESPACE

    assert WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
