"""Rejection is not absence (issue 13): a record the client could not read is not a record the provider deleted, and
a pull that lands nothing is never green.

The REST tests serve generated OneRoster 1.1 JSON pages from a small server of the test's own over real HTTP on
loopback (the demo provider's overlay always writes valid values, so it cannot serve a corrupt one); the CSV tests
build exports with the demo's `export_csv` and corrupt them by hand. A record is rejected for what decides whether
it can be used (its sourcedId, status, role, type); an unreadable value of a field we only carry (a date, an
enabledUser) is dropped and the record kept (issue 25), which never makes a pull incomplete either.
"""

from __future__ import annotations

import copy
import csv
import io
import tempfile
import threading
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneroster_pipeline.client.normalize import Rejection
from oneroster_pipeline.client.paging import PullReport
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.defs.alerts.sensors import failed_error_checks
from oneroster_pipeline.defs.resources import OneRosterResource
from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.buildings import sync_buildings
from oneroster_pipeline.warehouse.policy import HoldPolicy
from oneroster_pipeline.warehouse.pulls import (
    apply_org_pull,
    apply_student_pull,
    completeness_verdict,
    rejection_findings,
    stage_pull,
)

from .. import loopback
from .sync_harness import STUDENT_CONTENT, SyncHarness, check_evaluation

FULL = {"oneroster/sync_mode": "full"}
BAD_STATUS = "archived"  # not a OneRoster status: the client rejects the record, naming status
BAD_DATE = "15/06/2023"  # day first: not a date we read, so dropped (NULL), the record kept
# hold thresholds out of the way: the property is about what is planned, not about what the hold policy holds
NO_HOLDS = dict(max_deactivate_pct=100.0, max_deactivate=10**6, building_max_deactivate_pct=100.0,
                building_max_deactivate=10**6, max_update_pct=100.0)


# ---- a small OneRoster 1.1 REST server of the test's own --------------------------------------------------------
class Roster:
    """A district as OneRoster 1.1 JSON: a district org, `schools` schools, `students` students spread over them."""

    def __init__(self, schools: int = 4, students: int = 240) -> None:
        stamp = "2026-01-05T08:00:00Z"
        self.orgs = [{"sourcedId": "district-1", "status": "active", "dateLastModified": stamp, "name": "District",
                      "type": "district", "identifier": "D1", "parent": None}]
        self.orgs += [{"sourcedId": f"school-{k}", "status": "active", "dateLastModified": stamp,
                       "name": f"School {k}", "type": "school", "identifier": f"S{k}",
                       "parent": {"sourcedId": "district-1", "type": "org", "href": "/orgs/district-1"}}
                      for k in range(schools)]
        self.students = [{
            "sourcedId": f"student-{i:04d}", "status": "active", "dateLastModified": stamp, "enabledUser": "true",
            "username": f"user{i}", "givenName": f"Given{i}", "familyName": f"Family{i}", "middleName": "",
            "role": "student", "identifier": f"ID{i:05d}", "email": f"user{i}@example.org",
            "grades": [f"{i % 12 + 1:02d}"],
            "orgs": [{"sourcedId": f"school-{i % schools}", "type": "org", "href": f"/orgs/school-{i % schools}"}],
        } for i in range(students)]
        self.lock = threading.Lock()

    def ids(self) -> list[str]:
        return [s["sourcedId"] for s in self.students]

    def corrupt(self, sourced_id: str, kind: str) -> None:
        """Rejections: `status`: status "archived"; `role`: role "stu dent"; `no_id`: no sourcedId. Dropped values
        (the record kept): `date`: dateLastModified 15/06/2023; `enabled`: enabledUser "maybe"."""
        with self.lock:
            record = next(s for s in self.students if s.get("sourcedId") == sourced_id)
            if kind == "status":
                record["status"] = BAD_STATUS
            elif kind == "role":
                record["role"] = "stu dent"
            elif kind == "date":
                record["dateLastModified"] = BAD_DATE
            elif kind == "enabled":
                record["enabledUser"] = "maybe"
            else:
                del record["sourcedId"]

    def corrupt_org(self, sourced_id: str) -> None:
        with self.lock:
            next(o for o in self.orgs if o["sourcedId"] == sourced_id)["status"] = BAD_STATUS

    def remove(self, sourced_id: str) -> None:
        with self.lock:
            self.students = [s for s in self.students if s.get("sourcedId") != sourced_id]

    def page(self, collection: str, offset: int, limit: int) -> tuple[list, int]:
        with self.lock:
            records = self.orgs if collection == "orgs" else self.students
            return copy.deepcopy(records[offset:offset + limit]), len(records)


class RosterServer(loopback.RosterServer):
    """Serves a `Roster` at /ims/oneroster/v1p1/{orgs,students} with limit/offset paging and X-Total-Count."""

    def __init__(self) -> None:
        self.roster = Roster()
        super().__init__(lambda collection, offset, limit: self.roster.page(collection, offset, limit),
                         "/ims/oneroster/v1p1")


@pytest.fixture
def server():
    with RosterServer() as running:
        yield running


@pytest.fixture(scope="module")
def shared_server():
    with RosterServer() as running:
        yield running


def _rest_resource(server: RosterServer) -> OneRosterResource:
    return OneRosterResource(provider="oneroster", base_url=server.base_url, version="1.1", auth="none",
                             page_size="50", max_retries="1")


def _students(harness: SyncHarness) -> list[tuple]:
    return harness.rows(f"SELECT {STUDENT_CONTENT}, deactivated_at FROM students ORDER BY student_id")


# ---- done-when: REST -----------------------------------------------------------------------------------------------
def test_rest_full_pull_with_20_rejected_statuses_deactivates_no_one(server, tmp_path):
    harness = SyncHarness(tmp_path, _rest_resource(server))
    assert harness.run("full_sync").success
    assert harness.scalar("SELECT count(*) FROM students WHERE status = 'active'") == 240
    before = {row[1]: row for row in _students(harness)}
    corrupted = server.roster.ids()[3::11][:20]  # spread over the 4 schools: under every hold threshold
    for sourced_id in corrupted:
        server.roster.corrupt(sourced_id, "status")
    gone = server.roster.ids()[5]  # a student really removed at the provider in the same pull
    server.roster.remove(gone)

    result = harness.run("student_sync", tags=FULL)

    after = {row[1]: row for row in _students(harness)}
    assert {k: v for k, v in after.items() if k != gone} == {k: v for k, v in before.items() if k != gone}
    assert after[gone][-2:] != before[gone][-2:] and after[gone][-2] == "inactive"  # absence still deactivates
    assert harness.rows("SELECT sourced_id, change FROM student_changes WHERE run_id = ?", [result.run_id]) == [
        (gone, "deactivate")]
    assert sorted(harness.rows("SELECT sourced_id, field, kind FROM rejected_records WHERE run_id = ?",
                               [result.run_id])) == [(s, "status", "rejected") for s in sorted(corrupted)]
    assert harness.rows("SELECT complete, rejected, rejected_unidentified, rejected_kept FROM pull_reports "
                        "WHERE run_id = ? AND collection = 'students'", [result.run_id]) == [(True, 20, 0, 20)]
    assert check_evaluation(result, "pull_complete").passed
    check = next(e for e in result.get_asset_check_evaluations()
                 if e.check_name == "rejections_within_tolerance" and e.asset_key == dg.AssetKey("oneroster_users"))
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "20 of the 239 records read were rejected" in check.description
    assert "20 existing row(s) of rejected records kept" in check.description
    sample = check.metadata["rejected_sample"].value
    assert sample.count(BAD_STATUS) == 20 and "GET /students offset 0, item " in sample
    assert any("rejections_within_tolerance" in line for line in failed_error_checks(harness.instance, result.run_id))


def test_rest_school_with_a_rejected_status_keeps_its_building(server, tmp_path):
    harness = SyncHarness(tmp_path, _rest_resource(server))
    assert harness.run("full_sync").success
    before = harness.rows("SELECT building_id, building_sis, status FROM buildings ORDER BY building_id")
    server.roster.corrupt_org("school-1")
    result = harness.run("building_sync")
    assert harness.rows("SELECT building_id, building_sis, status FROM buildings ORDER BY building_id") == before
    assert harness.rows("SELECT name FROM oneroster_orgs WHERE sourced_id = 'school-1'") == [("School 1",)]
    assert harness.rows("SELECT sourced_id, field FROM rejected_records WHERE run_id = ?", [result.run_id]) == [
        ("school-1", "status")]
    check = check_evaluation(result, "rejections_within_tolerance")
    assert check.asset_key == dg.AssetKey("oneroster_orgs") and not check.passed  # 1 of 5 orgs: 20 %
    assert "1 of the 5 records read were rejected (20.0%)" in check.description


# ---- property: no valid student is ever deactivated by a corrupted neighbour ---------------------------------------
def _sync(con, source, staging: Path, run: str, now: datetime):
    """The framework-free path the Dagster assets compose: orgs, buildings, then students."""
    orgs = stage_pull(source, "orgs", staging / run)
    apply_org_pull(con, orgs, run, now)
    with store.transaction(con):
        sync_buildings(con, now)
    students = stage_pull(source, "students", staging / run)
    return students, apply_student_pull(con, students, run, now, HoldPolicy(**NO_HOLDS))


CORRUPTIONS = st.dictionaries(st.integers(0, 239), st.sampled_from(["status", "role", "no_id", "date", "enabled"]),
                              max_size=30)
DROPPED = {"date", "enabled"}  # values dropped, the record kept: neither a rejection nor an absence


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruptions=CORRUPTIONS, removals=st.sets(st.integers(0, 239), max_size=5))
def test_no_valid_student_is_deactivated_by_a_corrupted_neighbour(shared_server, corruptions, removals):
    shared_server.roster = Roster()
    ids = shared_server.roster.ids()
    settings_ = ConnectionSettings(provider="oneroster", base_url=shared_server.base_url, version="1.1",
                                   auth="none", page_size=40, max_retries=1)
    with tempfile.TemporaryDirectory() as tmp, open_source(settings_) as source, \
            store.connect(Path(tmp) / "oneroster.duckdb") as con:
        _sync(con, source, Path(tmp), "clean", datetime(2026, 3, 2, tzinfo=timezone.utc))
        content = f"SELECT sourced_id, {STUDENT_CONTENT}, deactivated_at FROM students"
        before = {row[0]: row for row in con.execute(content).fetchall()}
        assert len(before) == 240 and all(row[-1] is None for row in before.values())

        removed = {ids[i] for i in removals - set(corruptions)}
        for i, kind in corruptions.items():
            shared_server.roster.corrupt(ids[i], kind)
        for sourced_id in removed:
            shared_server.roster.remove(sourced_id)
        pull, done = _sync(con, source, Path(tmp), "corrupted", datetime(2026, 3, 3, tzinfo=timezone.utc))
        after = {row[0]: row for row in con.execute(content).fetchall()}

    still_there = set(ids) - removed
    enabled_at = ["sourced_id", *STUDENT_CONTENT.split(", ")].index("enabled_user")
    for i, kind in corruptions.items():  # a dropped enabledUser is NULL: the student kept, that value gone
        if kind == "enabled":
            before[ids[i]] = before[ids[i]][:enabled_at] + (None,) + before[ids[i]][enabled_at + 1:]
    assert {s: after[s] for s in still_there} == {s: before[s] for s in still_there}
    unidentified = any(kind == "no_id" for kind in corruptions.values())
    assert pull.verdict.complete is not unidentified
    if unidentified:  # an unreadable sourcedId: nothing is deactivated by absence
        assert done.plan.deactivated == 0
        assert "could not be identified" in pull.verdict.reason
    else:  # a complete pull still deactivates what really left
        assert {s for s, row in after.items() if row[-1] is not None} == removed
    assert len(pull.rejections) == sum(kind not in DROPPED for kind in corruptions.values())
    assert len(pull.dropped_values) == sum(kind in DROPPED for kind in corruptions.values())


def test_a_pull_of_only_rejected_students_changes_nothing_and_is_not_held_as_empty(shared_server, tmp_path):
    shared_server.roster = Roster()
    settings_ = ConnectionSettings(provider="oneroster", base_url=shared_server.base_url, version="1.1",
                                   auth="none", page_size=100, max_retries=1)
    with open_source(settings_) as source, store.connect(tmp_path / "oneroster.duckdb") as con:
        _sync(con, source, tmp_path, "clean", datetime(2026, 3, 2, tzinfo=timezone.utc))
        before = con.execute(f"SELECT {STUDENT_CONTENT}, deactivated_at FROM students ORDER BY 1").fetchall()
        for sourced_id in shared_server.roster.ids():
            shared_server.roster.corrupt(sourced_id, "role")
        pull, done = _sync(con, source, tmp_path, "all-rejected", datetime(2026, 3, 3, tzinfo=timezone.utc))
        after = con.execute(f"SELECT {STUDENT_CONTENT}, deactivated_at FROM students ORDER BY 1").fetchall()
    assert (pull.rows, pull.kept_rejected, pull.verdict.complete) == (0, 240, True)
    assert done.outcome == "applied" and done.plan.deactivated == 0 and after == before


# ---- done-when: CSV ------------------------------------------------------------------------------------------------
CSV_SHAPE = DistrictShape(schools=4, students=240, seed=31)


def _rewrite(zip_path: Path, name: str, edit) -> None:
    """Rewrite one file of the export zip: `edit(header, rows)` changes the parsed rows in place; returns raw lines to
    substitute (index -> text) or None."""
    with zipfile.ZipFile(zip_path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    rows = list(csv.reader(io.StringIO(members[name].decode("utf-8"))))
    raw = edit(rows[0], rows[1:]) or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    lines = []
    for index, row in enumerate(rows):
        out.seek(0)
        out.truncate()
        writer.writerow(row)
        lines.append(raw.get(index - 1, out.getvalue().rstrip("\n")))
    members[name] = ("\n".join(lines) + "\n").encode("utf-8")
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def _student_rows(header: list[str], rows: list[list[str]]) -> list[int]:
    role = header.index("role")
    return [k for k, row in enumerate(rows) if row[role] == "student"]


def test_csv_export_with_rejected_statuses_or_a_stray_quote_deactivates_no_one(tmp_path):
    district = District(CSV_SHAPE)
    export = export_csv(district, tmp_path / "sftp" / "oneroster.zip", "1.1")
    harness = SyncHarness(tmp_path, OneRosterResource(provider="csv", csv_path=str(export)))
    assert harness.run("full_sync").success
    before = _students(harness)
    assert sum(1 for row in before if row[-1] is None) > 200

    bad_statuses: list[str] = []

    def rejected_statuses(header, rows):
        status, sid = header.index("status"), header.index("sourcedId")
        for k in _student_rows(header, rows)[::10][:20]:
            rows[k][status] = BAD_STATUS
            bad_statuses.append(rows[k][sid])

    _rewrite(export, "users.csv", rejected_statuses)
    status_run = harness.run("student_sync")
    assert _students(harness) == before
    assert harness.rows("SELECT count(*) FROM student_changes WHERE run_id = ?", [status_run.run_id]) == [(0,)]
    assert harness.rows("SELECT complete, rejected, rejected_kept FROM pull_reports WHERE run_id = ? AND "
                        "collection = 'students'", [status_run.run_id]) == [(True, 20, 20)]
    assert sorted(harness.rows("SELECT sourced_id, field FROM rejected_records WHERE run_id = ?",
                               [status_run.run_id])) == [(s, "status") for s in sorted(bad_statuses)]

    # a clean export again, then a stray quote after the sourcedId: the line is rejected with its id, the pull stays
    # complete, and that student keeps its row as it was
    export_csv(district, export, "1.1")
    quoted: list[str] = []

    def stray_quote_in(column: str):
        def rewrite(header, rows):
            k = _student_rows(header, rows)[7]
            quoted.append(rows[k][header.index("sourcedId")])
            at = header.index(column)
            line = [f'"{v}"' if "," in v else v for v in rows[k]]
            line[at] = f'"{rows[k][at]}" Jr'  # text after a closing quote
            return {k: ",".join(line)}
        return rewrite

    _rewrite(export, "users.csv", stray_quote_in("givenName"))
    quote_run = harness.run("student_sync")
    assert _students(harness) == before  # the unreadable line's student is not deactivated
    assert harness.rows("SELECT complete FROM pull_reports WHERE run_id = ? AND collection = 'students'",
                        [quote_run.run_id]) == [(True,)]
    assert harness.rows("SELECT sourced_id, field FROM rejected_records WHERE run_id = ?",
                        [quote_run.run_id]) == [(quoted[-1], "(record)")]

    # a stray quote in the sourcedId itself: the line cannot be identified, so the pull is incomplete and
    # nothing is deactivated by absence
    export_csv(district, export, "1.1")
    _rewrite(export, "users.csv", stray_quote_in("sourcedId"))
    quote_run = harness.run("student_sync")
    assert _students(harness) == before
    assert harness.rows("SELECT complete FROM pull_reports WHERE run_id = ? AND collection = 'students'",
                        [quote_run.run_id]) == [(False,)]
    check = next(e for e in quote_run.get_asset_check_evaluations()
                 if e.check_name == "pull_complete" and e.asset_key == dg.AssetKey("oneroster_users"))
    assert not check.passed and "could not be identified" in check.description and "users.csv line" in \
        check.description
    assert harness.rows("SELECT field FROM rejected_records WHERE run_id = ? AND sourced_id IS NULL",
                        [quote_run.run_id]) == [("(record)",)]


def test_export_whose_roles_csv_is_wholly_rejected_fails_error_checks(tmp_path):
    export = export_csv(District(CSV_SHAPE), tmp_path / "sftp" / "oneroster.zip", "1.2")

    def no_roles(header, rows):
        role = header.index("role")
        for row in rows:
            row[role] = ""

    _rewrite(export, "roles.csv", no_roles)
    harness = SyncHarness(tmp_path, OneRosterResource(provider="csv", csv_path=str(export)))
    result = harness.run("full_sync")  # the run itself succeeds: the checks say what is wrong
    assert harness.scalar("SELECT count(*) FROM students") == 0

    landed = check_evaluation(result, "students_landed")
    assert not landed.passed and landed.severity == dg.AssetCheckSeverity.ERROR
    assert landed.description.startswith("0 students landed from")
    assert "in roles.csv" in landed.description
    tolerance = next(e for e in result.get_asset_check_evaluations()
                     if e.check_name == "rejections_within_tolerance" and e.asset_key == dg.AssetKey("oneroster_users"))
    assert not tolerance.passed and tolerance.severity == dg.AssetCheckSeverity.ERROR
    assert "ONEROSTER_MAX_REJECTED_PCT=1%" in tolerance.description
    alerts = failed_error_checks(harness.instance, result.run_id)
    assert any(line.startswith("students.students_landed") for line in alerts)
    assert any(line.startswith("oneroster_users.rejections_within_tolerance") for line in alerts)
    orgs_check = next(e for e in result.get_asset_check_evaluations()
                      if e.check_name == "rejections_within_tolerance" and e.asset_key == dg.AssetKey("oneroster_orgs"))
    assert orgs_check.passed  # orgs.csv was fine


# ---- the rules on their own ----------------------------------------------------------------------------------------
def test_a_wholly_rejected_file_fails_even_when_the_pull_overall_is_within_tolerance():
    received = {"users.csv": 10_000, "roles.csv": 50}
    assert rejection_findings(10_000, 50, received, {"roles.csv": 50}, 1.0) == [
        "roles.csv: 50 of its 50 rows rejected (100.0%)"]
    assert rejection_findings(10_000, 50, received, {"users.csv": 50}, 1.0) == []  # 0.5 % overall and in the file
    assert rejection_findings(200, 3, {}, {}, 1.0) == ["3 of the 200 records read were rejected (1.5%)"]
    assert rejection_findings(0, 4, {}, {}, 1.0) == ["4 of the 0 records read were rejected (all)"]


def test_only_an_unidentified_rejection_makes_a_pull_incomplete():
    report = PullReport("students", "/students", 100, reported_total=3, first_reported_total=3, received=3,
                        complete=True, incomplete_reason=None)
    named = Rejection("user", "u1", "GET /students offset 0, item 1", "enabledUser", "not a boolean")
    nameless = Rejection("user", None, "users.csv line 9", "(record)", "a stray quote")
    role_row = Rejection("role", "r7", "roles.csv line 4", "role", "missing or empty")  # names a role, not a user
    assert completeness_verdict(report, [named]).complete
    for unknown in (nameless, role_row):
        verdict = completeness_verdict(report, [named, unknown])
        assert not verdict.complete and verdict.reason.startswith("1 rejected record(s) could not be identified")


def test_replace_keeps_rows_of_rejected_ids_set_based(tmp_path):
    con = duckdb.connect()
    store.ensure_schema(con)
    con.execute("""INSERT INTO oneroster_orgs (sourced_id, name, type, status, provider, fetched_at)
                   SELECT 'o' || i, 'old ' || i, 'school', 'active', 'p', TIMESTAMPTZ '2026-01-01'
                   FROM range(100000) t(i)""")
    staged = tmp_path / "orgs.parquet"
    con.execute(f"""COPY (SELECT 'o' || i AS sourced_id, 'active' AS status, NULL::TIMESTAMPTZ AS date_last_modified,
                                 'new ' || i AS name, 'school' AS type, NULL AS identifier, NULL AS parent_sourced_id,
                                 NULL AS legacy_sourced_id FROM range(50000, 100000) t(i))
                    TO '{staged}' (FORMAT parquet)""")
    keep = [f"o{i}" for i in range(0, 100000, 2)]  # half rejected: those absent from the file keep their old rows
    with store.transaction(con):
        rows, kept = store.replace_from_parquet(con, "oneroster_orgs", staged, "p", datetime.now(timezone.utc), keep)
    assert (rows, kept) == (75000, 25000)
    assert con.execute("SELECT name FROM oneroster_orgs WHERE sourced_id IN ('o2', 'o3', 'o50002') ORDER BY name "
                       "DESC").fetchall() == [("old 2",), ("new 50002",)]  # o3: neither rejected nor in the file -> gone; o50002 in the file -> new
