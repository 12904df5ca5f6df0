"""The Dagster layer on the lake, end to end with the real CLI: a districts file with ONEROSTER_WAREHOUSE=ducklake (a
PostgreSQL catalog on the session's throwaway server, a local data path), three districts on three providers (OneRoster
1.2 over OAuth2, 1.1 with a bearer token, a CSV export) and a fourth whose provider is down, synced by concurrent
`dagster job execute -j full_sync` processes into one lake. Each schema holds exactly its provider's students; the
dead district fails alone (its failure and alert in its own schema); nothing is written as a DuckDB file or a Parquet
snapshot. Then the provider changes and two runs of one district start at once: they apply the change once (the
second refused as LakeConflictError, or run after the first and changing nothing); the change is the current state
and the first sync's is read back by time travel."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path


from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.warehouse import lake, store
from oneroster_pipeline.warehouse.lake_settings import LakeSettings
from oneroster_pipeline_tests.client.client_fixtures import serve
from oneroster_pipeline_tests.four_districts import DAGSTER, SECRETS, districts_yaml
from oneroster_pipeline_tests.loopback import free_port

from .conftest import needs_lake

pytestmark = needs_lake

SYNCED = ("north", "south", "west")


def cli_env(folder: Path, districts_file: Path, lake_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")}
    env.update({**SECRETS, **lake_env}, DAGSTER_HOME=str(folder), ONEROSTER_DISTRICTS_FILE=str(districts_file),
               ONEROSTER_BACKOFF_SECONDS="0")
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # a fresh SQLite instance creates its tables on first use: once, before runs start side by side
    subprocess.run([DAGSTER, "instance", "migrate"], env=env, cwd=folder, check=True, capture_output=True)
    return env


def launch(env: dict, district: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [DAGSTER, "job", "execute", "-m", "oneroster_pipeline.definitions", "-j", "full_sync", "--tags",
         json.dumps({"dagster/partition": district})],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(runs: dict[str, subprocess.Popen]) -> dict[str, str]:
    return {key: run.communicate(timeout=300)[0] for key, run in runs.items()}


def rows(settings: LakeSettings, district: str, sql: str, params: list | None = None) -> list[tuple]:
    """`sql` on the district's schema of the lake (its unqualified table names are the district's)."""
    with lake.reader(settings) as con:
        alias = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f"USE {alias}.{lake.ident(district)}")  # this cursor's default schema only
        return con.execute(sql, params or []).fetchall()


def assert_exact(settings: LakeSettings, district: str, provider: District) -> None:
    """Every student of the provider is in students or ignored_students, once; the buildings are its schools."""
    landed = [r[0] for r in rows(settings, district, "SELECT sourced_id FROM students UNION ALL "
                                                     "SELECT sourced_id FROM ignored_students")]
    assert sorted(landed) == sorted(provider.student_ids())
    assert rows(settings, district, "SELECT count(*) FROM students")[0][0] > 0
    schools = {o["sourcedId"] for o in provider.orgs() if o["type"] == "school" and o["status"] == "active"}
    assert {r[0] for r in rows(settings, district, "SELECT building_sis FROM buildings")} == schools


def test_districts_sync_concurrently_into_one_lake_then_a_double_run_applies_a_change_once_and_travels_back(tmp_path, pg_lake_env):
    settings = LakeSettings.from_env(pg_lake_env)
    west = District(DistrictShape(schools=2, students=60, seed=13), id_namespace="west")
    export = export_csv(west, tmp_path / "west.zip")
    with serve(DistrictShape(schools=3, students=120, seed=11), client_secret=SECRETS["NORTH_OR_SECRET"]) as north, \
            serve(DistrictShape(schools=2, students=80, seed=12), auth="bearer",
                  bearer_token=SECRETS["SOUTH_OR_TOKEN"]) as south:
        providers = {"north": north.district, "south": south.district, "west": west}
        districts_file = tmp_path / "districts.yaml"
        districts_file.write_text(districts_yaml(north, south, export, free_port()))
        work = tmp_path / "work"
        work.mkdir()
        env = cli_env(work, districts_file, pg_lake_env)

        # four processes at once on a new catalog: three land, the dead one fails alone
        runs = {key: launch(env, key, work) for key in (*SYNCED, "dead")}
        outputs = finish(runs)
        for key in SYNCED:
            assert runs[key].returncode == 0, outputs[key][-3000:]
            assert_exact(settings, key, providers[key])
            assert rows(settings, key, "SELECT job_name, outcome FROM sync_runs") == [("full_sync", "applied")]
            assert rows(settings, key, "SELECT count(*) FROM sync_alerts") == [(0,)]
        assert runs["dead"].returncode != 0
        alerts = rows(settings, "dead", "SELECT kind, subject FROM sync_alerts")
        assert [a[0] for a in alerts] == ["run_failure"] and "district dead (Dead Valley)" in alerts[0][1]
        assert rows(settings, "dead", "SELECT outcome FROM sync_runs") == [("failed",)]
        assert rows(settings, "dead", "SELECT count(*) FROM students") == [(0,)]
        # the lake is the cross-district view: no DuckDB file, no Parquet snapshot
        assert not (work / "data").exists() and not (work / "snapshots").exists()
        with lake.reader(settings) as con:
            per_district = dict(con.execute(
                f"SELECT district_id, count(*) FROM ({lake.across_districts_sql(con, 'students')}) GROUP BY 1"
            ).fetchall())
            first_version = lake.snapshot_at(con)
        assert per_district == {key: rows(settings, key, "SELECT count(*) FROM students")[0][0] for key in SYNCED}
        for text in outputs.values():
            for secret in SECRETS.values():
                assert secret not in text

        # the provider changes and two runs of one district start at once: a transaction of one that overlaps one
        # of the other is refused whole (LakeConflictError). Usually one run applies the change and the other is
        # refused or, if they did not overlap, runs after it and changes nothing; each may also be refused by the
        # other's commits (its bookkeeping included: both update sync_runs): then nothing applied, and running again,
        # as the message says, applies the change once
        time.sleep(0.05)
        between = datetime.now(timezone.utc)
        renamed = north.district.student_ids()[0]
        (old_name,) = rows(settings, "north", "SELECT given_name FROM students WHERE sourced_id = ?", [renamed])[0]
        (building,) = rows(settings, "north", "SELECT building_sis FROM students WHERE sourced_id = ?", [renamed])[0]
        north.district.update_student(renamed, givenName="Renamed")
        doubles = {"a": launch(env, "north", work), "b": launch(env, "north", work)}
        outputs = finish(doubles)
        refused = [key for key, run in doubles.items() if run.returncode != 0]
        assert all("LakeConflictError" in outputs[key] for key in refused), {k: outputs[k][-3000:] for k in refused}
        if len(refused) == 2:
            assert rows(settings, "north", "SELECT given_name FROM students WHERE sourced_id = ?",
                        [renamed]) == [(old_name,)]  # nothing of either applied
            again = launch(env, "north", work)
            assert again.communicate(timeout=300)[0] and again.returncode == 0
        assert_exact(settings, "north", providers["north"])
        assert rows(settings, "north", "SELECT count(*) - count(DISTINCT sourced_id) FROM students") == [(0,)]
        outcomes = rows(settings, "north", "SELECT outcome, students_updated FROM sync_runs ORDER BY started_at")
        assert len(outcomes) == 3 + (len(refused) == 2), outcomes
        assert [o for o, _ in outcomes[1:]].count("failed") == len(refused), outcomes
        assert sum(n for outcome, n in outcomes[1:] if outcome == "applied") == 1, outcomes  # applied once

        # the second sync's change is the current state; the first is read back by time travel
        assert rows(settings, "north", "SELECT given_name FROM students WHERE sourced_id = ?",
                    [renamed]) == [("Renamed",)]
        assert rows(settings, "north", f"SELECT given_name FROM students AT (VERSION => {int(first_version)}) "
                                       "WHERE sourced_id = ?", [renamed]) == [(old_name,)]
        with lake.connect(settings, "north") as con:  # "students of building X as of <time>"
            then = {s["sourced_id"]: s["given_name"] for s in lake.students_in_building_as_of(con, building, between)}
            now = {r["sourced_id"]: r["given_name"] for r in store.query_dicts(
                con, "SELECT s.sourced_id, s.given_name FROM student_buildings l JOIN students s USING (student_id) "
                     "WHERE l.building_sis = ?", [building])}
        assert then[renamed] == old_name and now[renamed] == "Renamed"
        assert {k: v for k, v in then.items() if k != renamed} == {k: v for k, v in now.items() if k != renamed}
        print(f"double run: {len(refused)} refused as LakeConflictError, outcomes {outcomes[1:]}")
