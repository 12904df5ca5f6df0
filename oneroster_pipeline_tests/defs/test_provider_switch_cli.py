"""A provider change from the command line, as README's "Changing provider" writes it: `dg launch` previews, applies
and rebuilds, in a copy of the project (DAGSTER_HOME = the copy, its dagster.yaml), against two demo providers on
loopback. The preview's counts are in its log; a blocked switch is approved with `dagster job execute --tags` (dg
launch has no tags); the apply's log names the rebuild's command, which is then run as written; only the active
connection is offered afterwards. With many districts the rebuild's partition is the district."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb

from oneroster_pipeline.defs.runs import APPROVE_SWITCH_TAG
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

from .sync_harness import CLIENT_ID, CLIENT_SECRET

DG = str(Path(sys.executable).parent / "dg")
DAGSTER = str(Path(sys.executable).parent / "dagster")
SHAPE = DistrictShape(schools=3, students=120, seed=31)
RUN_SUCCESS = re.compile(r" - (\w+) - ([0-9a-f-]{36}) - \d+ - RUN_SUCCESS - ")


def _environment(project: Path, variables: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEROSTER_", "DAGSTER_"))}
    env.update({"DAGSTER_HOME": str(project), "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
                **variables})
    return env


def run_command(project: Path, variables: dict[str, str], command: list[str], ok: bool = True) -> str:
    """A README command run in the project folder; its output (log lines included). `ok`: it must end with a
    successful run; else it must fail."""
    done = subprocess.run(command, cwd=project, env=_environment(project, variables), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    succeeded = done.returncode == 0 and RUN_SUCCESS.search(output) is not None
    assert succeeded == ok, f"{' '.join(command[1:])} ended {done.returncode}:\n{output[-4000:]}"
    return output


def dg_launch(project: Path, variables: dict[str, str], *arguments: str, ok: bool = True) -> str:
    """`.venv/bin/dg launch <arguments>`."""
    return run_command(project, variables, [DG, "launch", *arguments], ok)


def _log_line(output: str, step: str, starts: str) -> str:
    """The message of the log line of `step` that starts with `starts`."""
    found = re.findall(rf" - {step} - ({re.escape(starts)}.*)$", output, re.MULTILINE)
    assert len(found) == 1, f"no single log line of {step} starting {starts!r}:\n{output[-4000:]}"
    return found[0]


def _rows(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_preview_apply_and_rebuild_each_run_with_dg_launch(project):
    settings = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    with DemoProvider(SHAPE, DemoSettings(persona="infinite_campus", auth="oauth2", **settings)) as old, \
            DemoProvider(SHAPE, DemoSettings(persona="classlink", auth="oauth1", id_namespace="classlink-district",
                                             **settings)) as new:
        credentials = {"ONEROSTER_CLIENT_ID": CLIENT_ID, "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET}
        infinite_campus = {"ONEROSTER_PROVIDER": "infinite_campus", "ONEROSTER_BASE_URL": old.base_url("1.1"),
                           "ONEROSTER_AUTH": "oauth2", "ONEROSTER_TOKEN_URL": old.token_url + "?appName=demo",
                           **credentials}
        classlink = {"ONEROSTER_PROVIDER": "classlink", "ONEROSTER_BASE_URL": new.base_url("1.2"),
                     "ONEROSTER_AUTH": "oauth1", **credentials}
        database = project / "data" / "oneroster.duckdb"
        dg_launch(project, infinite_campus, "--job", "full_sync")
        ids_before = _rows(database, "SELECT student_id FROM students ORDER BY 1")
        active = _rows(database, "SELECT count(*) FROM students WHERE status = 'active'")[0][0]
        [(old_id,)] = _rows(database, "SELECT connection_id FROM provider_connections")
        renamed, gone = new.district.students_in_category("regular", limit=2)
        new.district.update_student(renamed, identifier="CL-1")  # matched by username instead
        new.district.remove_student(gone)  # matches nothing: over ONEROSTER_SWITCH_MAX_UNMATCHED_PCT=0, it blocks
        classlink["ONEROSTER_SWITCH_MAX_UNMATCHED_PCT"] = "0"

        # 1. preview: the crosswalk's counts are in the run's log (over a threshold its checks fail the run)
        preview = dg_launch(project, classlink, "--job", "provider_switch_preview", ok=False)
        counts = _log_line(preview, "id_crosswalk", "crosswalk ")
        students, ignored = len(ids_before), _rows(database, "SELECT count(*) FROM ignored_students")[0][0]
        assert (f"students {students} = {students - 1} matched (by identifier {students - 2}, username 1) "
                "+ 0 ambiguous + 1 unmatched;") in counts, counts
        assert f"ignored records {ignored} = {ignored} matched" in counts and " blocked: " in counts, counts
        assert counts.endswith(f"; blocked because 1 of {students} students ({100 / students:.1f}%) match no record "
                               "of the new connection (max 0%)"), counts
        assert _rows(database, "SELECT status FROM provider_connections ORDER BY first_seen_at") == [
            ("active",), ("candidate",)]  # nothing applied

        # 2. apply: blocked by the same checks; approved with the run tag (dg launch has no --tags); its log names
        #    the rebuild's command
        dg_launch(project, classlink, "--job", "provider_switch", ok=False)
        assert _rows(database, "SELECT connection_id FROM provider_connections WHERE status = 'active'") == [
            (old_id,)]
        applied = run_command(project, classlink, [
            DAGSTER, "job", "execute", "-m", "oneroster_pipeline.definitions", "-j", "provider_switch",
            "--tags", json.dumps({APPROVE_SWITCH_TAG: "true"})])
        [(new_id,)] = _rows(database, "SELECT connection_id FROM provider_connections WHERE status = 'active'")
        next_step = _log_line(applied, "provider_connections", "provider switch applied")
        command = f"dg launch --job rebuild_student_tables --partition {new_id}"
        assert f"{old_id} -> {new_id}; now rebuild the student tables: {command} " in next_step, next_step

        # 3. rebuild, as the log wrote it; only the active connection is a partition
        with duckdb.connect(str(database)) as con:
            con.execute("DELETE FROM student_buildings")  # lost links: the rebuild restores them
        rebuilt = dg_launch(project, classlink, *command.split()[2:])
        line = _log_line(rebuilt, "student_tables_by_connection", "rebuilt the student tables of ")
        # the renamed student takes the new identifier; the one the new provider lacks becomes inactive
        assert line.endswith(f": {active - 1} active students, 0 created, 1 updated, 1 deactivated"), line
        assert _rows(database, "SELECT student_id FROM students ORDER BY 1") == ids_before
        assert _rows(database, "SELECT count(*) FROM student_buildings")[0][0] >= students
        retired = dg_launch(project, classlink, "--job", "rebuild_student_tables", "--partition", old_id, ok=False)
        assert f"Could not find a partition with key `{old_id}`" in retired  # refused before any run

        # 4. the buildings and the daily sync run against the new connection and change nothing
        dg_launch(project, classlink, "--job", "building_sync")
        dg_launch(project, classlink, "--job", "student_sync")
        assert _rows(database, "SELECT student_id FROM students ORDER BY 1") == ids_before


def test_with_many_districts_a_districts_rebuild_is_its_active_connection(project):
    districts = project / "districts.yaml"
    districts.write_text("districts:\n  - id: north\n    demo_students: 40\n  - id: south\n    demo_students: 30\n")
    variables = {"ONEROSTER_DISTRICTS_FILE": str(districts)}
    dg_launch(project, variables, "--job", "full_sync", "--partition", "north")
    rebuilt = dg_launch(project, variables, "--job", "rebuild_student_tables", "--partition", "north")
    [(north_id, label)] = _rows(project / "data" / "districts" / "north.duckdb",
                                "SELECT connection_id, label FROM provider_connections")
    line = _log_line(rebuilt, "student_tables_by_connection", "rebuilt the student tables of ")
    assert line.startswith(f"rebuilt the student tables of {label} [{north_id}]: "), line
    # south never synced: nothing to rebuild, a run that does nothing and says so (no failure, no alert)
    skipped = dg_launch(project, variables, "--job", "rebuild_student_tables", "--partition", "south")
    assert "Nothing rebuilt, nothing changed: no connection is active yet" in skipped
    assert _rows(project / "data" / "districts" / "south.duckdb", "SELECT count(*) FROM sync_alerts") == [(0,)]
