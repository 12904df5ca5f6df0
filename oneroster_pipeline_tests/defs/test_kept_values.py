"""A field we only carry never rejects a student (issue 25, observation 4), through the Dagster jobs over a OneRoster
server of the test's own on loopback (real HTTP, the odd JSON served as is) and over CSV exports (1.1 and 1.2).

Identity and placement (sourcedId, status, role, org references) decide whether a record can be used. A value that
cannot be read in a field we only carry (dateLastModified, middleName, email, grades, enabledUser, ...) becomes NULL,
the student lands (or is ignored) as usual, and `rejected_records` lists the field with kind `value_dropped`; such a
value neither makes the pull incomplete nor counts as a rejection. Dates: ISO 8601 and the US `M/D/YYYY` of Microsoft
SDS exports (`1/05/2023` is 5 January 2023: a slash date is month first); a day-first date is never guessed.
"""

from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from oneroster_pipeline.defs.resources import OneRosterResource

from .sync_harness import SyncHarness
from .test_enumerations import DISTRICT, csv_export, org, ref, rest_district, user

FULL = {"oneroster/sync_mode": "full"}
SOURCES = ("rest-1.1", "rest-1.2", "csv-1.1", "csv-1.2")
US_DATE, DAY_FIRST = "1/05/2023", "13/05/2023"


def students_of(kind: str) -> list[dict]:
    """The district's students as 1.1 records (1.2 and CSV are made from them): clean ones, ones with a value we
    cannot read in a field we only carry, and two real rejections."""
    users = [user("ok", "sch1"), user("us-date", "sch1", dateLastModified=US_DATE),
             user("us-time", "sch1", dateLastModified="12/31/2023 11:59 PM"),
             user("day-first", "sch1", dateLastModified=DAY_FIRST), user("bad-flag", "sch1", enabledUser="maybe"),
             user("elsewhere", "d1", dateLastModified="yesterday"),  # no school: ignored, its date dropped
             user("bad-status", "sch1", status="archived"), user("bad-role", "sch1", role="stu dent")]
    if kind == "rest":  # JSON types a CSV cell cannot carry
        users += [user("bad-email", "sch1", email={"address": "someone@example.org"}),
                  user("bad-grades", "sch1", grades=[{"grade": "05"}]),
                  user("bad-middle", "sch1", middleName=["J", "R"])]
    return users


# (sourcedId, field) of every value dropped, per kind of source
DROPPED = {("day-first", "dateLastModified"), ("bad-flag", "enabledUser"), ("elsewhere", "dateLastModified")}
REST_DROPPED = DROPPED | {("bad-email", "email"), ("bad-grades", "grades"), ("bad-middle", "middleName")}


def rest_1_2(records: list[dict]) -> list[dict]:
    """1.1 user records in the 1.2 shape: roles[] with roleType, primaryOrg."""
    out = []
    for record in records:
        orgs = [o["sourcedId"] for o in record["orgs"]]
        new = {k: v for k, v in record.items() if k not in ("role", "orgs")}
        new["roles"] = [{"roleType": "primary" if i == 0 else "secondary", "role": record["role"], "org": ref(o)}
                        for i, o in enumerate(orgs)]
        new["primaryOrg"] = ref(orgs[0])
        out.append(new)
    return out


def csv_1_2_export(folder: Path, orgs: list, users: list) -> str:
    """A OneRoster 1.2 bulk CSV export of 1.1-shaped records: users.csv without roles, roles.csv with roleType."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, rows: list[list]) -> None:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        (folder / name).write_text(out.getvalue(), encoding="utf-8")

    cell = {True: "true", False: "false", None: ""}
    write("manifest.csv", [["propertyName", "value"], ["manifest.version", "1.0"], ["oneroster.version", "1.2"],
                           ["file.orgs", "bulk"], ["file.users", "bulk"], ["file.roles", "bulk"]])
    write("orgs.csv", [["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"]]
          + [[o["sourcedId"], o["status"], o["dateLastModified"], o["name"], o["type"], o["identifier"],
              (o.get("parent") or {}).get("sourcedId", "")] for o in orgs])
    people = ("enabledUser", "username", "givenName", "familyName", "middleName", "identifier", "email")
    write("users.csv", [["sourcedId", "status", "dateLastModified", *people, "grades", "primaryOrgSourcedId"]]
          + [[u["sourcedId"], u["status"], u["dateLastModified"], *(cell.get(u.get(k), u.get(k)) for k in people),
              ",".join(u["grades"]), u["orgs"][0]["sourcedId"]] for u in users])
    write("roles.csv", [["sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role", "beginDate",
                         "endDate", "orgSourcedId", "userProfileSourcedId"]]
          + [[f"role-{u['sourcedId']}-{k}", "active", u["dateLastModified"], u["sourcedId"],
              "primary" if k == 0 else "secondary", u["role"], "", "", o["sourcedId"], ""]
             for u in users for k, o in enumerate(u["orgs"])])
    return str(folder)


def users_check(result: dg.ExecuteInProcessResult, name: str):
    """The evaluation of the check `name` on oneroster_users (the student pull)."""
    return next(e for e in result.get_asset_check_evaluations()
                if e.check_name == name and e.asset_key == dg.AssetKey("oneroster_users"))


@contextmanager
def served(source: str, tmp_path: Path, orgs: list, users: list):
    """The district as `source` (a server on loopback or an export): (its OneRosterResource, `publish(users)`, which
    serves or exports other users from then on, at the same address)."""
    kind, version = source.split("-")
    if kind == "csv":
        def publish(users: list) -> str:
            return (csv_export(tmp_path / source, orgs, users).csv_path if version == "1.1"
                    else csv_1_2_export(tmp_path / source, orgs, users))
        yield OneRosterResource(provider="csv", csv_path=publish(users)), publish
        return
    live: list = []

    def publish(users: list) -> None:
        live[:] = users if version == "1.1" else rest_1_2(users)

    publish(users)
    with rest_district(orgs, live, version) as settings:
        yield OneRosterResource(provider="oneroster", base_url=settings.base_url, version=version, auth="none",
                                page_size=3, max_retries=1), publish


def sync(source: str, tmp_path: Path, orgs: list, users: list):
    """full_sync of the district served or exported as `source`, into a fresh DuckDB file."""
    with served(source, tmp_path, orgs, users) as (oneroster, _):
        harness = SyncHarness(tmp_path / "db", oneroster)
        return harness, harness.run("full_sync")


@pytest.mark.parametrize("source", SOURCES)
def test_an_unreadable_value_of_a_carried_field_is_dropped_and_the_student_lands(source, tmp_path):
    orgs = [DISTRICT, org("sch1")]
    users = students_of(source.split("-")[0])
    harness, result = sync(source, tmp_path, orgs, users)
    assert result.success

    landed = {r[0]: r[1:] for r in harness.rows(
        "SELECT sourced_id, building_sis, email, grade, middle_name, enabled_user FROM students")}
    expected = {"ok", "us-date", "us-time", "day-first", "bad-flag"}
    if source.startswith("rest"):  # NULL in the field whose value could not be read, the rest as given
        expected |= {"bad-email", "bad-grades", "bad-middle"}
        assert landed["bad-email"][1:3] == (None, "05") and landed["bad-grades"][1:3] == (None, None)
        assert landed["bad-middle"][3] is None
    assert set(landed) == expected and {b for b, *_ in landed.values()} == {"sch1"}
    assert landed["bad-flag"][4] is None and landed["ok"][4] is True
    assert harness.rows("SELECT sourced_id, reason FROM ignored_students") == [("elsewhere", "no_school_org")]

    dates = dict(harness.rows("SELECT sourced_id, date_last_modified FROM oneroster_users"))
    assert dates["us-date"] == datetime(2023, 1, 5, tzinfo=timezone.utc)  # month first, as Microsoft SDS writes it
    assert dates["us-time"] == datetime(2023, 12, 31, 23, 59, tzinfo=timezone.utc)
    assert dates["day-first"] is None and dates["elsewhere"] is None

    records = harness.rows("SELECT sourced_id, field, kind, reason FROM rejected_records WHERE run_id = ?",
                           [result.run_id])
    dropped = REST_DROPPED if source.startswith("rest") else DROPPED
    assert {(s, f) for s, f, kind, _ in records if kind == "value_dropped"} == dropped
    assert sorted((s, f) for s, f, kind, _ in records if kind == "rejected") == [
        ("bad-role", "role"), ("bad-status", "status")]
    assert all("NULL" in reason for s, f, kind, reason in records if f == "dateLastModified")

    # a dropped value is no rejection: the pull is complete and counts the two real rejections only
    assert harness.rows("SELECT complete, rejected, rejected_unidentified FROM pull_reports WHERE run_id = ? AND "
                        "collection = 'students'", [result.run_id]) == [(True, 2, 0)]
    assert users_check(result, "pull_complete").passed
    tolerance = users_check(result, "rejections_within_tolerance")
    assert tolerance.metadata["rejected"].value == 2
    sample = tolerance.metadata["rejected_sample"].value
    assert "bad-status" in sample and "day-first" not in sample and "bad-flag" not in sample


@pytest.mark.parametrize("source", ("rest-1.2", "csv-1.2"))
def test_dates_only_dropped_never_hold_back_a_full_pull(source, tmp_path):
    """Every student's dateLastModified unreadable and one student gone: nothing is rejected, the pull is complete,
    the one who left is deactivated and everyone else stays as they were."""
    orgs = [DISTRICT, org("sch1"), org("sch2")]
    users = [user(f"s{i}", "sch1" if i % 2 else "sch2") for i in range(12)]
    with served(source, tmp_path, orgs, users) as (oneroster, publish):
        harness = SyncHarness(tmp_path / "db", oneroster)
        assert harness.run("full_sync").success
        before = dict(harness.rows("SELECT sourced_id, building_sis FROM students WHERE status = 'active'"))
        assert len(before) == 12
        publish([dict(u, dateLastModified=DAY_FIRST) for u in users[1:]])
        second = harness.run("student_sync", tags=FULL)
    assert second.success
    assert dict(harness.rows("SELECT sourced_id, building_sis FROM students WHERE status = 'active'")) == \
        {s: b for s, b in before.items() if s != "s0"}
    assert harness.rows("SELECT sourced_id, change FROM student_changes WHERE run_id = ?", [second.run_id]) == [
        ("s0", "deactivate")]
    assert harness.rows("SELECT complete, rejected FROM pull_reports WHERE run_id = ? AND collection = 'students'",
                        [second.run_id]) == [(True, 0)]
    assert harness.scalar("SELECT count(*) FROM rejected_records WHERE run_id = ? AND kind = 'value_dropped'",
                          [second.run_id]) == 11
    assert users_check(second, "rejections_within_tolerance").passed and users_check(second, "pull_complete").passed


def test_a_record_without_a_sourced_id_is_still_a_real_rejection(tmp_path):
    orgs = [DISTRICT, org("sch1")]
    nameless = {k: v for k, v in user("x", "sch1", dateLastModified=DAY_FIRST).items() if k != "sourcedId"}
    harness, result = sync("rest-1.2", tmp_path, orgs, [user("ok", "sch1", dateLastModified=DAY_FIRST), nameless])
    assert result.success
    assert harness.rows("SELECT sourced_id, field, kind FROM rejected_records WHERE run_id = ? ORDER BY kind",
                        [result.run_id]) == [(None, "sourcedId", "rejected"), ("ok", "dateLastModified",
                                                                                 "value_dropped")]
    assert harness.rows("SELECT complete, rejected, rejected_unidentified FROM pull_reports WHERE run_id = ? AND "
                        "collection = 'students'", [result.run_id]) == [(False, 1, 1)]
    assert not users_check(result, "pull_complete").passed
