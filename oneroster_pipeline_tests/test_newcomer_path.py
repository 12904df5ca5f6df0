"""A newcomer's path, scripted (issue 26, "Done when"): the quick start on the built-in demo, then a real provider
(a loopback server) named in `.env` into the default DuckDB file, then a two-district file with a demo district
while `.env` still names that provider. Each run lands its own provider's data; the connection test, the summary
and the runs read the same configuration.

Everything runs as README says, in a copy of the project laid out as a clone, with DAGSTER_HOME=<the copy>."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb

from .hostile.server import CLIENT_ID, CLIENT_SECRET, District, HostileProvider
from .test_front_door import BIN, _environment

DISTRICTS = """districts:
  - id: north
    provider: demo
    demo_students: 40
    demo_schools: 2
  - id: south
    provider: oneroster
    base_url: {base_url}
    auth: oauth2
    token_url: {token_url}
    client_id: {client_id}
    client_secret_env: SOUTH_SECRET
"""


def run(project: Path, *command: str, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=project, env=_environment(project, **env),
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def ids(database: Path) -> set[str]:
    with duckdb.connect(str(database), read_only=True) as con:
        return {sid for (sid,) in con.execute("SELECT sourced_id FROM students UNION ALL "
                                              "SELECT sourced_id FROM ignored_students").fetchall()}


def test_quick_start_then_a_real_provider_then_two_districts(project):  # noqa: F811
    run(project, "dg", "launch", "--job", "full_sync")  # the quick start, on the demo
    demo_ids = ids(project / "data" / "demo.duckdb")
    assert len(demo_ids) == 200

    with HostileProvider() as first, HostileProvider(District(schools=2, students=70)) as second:
        first_ids = {s["sourcedId"] for s in first.district.students_list()}
        env_file = {k: v for k, v in first.env().items() if k != "ONEROSTER_PAGE_SIZE"}
        (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))

        # a real provider into the default file: not refused as a provider change of the demo's file
        run(project, "dg", "launch", "--job", "full_sync")
        assert ids(project / "data" / "oneroster.duckdb") == first_ids
        tested = run(project, "python", "-m", "oneroster_pipeline.connection_test")
        assert "configuration: " in tested.stdout and ".env" in tested.stdout
        assert first.base_url in tested.stdout and "demo" not in tested.stdout.split("connection:")[1].split("\n")[0]
        summary = run(project, "python", "-m", "oneroster_pipeline.summary")
        assert "data/oneroster.duckdb" in summary.stdout

        # two districts while .env still names the first provider: each lands its own
        (project / "districts.yaml").write_text(DISTRICTS.format(base_url=second.base_url, token_url=second.token_url,
                                                                 client_id=CLIENT_ID))
        with (project / ".env").open("a") as env:
            env.write(f"ONEROSTER_DISTRICTS_FILE={project / 'districts.yaml'}\nSOUTH_SECRET={CLIENT_SECRET}\n")
        asked_before = len(first.requests)
        for district in ("north", "south"):
            run(project, "dg", "launch", "--job", "full_sync", "--partition", district)
        second_ids = {s["sourcedId"] for s in second.district.students_list()}
        asked_during = len(first.requests) - asked_before

    north, south = ids(project / "data" / "districts" / "north.duckdb"), ids(project / "data" / "districts" /
                                                                          "south.duckdb")
    assert len(north) == 40 and not north & first_ids  # the demo district, not the provider in .env
    assert south == second_ids
    assert asked_during == 0  # the provider in .env was never asked during the district runs
