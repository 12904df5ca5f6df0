"""CsvSource: OneRoster 1.1 / 1.2 CSV exports yield the rows of the REST API; bad rows, bad manifests, deltas."""

from __future__ import annotations

import zipfile
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from oneroster_pipeline.client.csv import CsvExportError, CsvSource
from oneroster_pipeline.client.diagnostics import connection_test
from oneroster_pipeline.client.schemas import ORG_SCHEMA, USER_SCHEMA
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import PullReport, open_source
from oneroster_pipeline.demo.csv_export import export_csv

from .client_fixtures import SHAPE, concat, land, serve, settings_for

VERSIONS = ("1.1", "1.2")
PRIMARY = "primary_org_sourced_id"
MASTER = "user_master_identifier"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo district (with overlay changes), its CSV exports in both versions and its REST API rows."""
    with serve(SHAPE, auth="none") as provider:
        district = provider.district
        ids = district.student_ids()
        district.update_student(ids[3], givenName="Zoë", status="tobedeleted")
        district.update_student(ids[4], enabledUser=False, grades=["05", "06"])
        district.remove_student(ids[5])
        district.add_school("Riverside Academy")
        folder = tmp_path_factory.mktemp("exports")
        zips = {v: export_csv(district, folder / f"oneroster-{v}.zip", v) for v in VERSIONS}
        rest = {}
        for version in VERSIONS:
            with open_source(settings_for(provider, version)) as source:
                rest[version] = (concat(source.org_batches()), concat(source.student_batches()))
        yield SimpleNamespace(district=district, zips=zips, rest=rest, counts=district.counts())


def pull(source: CsvSource) -> tuple[pa.Table, pa.Table]:
    orgs = list(source.org_batches())
    students = list(source.student_batches())
    for batch in orgs + students:
        assert batch.num_rows and batch.num_rows <= source.batch_rows
    assert {b.schema for b in orgs} == {ORG_SCHEMA} and {b.schema for b in students} == {USER_SCHEMA}
    return concat(orgs), concat(students)


# ---- the demo district: CSV == REST --------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_csv_export_yields_the_rows_of_the_rest_api(demo, version):
    settings = ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "csv",
                                            "ONEROSTER_CSV_PATH": str(demo.zips[version])})
    with open_source(settings) as source:
        assert isinstance(source, CsvSource) and source.version == version
        source.batch_rows = 40
        orgs, students = pull(source)
        assert source.rejections == []
        reports = source.reports
    rest_orgs, rest_students = demo.rest[version]
    assert orgs.equals(rest_orgs)
    assert students.equals(rest_students)
    assert students.num_rows == demo.counts["students"] and orgs.num_rows == demo.counts["orgs"]
    report = reports["students"]
    assert isinstance(report, PullReport) and report.complete and report.incomplete_reason is None
    assert (report.rows, report.skipped, report.received) == \
        (demo.counts["students"], demo.counts["teachers"], demo.counts["users"])
    assert (report.duplicates, report.rejected, report.pages) == (0, 0, -(-demo.counts["students"] // 40))
    assert report.endpoint == ("users.csv + roles.csv" if version == "1.2" else "users.csv")
    assert reports["orgs"].complete and reports["orgs"].rows == demo.counts["orgs"]


def test_1_1_and_1_2_csv_give_identical_rows(demo):
    with CsvSource.from_path(demo.zips["1.1"]) as v11, CsvSource.from_path(demo.zips["1.2"]) as v12:
        orgs11, students11 = pull(v11)
        orgs12, students12 = pull(v12)
    assert orgs11.equals(orgs12)
    assert students11.drop_columns([PRIMARY, MASTER]).equals(students12.drop_columns([PRIMARY, MASTER]))
    assert set(students11.column(PRIMARY).to_pylist()) == {None}  # 1.1 has no primary org
    assert set(students11.column(MASTER).to_pylist()) == {None}  # nor a userMasterIdentifier column
    assert students12.column(MASTER).to_pylist() == [f"SSID{i}" for i in students12.column("identifier").to_pylist()]
    assert students12.column(PRIMARY).to_pylist() == [o[0] for o in students12.column("org_sourced_ids").to_pylist()]
    rows = students12.to_pylist()
    assert {r["status"] for r in rows} == {"active", "tobedeleted"} and {r["enabled_user"] for r in rows} == {True,
                                                                                                             False}
    assert any(len(r["org_sourced_ids"]) > 1 for r in rows)


@pytest.mark.parametrize("version", VERSIONS)
def test_user_master_identifier_lands_in_oneroster_users(demo, tmp_path, version):
    """1.2 users.csv's userMasterIdentifier column lands in oneroster_users; 1.1 has none (NULL)."""
    with CsvSource.from_path(demo.zips[version]) as source, land(source, tmp_path) as con:
        landed = dict(con.execute("SELECT sourced_id, user_master_identifier FROM oneroster_users").fetchall())
    users = [u for u in demo.district.expected_users() if u["role"] == "student"]
    assert landed == {u["sourcedId"]: u["userMasterIdentifier"] if version == "1.2" else None for u in users}
    assert version == "1.1" or all(v.startswith("SSID") for v in landed.values())


def test_a_1_2_users_csv_without_the_user_master_identifier_column_gives_null(tmp_path):
    users = ("sourcedId,status,dateLastModified,enabledUser,username,givenName,familyName,identifier,grades\n"
             "u1,,,true,u1,Ann,Smith,ID-1,09\n")
    roles = "sourcedId,userSourcedId,roleType,role,orgSourcedId\nr1,u1,primary,student,o1\n"
    with CsvSource.from_path(write_export(tmp_path, MANIFEST_12, {"orgs.csv": ORGS, "users.csv": users,
                                                                 "roles.csv": roles})) as source:
        rows = concat(source.student_batches()).to_pylist()
        assert source.rejections == []
    assert [(r["sourced_id"], r["identifier"], r[MASTER]) for r in rows] == [("u1", "ID-1", None)]


def test_students_come_in_file_order_and_a_folder_reads_like_the_zip(demo, tmp_path):
    with zipfile.ZipFile(demo.zips["1.2"]) as archive:
        archive.extractall(tmp_path)
    expected = [u["sourcedId"] for u in demo.district.expected_users() if u["role"] == "student"]
    for path in (tmp_path, tmp_path / "manifest.csv"):
        with CsvSource.from_path(path, batch_rows=64) as source:
            ids = [i for b in source.student_batches() for i in b.column("sourced_id").to_pylist()]
            assert ids == expected
            assert source.fetch_school_count() == demo.counts["schools"]


def test_connection_test_reads_the_schools(demo):
    with CsvSource.from_path(demo.zips["1.1"]) as source:
        report = connection_test(source)
    assert report.ok and report.error is None
    assert (report.school_count, report.school_count_exact, report.version) == (demo.counts["schools"], True, "1.1")


def test_close_removes_the_extracted_files(demo):
    source = CsvSource.from_path(demo.zips["1.2"])
    list(source.org_batches())
    temporary = source._tmp
    assert (temporary / "orgs.csv").exists() and not (temporary / "users.csv").exists()  # only what a pull needs
    source.close()
    assert not temporary.exists()
    source.close()  # twice is fine


# ---- hand-written exports: values, bad rows, manifests -------------------------------------------------------------
MANIFEST_11 = {"manifest.version": "1.0", "oneroster.version": "1.1", "file.orgs": "bulk", "file.users": "bulk",
               "file.roles": "absent", "file.enrollments": "absent"}
MANIFEST_12 = {**MANIFEST_11, "oneroster.version": "1.2", "file.roles": "bulk"}
ORGS = ("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
        "d1,,,District,district,D,\n"
        "o1,active,2025-07-01T00:00:00Z,North High,School,N1,d1\n"
        "o2,inactive,2025-07-02T00:00:00Z,South Middle,school,S2,d1\n")
USERS_11_HEADER = ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
                   "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n")


def write_export(folder: Path, manifest: dict | None, files: dict[str, str], as_zip: bool = False) -> Path:
    """An export folder (or zip) with manifest.csv from `manifest` (None: no manifest) and the given files."""
    contents = dict(files)
    if manifest is not None:
        contents["manifest.csv"] = "propertyName,value\n" + "".join(f"{k},{v}\n" for k, v in manifest.items())
    if as_zip:
        path = folder / "export.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in contents.items():
                archive.writestr(f"district/{name}", text)  # in a sub-folder, as some exporters do
        return path
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def user11(sid: str, role: str = "student", enabled: str = "true", status: str = "", date: str = "",
           orgs: str = "o1", grades: str = "09", given: str = "Ann", password: str = "") -> str:
    return (f'{sid},{status},{date},{enabled},"{orgs}",{role},{sid}-name,"{{LDAP:{sid}}}",{given},Smith,,'
            f'ID-{sid},{sid}@example.org,,,,"{grades}",{password}\n')


def test_values_are_normalised_like_the_rest_source(tmp_path):
    users = USERS_11_HEADER + "".join([
        user11("s1", status="inactive", enabled="True", date="2025-07-01T10:00:00", grades=" 09, 10,09",
               orgs="o2, o1,o2"),
        user11("s2", role="Student", enabled="FALSE", date="2025-07-01T12:00:00+02:00", password="hunter2"),
        user11("t1", role="teacher"),
    ])
    with CsvSource.from_path(write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS, "users.csv": users},
                                          as_zip=True)) as source:
        orgs, students = pull(source)
        staged = source._cursor().sql("SELECT * FROM stage_users")
        assert "password" not in [c.lower() for c in staged.columns]
        assert "hunter2" not in str(staged.fetchall())
    s1, s2 = students.to_pylist()
    utc = timezone.utc
    # grades are trimmed; ids are opaque (issue 24): " o1" is another id than "o1", kept as given
    assert (s1["status"], s1["enabled_user"], s1["grades"], s1["org_sourced_ids"], s1["roles"]) == \
        ("tobedeleted", True, ["09", "10"], ["o2", " o1"], ["student"])
    assert s1["date_last_modified"] == datetime(2025, 7, 1, 10, tzinfo=utc)
    assert (s2["status"], s2["enabled_user"], s2["date_last_modified"]) == ("active", False,
                                                                            datetime(2025, 7, 1, 10, tzinfo=utc))
    assert (s2["given_name"], s2["email"], s2["middle_name"], s2[PRIMARY]) == ("Ann", "s2@example.org", None, None)
    assert "hunter2" not in str(students.to_pylist())
    assert orgs.to_pylist()[0] == {"sourced_id": "d1", "status": "active", "date_last_modified": None,
                                   "name": "District", "type": "district", "identifier": "D",
                                   "parent_sourced_id": None, "legacy_sourced_id": None}
    assert [(o["type"], o["status"]) for o in orgs.to_pylist()[1:]] == [("school", "active"),
                                                                         ("school", "tobedeleted")]


def test_bad_rows_are_reported_with_file_and_line_and_skipped(tmp_path):
    users = USERS_11_HEADER + "".join([
        user11("s1", given='"Ann\nMarie"'),                               # lines 2-3: a line break in a value
        user11("s2", enabled="maybe", given="Private Name"),               # 4
        user11("", given="Private Name"),                                  # 5: no sourcedId
        user11("s3", date="yesterday", given="Private Name"),              # 6
        user11("s4").replace("\n", ",extra\n"),                            # 7: a column too many
        user11("s5"),                                                      # 8
        user11("s1"),                                                      # 9: a duplicate, not a rejection
        user11("t1", role="teacher", enabled="maybe"),                     # 10: not a student: skipped unchecked
        "s6,,,true\n",                                                     # 11: too few columns
        "\n",                                                              # 12: a blank line is no record
        user11("s7"),                                                      # 13
    ])
    path = write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS, "users.csv": users})
    with CsvSource.from_path(path, batch_rows=3) as source:
        students = concat(source.student_batches())
        rejections, report = list(source.rejections), source.reports["students"]
        list(source.org_batches())
        assert source.rejections == []  # the rejections of the latest pull only
    # s2 and s3: an unreadable enabledUser / dateLastModified is dropped (NULL), the student kept (issue 25)
    assert sorted(students.column("sourced_id").to_pylist()) == ["s1", "s2", "s3", "s5", "s7"]
    assert students.filter(pc.equal(students.column("sourced_id"), "s1")).column(
        "given_name").to_pylist() == ["Ann\nMarie"]
    kept = {r["sourced_id"]: r for r in students.to_pylist()}
    assert kept["s2"]["enabled_user"] is None and kept["s3"]["date_last_modified"] is None
    assert sorted((r.location, r.field, r.sourced_id, r.entity, r.kind) for r in rejections) == [
        ("users.csv line 11", "(record)", "s6", "user", "rejected"),  # a row of the wrong shape: its first field
        ("users.csv line 4", "enabledUser", "s2", "user", "value_dropped"),
        ("users.csv line 5", "sourcedId", None, "user", "rejected"),
        ("users.csv line 6", "dateLastModified", "s3", "user", "value_dropped"),
        ("users.csv line 7", "(record)", "s4", "user", "rejected"),
    ]
    reasons = {r.location: r.reason for r in rejections}
    assert reasons["users.csv line 7"] == "too many columns (expected 18)"
    assert reasons["users.csv line 11"] == "too few columns (expected 18)"
    assert "Private Name" not in repr(rejections)  # an enumeration value is named (issue 13), a name never
    assert reasons["users.csv line 4"] == "unknown value 'maybe' (not a OneRoster enabledUser: true or false)"
    assert (report.rejected, report.duplicates, report.duplicate_sample, report.rows) == (3, 1, ["s1"], 5)
    assert report.complete and report.received == 10 and report.skipped == 1


def test_a_byte_order_mark_crlf_and_a_row_that_is_not_utf8(tmp_path):
    users = (USERS_11_HEADER + user11("s1", given="Ren\xe9e") + user11("s2", given="Zo\u00eb")).replace("\n", "\r\n")
    folder = write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS})
    (folder / "users.csv").write_bytes(b"\xef\xbb\xbf" + users.replace("Ren\xe9e", "Ren\udce9e").encode(
        "utf-8", errors="surrogateescape"))  # s1's name in Latin-1
    with CsvSource.from_path(folder) as source:
        rows = concat(source.student_batches()).to_pylist()
        rejections = source.rejections
    assert [(r["sourced_id"], r["given_name"], r["grades"]) for r in rows] == [("s2", "Zo\u00eb", ["09"])]
    assert [(r.location, r.field, r.reason) for r in rejections] == [("users.csv line 2", "(record)",
                                                                      "not valid UTF-8")]


def test_1_2_roles_give_orgs_in_file_order_the_primary_org_and_bad_role_rows_are_reported(tmp_path):
    users = ("sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,"
             "identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,"
             "preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns\n"
             "u1,,,true,u1,,Ann,Smith,,,,,,,09,,,,,,,,\n"
             "u2,,,true,u2,,Bob,Jones,,,,,,,,,,,,,,,\n"
             "u3,,,false,u3,,Cy,Lee,,,,,,,10,,,,,,,o2,\n"
             ",,,true,nobody,,Private,Name,,,,,,,,,,,,,,,\n"
             "u4,,,true,u4,,Di,Ray,,,,,,,,,,,,,,,\n")
    roles = ("sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,"
             "userProfileSourcedId\n"
             "r1,,,u1,secondary,student,,,o2,\n"
             "r2,,,u1,primary,Student,,,o1,\n"
             "r3,,,u1,secondary,aide,,,o2,\n"
             "r4,,,u2,primary,teacher,,,o1,\n"
             "r5,,,u3,secondary,student,,,o1,\n"
             "r6,,,,primary,student,,,o1,\n"
             "r7,,,u4,primary,,,,o1,\n")
    path = write_export(tmp_path, MANIFEST_12, {"orgs.csv": ORGS, "users.csv": users, "roles.csv": roles})
    with CsvSource.from_path(path) as source:
        rows = {r["sourced_id"]: r for r in concat(source.student_batches()).to_pylist()}
        rejections, report = source.rejections, source.reports["students"]
    assert set(rows) == {"u1", "u3"}
    # roles.csv's order, as REST keeps roles[] (issue 25); the primary org is the student role's roleType primary
    assert (rows["u1"]["org_sourced_ids"], rows["u1"][PRIMARY], rows["u1"]["roles"]) == \
        (["o2", "o1"], "o1", ["student", "aide"])
    assert (rows["u3"]["org_sourced_ids"], rows["u3"][PRIMARY]) == (["o1"], "o2")  # no primary role: users.csv's
    assert sorted((r.location, r.field, r.entity, r.sourced_id) for r in rejections) == [
        ("roles.csv line 7", "userSourcedId", "role", "r6"),
        ("roles.csv line 8", "role", "role", "r7"),
        ("users.csv line 5", "sourcedId", "user", None),
        ("users.csv line 6", "role", "user", "u4"),  # no usable role: rejected "missing", not skipped (issue 13)
    ]
    assert report.skipped == 1 and report.rows == 2  # u2 (teacher)


def test_modified_since_keeps_later_and_undated_rows(tmp_path):
    users = USERS_11_HEADER + "".join([user11("s1", date="2025-07-01T00:00:00Z"),
                                       user11("s2", date="2025-08-01T00:00:00Z"), user11("s3")])
    with CsvSource.from_path(write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS, "users.csv": users})) as source:
        delta = concat(source.student_batches(modified_since=datetime(2025, 7, 15)))
        assert source.reports["students"].filter == "dateLastModified>'2025-07-15T00:00:00Z'"
        assert concat(source.student_batches()).num_rows == 3
    assert delta.column("sourced_id").to_pylist() == ["s2", "s3"]


def test_a_delta_users_file_is_not_a_full_pull(tmp_path):
    manifest = {**MANIFEST_11, "file.users": "delta"}
    users = USERS_11_HEADER + user11("s1", status="active", date="2025-07-01T00:00:00Z")
    with CsvSource.from_path(write_export(tmp_path, manifest, {"orgs.csv": ORGS, "users.csv": users})) as source:
        assert concat(source.student_batches()).num_rows == 1
        list(source.org_batches())
        students, orgs = source.reports["students"], source.reports["orgs"]
    assert not students.complete and "users.csv is a delta file" in students.incomplete_reason
    assert orgs.complete


MANIFEST_ERRORS = [
    ("wrong version", {**MANIFEST_11, "oneroster.version": "1.0"}, {}, "manifest.csv", "oneroster.version is '1.0'"),
    ("no version", {k: v for k, v in MANIFEST_11.items() if k != "oneroster.version"}, {}, "manifest.csv",
     "no oneroster.version"),
    ("versions disagree", {**MANIFEST_12, "manifest.version": "1.1"}, {"roles.csv": "x\n"}, "manifest.csv",
     "inconsistent"),
    ("1.1 with roles", {**MANIFEST_11, "file.roles": "bulk"}, {"roles.csv": "x\n"}, "manifest.csv", "file.roles=bulk"),
    ("1.2 without roles", {**MANIFEST_12, "file.roles": "absent"}, {}, "manifest.csv", "no roles.csv"),
    ("1.2 with 1.1 users", MANIFEST_12, {"roles.csv": "x\n"}, "manifest.csv", "1.1 columns role/orgSourcedIds"),
    ("orgs.csv missing", MANIFEST_11, {"orgs.csv": None}, "orgs.csv", "missing, but manifest.csv says file.orgs=bulk"),
    ("absent file present", {**MANIFEST_11, "file.orgs": "absent"}, {}, "manifest.csv", "file.orgs=absent but"),
    ("bad file mode", {**MANIFEST_11, "file.users": "full"}, {}, "manifest.csv", "file.users is 'full'"),
    ("no manifest", None, {}, "manifest.csv", "missing"),
]


@pytest.mark.parametrize(("manifest", "files", "file", "message"), [e[1:] for e in MANIFEST_ERRORS],
                         ids=[e[0] for e in MANIFEST_ERRORS])
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_a_bad_manifest_or_a_missing_file_is_a_clear_error(tmp_path, manifest, files, file, message, as_zip):
    contents = {"orgs.csv": ORGS, "users.csv": USERS_11_HEADER + user11("s1"), **files}
    path = write_export(tmp_path, manifest, {k: v for k, v in contents.items() if v is not None}, as_zip)
    with pytest.raises(CsvExportError) as caught:
        CsvSource.from_path(path)
    assert caught.value.file == file and str(caught.value).startswith(f"{file}: ") and message in str(caught.value)


def test_errors_when_a_pull_needs_what_the_export_lacks(tmp_path):
    manifest = {**MANIFEST_11, "file.orgs": "absent"}
    path = write_export(tmp_path / "a", manifest, {"users.csv": USERS_11_HEADER + user11("s1")})
    with CsvSource.from_path(path) as source:  # a users-only export: students can be pulled, orgs cannot
        assert concat(source.student_batches()).num_rows == 1
        with pytest.raises(CsvExportError, match=r"^orgs\.csv: not in this export \(manifest\.csv says file\.orgs="):
            list(source.org_batches())
    path = write_export(tmp_path / "b", MANIFEST_11, {"orgs.csv": ORGS, "users.csv": "id,role\nx,student\n"})
    with CsvSource.from_path(path) as source, pytest.raises(CsvExportError, match=r"^users\.csv: has no sourcedId"):
        list(source.student_batches())
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(CsvExportError, match=r"^broken\.zip: not a readable zip"):
        CsvSource.from_path(tmp_path / "broken.zip")
    with pytest.raises(CsvExportError, match="no such file or folder"):
        CsvSource.from_path(tmp_path / "nowhere")


def test_a_quote_never_closed_rejects_its_line_and_the_rest_is_read(tmp_path):
    # the quote opened on line 4 would take in the rest of the file: that line is rejected, s5 is read
    users = (USERS_11_HEADER + user11("s1") + user11("s2") + "s3,,,true,\"o1,student\ns4,,,true,o1,student\n"
             + user11("s5"))
    path = write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS, "users.csv": users})
    with CsvSource.from_path(path) as source:
        ids = concat(source.student_batches()).column("sourced_id").to_pylist()
        rejections = [(r.location, r.sourced_id, r.reason) for r in source.rejections]
    assert ids == ["s1", "s2", "s5"]
    assert rejections == [("users.csv line 4", "s3", _STRAY), ("users.csv line 5", "s4", "too few columns (expected 18)")]


_STRAY = "a stray quote (a quote inside an unquoted value, or text after a closing quote)"


def test_a_stray_quote_is_one_rejected_row(tmp_path):
    users = USERS_11_HEADER + user11("s1") + user11("s2", given='"Ann') + user11("s3")  # closed by a later quote
    with CsvSource.from_path(write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS, "users.csv": users})) as source:
        ids = concat(source.student_batches()).column("sourced_id").to_pylist()
        assert [(r.location, r.field) for r in source.rejections] == [("users.csv line 3", "(record)")]
    assert ids == ["s1", "s3"]
