"""The demo district's OneRoster CSV bulk export, and the `oneroster-demo-server` command line."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import requests

from oneroster_pipeline.demo.cli import main
from oneroster_pipeline.demo.csv_export import USER_COLUMNS, export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

SHAPE = DistrictShape(schools=4, students=300, seed=9)
REPO_ROOT = Path(__file__).resolve().parents[2]


def read(archive: Path, name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(archive) as z:
        return list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8"), newline="")))


def test_csv_1_1_matches_the_api(tmp_path):
    district = District(SHAPE)
    archive = export_csv(district, tmp_path / "out" / "oneroster.zip", "1.1")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["manifest.csv", "orgs.csv", "users.csv"]
        header = z.read("users.csv").decode().splitlines()[0]
    assert header == ",".join(USER_COLUMNS["1.1"])
    manifest = {r["propertyName"]: r["value"] for r in read(archive, "manifest.csv")}
    assert manifest["oneroster.version"] == "1.1" and manifest["manifest.version"] == "1.0"
    assert manifest["file.orgs"] == manifest["file.users"] == "bulk" and manifest["file.enrollments"] == "absent"

    with DemoProvider(SHAPE, DemoSettings(auth="none")) as provider:
        api_users = requests.get(provider.base_url("1.1") + "/users", params={"limit": 1000}, timeout=10).json()
        api_orgs = requests.get(provider.base_url("1.1") + "/orgs", timeout=10).json()
    rows = read(archive, "users.csv")
    assert len(rows) == len(api_users["users"]) == 312
    for row, user in zip(rows, api_users["users"]):
        assert (row["sourcedId"], row["status"], row["dateLastModified"], row["role"], row["givenName"]) == \
            (user["sourcedId"], user["status"], user["dateLastModified"], user["role"], user["givenName"])
        assert row["enabledUser"] == user["enabledUser"] and row["password"] == ""
        assert row["orgSourcedIds"].split(",") == [o["sourcedId"] for o in user["orgs"]]
        assert row["grades"] == ",".join(user["grades"])
        assert row["userIds"] == ",".join(f"{{{u['type']}:{u['identifier']}}}" for u in user["userIds"])
    assert sum("," in r["orgSourcedIds"] for r in rows) == district.counts()["two_school_students"] > 0
    org_rows = read(archive, "orgs.csv")
    assert [(r["sourcedId"], r["dateLastModified"], r["parentSourcedId"] or None) for r in org_rows] == \
        [(o["sourcedId"], o["dateLastModified"], o.get("parent", {}).get("sourcedId")) for o in api_orgs["orgs"]]


def test_csv_1_2_has_roles_and_1_2_columns(tmp_path):
    district = District(SHAPE)
    sid = district.students_in_category("two_schools", limit=1)[0]
    district.update_student(sid, givenName="Zoë", preferredFirstName="Zo")
    archive = export_csv(district, tmp_path / "oneroster-1.2.zip", "1.2")
    manifest = {r["propertyName"]: r["value"] for r in read(archive, "manifest.csv")}
    assert manifest["oneroster.version"] == "1.2" and manifest["file.roles"] == "bulk"
    users = {r["sourcedId"]: r for r in read(archive, "users.csv")}
    assert list(next(iter(users.values()))) == list(USER_COLUMNS["1.2"])
    changed = users[sid]
    assert (changed["givenName"], changed["preferredGivenName"]) == ("Zoë", "Zo")
    roles = read(archive, "roles.csv")
    mine = [r for r in roles if r["userSourcedId"] == sid]
    assert [r["roleType"] for r in mine] == ["primary", "secondary"]
    assert mine[0]["orgSourcedId"] == changed["primaryOrgSourcedId"]
    assert len(roles) == sum(len(u["orgs"]) for u in district.expected_users())
    assert len({r["sourcedId"] for r in roles}) == len(roles)
    assert {r["role"] for r in roles} == {"student", "teacher"}


def test_cli_export(tmp_path, capsys):
    target = tmp_path / "cli.zip"
    assert main(["--export-csv", str(target), "--students", "50", "--schools", "2", "--seed", "9"]) == 0
    assert str(target) in capsys.readouterr().out
    assert len(read(target, "users.csv")) == 50 + 2 * 3


def test_cli_serves_until_interrupted():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "oneroster_pipeline.demo", "--port", "0", "--students", "120", "--auth", "bearer",
         "--bearer-token", "t0k", "--version", "1.2", "--page-cap", "25"],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        base = next(line.split("base URL:")[1].strip() for line in lines if "1.2 base URL" in line)
        response = requests.get(base + "/students", params={"limit": 100}, headers={"Authorization": "Bearer t0k"},
                                timeout=10)
        assert response.headers["X-Total-Count"] == "120" and len(response.json()["users"]) == 25
        assert requests.get(base.replace("rostering/v1p2", "v1p1") + "/orgs", timeout=10).status_code == 404
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
