"""Issue 13 (items 4 and 9): one enumeration rule on every source, and ignored students that name the real cause.

Every case is pulled twice: over REST from a small OneRoster server of the test's own on loopback (real HTTP, serving
the odd JSON as is) and from a OneRoster CSV export written by the test; then, where it matters, synced into DuckDB
through the same functions the Dagster assets call (pulls.stage_pull / apply_org_pull / sync_buildings /
apply_student_pull).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from oneroster_pipeline.client.csv import CsvSource
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.warehouse import pulls, store
from oneroster_pipeline.warehouse.buildings import sync_buildings
from oneroster_pipeline.warehouse.policy import HoldPolicy

from ..client.client_fixtures import FAST

# ---- a OneRoster server of the test's own, and a CSV export ------------------------------------------------------


@contextmanager
def rest_district(orgs: list, users: list, version: str = "1.1"):
    """Serve `orgs` on /orgs and `users` on /students exactly as given (paged by limit/offset, X-Total-Count), on
    127.0.0.1; yields the ConnectionSettings of a client pointed at it (no auth)."""
    collections = {"orgs": ("orgs", orgs), "students": ("users", users)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            name = url.path.rstrip("/").rsplit("/", 1)[-1]
            if name not in collections:
                self.send_error(404)
                return
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
            envelope, records = collections[name]
            body = json.dumps({envelope: records[offset:offset + limit]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Total-Count", str(len(records)))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        path = "/ims/oneroster/v1p1" if version == "1.1" else "/ims/oneroster/rostering/v1p2"
        settings = ConnectionSettings.from_env({
            "ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_AUTH": "none", "ONEROSTER_PAGE_SIZE": "3",
            "ONEROSTER_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}{path}"})
        yield settings.with_overrides(**FAST)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


ORG_COLUMNS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId")
USER_COLUMNS = ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username",
                "userIds", "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone",
                "agentSourcedIds", "grades", "password")


def csv_export(folder: Path, orgs: list, users: list) -> ConnectionSettings:
    """A OneRoster 1.1 bulk CSV export of the same records (1.1 JSON -> CSV cells; None and missing -> empty)."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, columns: tuple, records: list) -> None:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow([_cell(record.get(c) if c != "orgSourcedIds" else record.get("orgs"))
                             if c != "parentSourcedId" else _cell(record.get("parent")) for c in columns])
        (folder / name).write_text(out.getvalue(), encoding="utf-8")

    (folder / "manifest.csv").write_text("propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n"
                                         "file.orgs,bulk\nfile.users,bulk\n", encoding="utf-8")
    write("orgs.csv", ORG_COLUMNS, orgs)
    write("users.csv", USER_COLUMNS, users)
    return ConnectionSettings(provider="csv", csv_path=str(folder))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return value.get("sourcedId", "")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def ref(sourced_id: str) -> dict:
    return {"href": f"/orgs/{sourced_id}", "sourcedId": sourced_id, "type": "org"}


def org(sourced_id: str, type_: str | None = "school", **fields) -> dict:
    record = {"sourcedId": sourced_id, "status": "active", "dateLastModified": "2026-01-05T10:00:00Z",
              "name": f"Org {sourced_id}", "type": type_, "identifier": sourced_id.upper(), "parent": ref("d1")}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not MISSING}


def user(sourced_id: str, *orgs: str, **fields) -> dict:
    record = {"sourcedId": sourced_id, "status": "active", "dateLastModified": "2026-01-05T10:00:00Z",
              "enabledUser": "true", "orgs": [ref(o) for o in orgs], "role": "student", "username": sourced_id,
              "givenName": "Given", "familyName": "Family", "identifier": sourced_id.upper(), "grades": ["05"]}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not MISSING}


MISSING = object()  # a field left out of the record
DISTRICT = org("d1", "district", parent=None)
SOURCES = ("rest", "csv")


@contextmanager
def source_of(kind: str, tmp_path: Path, orgs: list, users: list):
    if kind == "rest":
        with rest_district(orgs, users) as settings, open_source(settings) as source:
            yield source
    else:
        with CsvSource(csv_export(tmp_path / "export", orgs, users)) as source:
            yield source


def pull(kind: str, tmp_path: Path, orgs: list, users: list):
    """(org rows, student rows, org rejections, student rejections, student PullReport) by sourcedId."""
    with source_of(kind, tmp_path, orgs, users) as source:
        org_rows = [r for b in source.org_batches() for r in b.to_pylist()]
        org_rejections = list(source.rejections)
        student_rows = [r for b in source.student_batches() for r in b.to_pylist()]
        return ({r["sourced_id"]: r for r in org_rows}, {r["sourced_id"]: r for r in student_rows},
                org_rejections, list(source.rejections), source.reports["students"])


def synced(kind: str, tmp_path: Path, orgs: list, users: list, building_sync: bool = True) -> dict:
    """Pull orgs, (building sync), pull students and apply them to a fresh DuckDB file; the tables as dicts."""
    now = datetime.now(timezone.utc)
    staging = tmp_path / "staging"
    with source_of(kind, tmp_path, orgs, users) as source, store.connect(tmp_path / "db.duckdb") as con:
        pulls.apply_org_pull(con, pulls.stage_pull(source, "orgs", staging), "run-1", now)
        if building_sync:
            with store.transaction(con):
                sync_buildings(con, now)
        students = pulls.stage_pull(source, "students", staging)
        outcome = pulls.apply_student_pull(con, students, "run-1", now, HoldPolicy())
        rows = {table: store.query_dicts(con, f"SELECT * FROM {table}")
                for table in ("buildings", "students", "ignored_students", "oneroster_orgs", "rejected_records")}
        rows["ignored_by_reason"] = outcome.result.ignored_by_reason
        return rows


def by_id(rejections) -> dict:
    return {r.sourced_id: r for r in rejections}


# ---- item 4: unrecognised values are rejected, never reclassified ------------------------------------------------

@pytest.mark.parametrize("kind", SOURCES)
def test_role_stu_dent_is_rejected_with_field_role_not_counted_as_not_a_student(kind, tmp_path):
    users = [user("s1", "sch1"), user("s2", "sch1", role='stu"dent"'), user("t1", "sch1", role="teacher")]
    if kind == "csv":
        users.append(user("a1", "sch1", role="Aide"))  # the CSV export holds every user: a known role, not a student
    _, students, _, rejections, report = pull(kind, tmp_path, [DISTRICT, org("sch1")], users)
    assert set(students) == {"s1"}
    rejected = by_id(rejections)
    assert set(rejected) == {"s2"}
    assert rejected["s2"].field == "role" and rejected["s2"].entity == "user"
    assert rejected["s2"].reason == "unknown value 'stu\"dent\"' (not a OneRoster 1.1/1.2 role)"
    assert report.skipped == (1 if kind == "rest" else 2)  # the teacher (and the aide): not students, as before


@pytest.mark.parametrize("kind", SOURCES)
def test_unknown_status_and_type_are_rejected_and_an_unknown_enabled_user_dropped_naming_the_value(kind, tmp_path):
    orgs = [DISTRICT, org("sch1"), org("sch2", status="Closed"), org("sch3", "campus"),
            org("sch4", type_=MISSING), org("sch5", "EXT:Campus")]
    users = [user("s1", "sch1"), user("s2", "sch1", status="archived"), user("s3", "sch1", enabledUser="yes"),
             user("s4", "sch1", role=MISSING if kind == "rest" else ""),
             user("s5", "sch1", status="x" * 60)]
    org_rows, students, org_rejections, rejections, report = pull(kind, tmp_path, orgs, users)
    assert set(org_rows) == {"d1", "sch1", "sch5"} and org_rows["sch5"]["type"] == "ext:campus"
    assert {r.sourced_id: (r.field, r.reason) for r in org_rejections} == {
        "sch2": ("status", "unknown value 'closed' (not a OneRoster status: active or tobedeleted)"),
        "sch3": ("type", "unknown value 'campus' (not a OneRoster org type)"),
        "sch4": ("type", "missing or empty"),
    }
    # enabledUser is only carried: its unknown value is dropped (NULL), the student kept (issue 25)
    assert set(students) == {"s1", "s3"} and students["s3"]["enabled_user"] is None and report.skipped == 0
    assert {r.sourced_id: (r.field, r.reason, r.kind) for r in rejections} == {
        "s2": ("status", "unknown value 'archived' (not a OneRoster status: active or tobedeleted)", "rejected"),
        "s3": ("enabledUser", "unknown value 'yes' (not a OneRoster enabledUser: true or false)", "value_dropped"),
        "s4": ("role", "missing or empty", "rejected"),
        "s5": ("status", f"unknown value '{'x' * 40}...' (not a OneRoster status: active or tobedeleted)",
               "rejected"),
    }


@pytest.mark.parametrize("kind", SOURCES)
def test_spellings_of_the_vocabulary_are_accepted_and_missing_values_take_their_default(kind, tmp_path):
    orgs = [DISTRICT, org("sch1", " School ", status=" ACTIVE "), org("sch2", status=MISSING),
            org("sch3", status="Inactive")]
    users = [user("s1", "sch1", status=MISSING, enabledUser=MISSING, role=" Student "),
             user("s2", "sch1", status="", enabledUser=" FALSE", role="STUDENT"),
             user("s3", "sch2", status="TobeDeleted", enabledUser="True"),
             user("s4", "sch2", status="inactive", role="ext:Student-Mentor"),
             user("s5", "sch2", role="districtAdministrator")]
    org_rows, students, org_rejections, rejections, report = pull(kind, tmp_path, orgs, users)
    assert org_rejections == [] and rejections == []
    assert {k: (r["type"], r["status"]) for k, r in org_rows.items()} == {
        "d1": ("district", "active"), "sch1": ("school", "active"), "sch2": ("school", "active"),
        "sch3": ("school", "tobedeleted")}
    assert {k: (r["status"], r["enabled_user"], r["roles"]) for k, r in students.items()} == {
        "s1": ("active", None, ["student"]), "s2": ("active", False, ["student"]),
        "s3": ("tobedeleted", True, ["student"])}
    assert report.skipped == 2  # an extension role and a 1.2 role are known roles, not student ones


@pytest.mark.parametrize("kind", SOURCES)
def test_a_school_without_status_gets_a_building_and_its_students(kind, tmp_path):
    orgs = [DISTRICT, org("sch1", status=MISSING if kind == "rest" else ""), org("sch2", status=None)]
    users = [user("s1", "sch1", status=MISSING), user("s2", "sch2", status=None)]
    tables = synced(kind, tmp_path, orgs, users)
    assert {o["sourced_id"]: o["status"] for o in tables["oneroster_orgs"]} == \
        {"d1": "active", "sch1": "active", "sch2": "active"}
    assert {b["building_sis"]: b["status"] for b in tables["buildings"]} == {"sch1": "active", "sch2": "active"}
    assert {s["sourced_id"]: (s["building_sis"], s["status"]) for s in tables["students"]} == \
        {"s1": ("sch1", "active"), "s2": ("sch2", "active")}
    assert tables["ignored_students"] == []


# ---- item 9 and the ignored detail: the real cause ---------------------------------------------------------------

@pytest.mark.parametrize("kind", SOURCES)
def test_students_of_a_tobedeleted_school_are_not_told_to_run_building_sync(kind, tmp_path):
    orgs = [DISTRICT, org("sch1"), org("closed", status="tobedeleted", name="Old Mill Elementary")]
    users = [user("s1", "sch1"), user("s2", "closed", status="tobedeleted"), user("s3", "closed")]
    tables = synced(kind, tmp_path, orgs, users)
    ignored = {i["sourced_id"]: i for i in tables["ignored_students"]}
    assert set(ignored) == {"s2", "s3"}
    for row in ignored.values():
        assert row["reason"] == "school_tobedeleted"
        assert "run building sync" not in row["detail"]
        assert "closed (Old Mill Elementary, tobedeleted)" in row["detail"] and "tobedeleted by the provider" in \
            row["detail"]
    assert tables["ignored_by_reason"] == {"school_not_a_building": 0, "school_tobedeleted": 2, "no_school_org": 0}


@pytest.mark.parametrize("kind", SOURCES)
def test_a_school_without_name_is_still_a_school_and_other_orgs_are_named_with_their_type(kind, tmp_path):
    orgs = [DISTRICT, org("sch1", name=None), org("dep", "department")]
    users = [user("s1", "sch1"), user("s2", "dep", "d1", "gone")]
    tables = synced(kind, tmp_path, orgs, users, building_sync=False)  # no building yet: both ignored
    ignored = {i["sourced_id"]: (i["reason"], i["detail"]) for i in tables["ignored_students"]}
    assert ignored["s1"] == ("school_not_a_building", "school org(s) with no building: sch1 (no name, active) - "
                                                      "run building sync to create buildings for active schools")
    assert ignored["s2"] == ("no_school_org", "orgs are not schools: dep (department), d1 (district), "
                                              "gone (not in the org pull)")


def test_rest_and_csv_reject_and_keep_the_same_records(tmp_path):
    orgs = [DISTRICT, org("sch1"), org("sch2", status=" Closed"), org("sch3", type_=" ")]
    users = [user("s1", "sch1"), user("s2", "sch1", role="Stu dent"), user("s3", "sch1", status="Active "),
             user("s4", "sch1", enabledUser="maybe"), user("s5", "sch1", role="ext:bad value"),
             user("t1", "sch1", role="Teacher")]
    rest = pull("rest", tmp_path / "rest", orgs, users)
    csv_ = pull("csv", tmp_path / "csv", orgs, users)
    assert rest[0] == csv_[0] and rest[1] == csv_[1]
    for rejections in (2, 3):
        assert sorted((r.sourced_id, r.field, r.reason) for r in rest[rejections]) == \
            sorted((r.sourced_id, r.field, r.reason) for r in csv_[rejections])
    assert {r.sourced_id for r in rest[3]} == {"s2", "s4", "s5"}
    assert rest[4].skipped == csv_[4].skipped == 1
