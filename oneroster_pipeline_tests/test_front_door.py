"""The README's front door: a run started from the command line shows in the UI, with no instance warning.

In a temporary copy of the project (pyproject.toml, dagster.yaml, workspace.yaml and the package, laid out as a
clone) the README's commands run as written, with DAGSTER_HOME=<the copy> and the built-in demo district (no
ONEROSTER_* from the developer's shell): the quick start's `dg launch --job full_sync`, then `dg dev` (the UI) while
the contract command `dagster job execute -m oneroster_pipeline.definitions -j building_sync` runs; the UI's GraphQL
lists both runs. Then Ctrl-C (SIGINT to `dg dev`'s process group, as a terminal sends it) stops the UI and leaves
no process running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from .defs.ui_helpers import LOCATION
from .loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUICK_START_RUN = "DAGSTER_HOME=$PWD .venv/bin/dg launch --job full_sync"
OPEN_THE_UI = "DAGSTER_HOME=$PWD .venv/bin/dg dev"
# what Dagster prints when the instance the CLI and the UI use is not the dagster.yaml of the folder
IGNORED_YAML = "will not be used to configure Dagster"
RUN_SUCCESS = re.compile(r" - (\w+) - ([0-9a-f-]{36}) - \d+ - RUN_SUCCESS - ")
EVENT_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - (DEBUG|INFO) - ")


def _default_signals() -> None:
    # a terminal's `dg dev` gets Ctrl-C; a test runner's child may inherit SIGINT/SIGTERM ignored
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def _environment(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEROSTER_", "DAGSTER_"))}
    env.update({
        "DAGSTER_HOME": str(project),  # the README's DAGSTER_HOME=$PWD, run from the project folder
        "ONEROSTER_DEMO_STUDENTS": "200", "ONEROSTER_DEMO_SCHOOLS": "3",
        "PYTHONUNBUFFERED": "1",
        # the copy's package, installed or not
        "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
        **extra,
    })
    return env


def _graphql(base_url: str, query: str) -> dict:
    response = requests.post(f"{base_url}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _wait_until_loaded(base_url: str, ui: subprocess.Popen, log: Path, deadline: float) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    while True:
        assert ui.poll() is None, f"dg dev exited with {ui.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            entries = _graphql(base_url, query)["workspaceOrError"]["locationEntries"]
            if any(e["name"] == LOCATION and e["loadStatus"] == "LOADED" for e in entries):
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"the UI did not load:\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.5)


def test_the_readme_names_the_commands_this_test_runs():
    readme = (ROOT / "README.md").read_text()
    assert QUICK_START_RUN in readme and OPEN_THE_UI in readme
    assert "mkdir -p .dagster_home" not in readme  # no copy step left


def _start(name: str, command: list[str], project: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    with open(project / f"{name}.log", "wb") as output:
        return subprocess.Popen(command, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True, **popen)


def _finished_run(name: str, process: subprocess.Popen, project: Path, deadline: float) -> tuple[str, str]:
    """Wait for a command-line run; its (job, run id) from the RUN_SUCCESS line."""
    process.wait(timeout=max(1.0, deadline - time.monotonic()))
    output = (project / f"{name}.log").read_text(errors="replace")
    assert process.returncode == 0, f"{name} failed ({process.returncode}):\n{output[-3000:]}"
    [(job, run_id)] = RUN_SUCCESS.findall(output)
    return job, run_id


def test_cli_runs_show_in_the_ui_and_ctrl_c_stops_it(project):
    deadline = time.monotonic() + 240
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = _environment(project)
    processes: list[subprocess.Popen] = []
    descendants: list[psutil.Process] = []
    try:
        # 1. the quick start's run, as the README writes it (it also creates the instance's storage)
        launch = _start("dg-launch", [str(BIN / "dg"), "launch", "--job", "full_sync"], project, env)
        processes.append(launch)
        quick_start = _finished_run("dg-launch", launch, project, deadline)
        # no warning of any kind: not Dagster's SupersessionWarning, not dg's, not a WARNING-level log line
        output = (project / "dg-launch.log").read_text(errors="replace").splitlines()
        warnings = [line for line in output if not EVENT_LOG.match(line) and "warning" in line.lower()]
        assert not warnings, "\n".join(warnings[:20])
        assert (project / "data" / "demo.duckdb").exists()  # the built-in demo district's own DuckDB file
        # the instance is the project folder (DAGSTER_HOME), not a temporary one
        assert (project / "history" / "runs.db").exists()
        assert not list(project.glob(".tmp_dagster_home_*"))

        # 2. the UI, the README's way; meanwhile the contract command runs (its own DuckDB file, so that it does
        #    not wait for the UI's sensors reading the README's one)
        ui = _start("dg-dev", [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", str(port)], project, env,
                    preexec_fn=_default_signals)
        processes.append(ui)
        contract = _start(
            "dagster-job-execute",
            [str(BIN / "dagster"), "job", "execute", "-m", "oneroster_pipeline.definitions", "-j", "building_sync"],
            project, _environment(project, ONEROSTER_DUCKDB_PATH=str(project / "data" / "contract.duckdb")))
        processes.append(contract)
        building = _finished_run("dagster-job-execute", contract, project, deadline)
        assert quick_start[0] == "full_sync" and building[0] == "building_sync"

        log = project / "dg-dev.log"
        _wait_until_loaded(base_url, ui, log, deadline)
        listed = _graphql(base_url, "{ runsOrError { ... on Runs { results { runId jobName status } } } }")
        results = {r["runId"]: (r["jobName"], r["status"]) for r in listed["runsOrError"]["results"]}
        assert results == {quick_start[1]: ("full_sync", "SUCCESS"), building[1]: ("building_sync", "SUCCESS")}
        text = log.read_text(errors="replace")
        assert IGNORED_YAML not in text and "SupersessionWarning" not in text, text[:3000]

        # 3. Ctrl-C once: dg dev stops its webserver, daemon and code servers, and nothing is left running
        descendants = psutil.Process(ui.pid).children(recursive=True)
        assert descendants, "dg dev started no webserver, daemon or code server"
        os.killpg(ui.pid, signal.SIGINT)
        ui.wait(timeout=60)
        _, alive = psutil.wait_procs(descendants, timeout=15)
        assert not alive, f"left running after Ctrl-C: {[p.cmdline()[:4] for p in alive]}"
    finally:
        for process in processes:
            if process.poll() is None:
                _kill_group(process)
        for proc in descendants:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
