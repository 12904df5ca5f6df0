"""Dagster's production pieces as real processes for the deployment tests: a gRPC code server
(`dagster api grpc -m oneroster_pipeline.definitions`), `dagster-daemon run` and `dagster-webserver`, sharing one
DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml against the test's PostgreSQL server.

The instance file is deploy/dagster.yaml itself (Postgres storage, the run queue and its limits) with two changes:
no `run_launcher` (the Docker launcher needs a Docker engine; the default launcher starts each run as a subprocess
of the code server) and a 1 s dequeue interval instead of 5 s, to keep the test short. Each process runs in its own
session and logs to a file; a failed wait raises with the tails of every log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from oneroster_pipeline_tests.dagster_servers import post_graphql, stop_process_group
from oneroster_pipeline_tests.deploy.postgres_server import PostgresServer
from oneroster_pipeline_tests.loopback import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DAGSTER_YAML = PROJECT_ROOT / "deploy" / "dagster.yaml"
LOCATION = "oneroster_pipeline"
REPOSITORY = "__repository__"  # the repository name Dagster gives a `Definitions` object
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def dagster_command(name: str) -> list[str]:
    """A Dagster console script of this interpreter's environment (.venv/bin/dagster-daemon, ...)."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    assert found, f"{name} is not installed next to {sys.executable} nor on PATH"
    return [found]


def instance_config_for_tests() -> dict:
    """deploy/dagster.yaml as the tests run it: the same storage and queue limits, the default run launcher."""
    config = yaml.safe_load(DEPLOY_DAGSTER_YAML.read_text())
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    config.pop("run_launcher")
    config["run_queue"]["dequeue_interval_seconds"] = 1
    return config


class Deployment:
    """One DAGSTER_HOME, a workspace.yaml naming a gRPC server, and the three long-running processes."""

    def __init__(self, root: Path, server: PostgresServer, extra_env: dict[str, str] | None = None):
        self.root = root
        self.home = root / "dagster_home"
        self.server = server
        self.grpc_host = "127.0.0.1"  # where the workspace finds the code server
        self.grpc_port = free_port()
        self.web_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.workspace = root / "workspace.yaml"
        self.extra_env = extra_env or {}
        self.processes: dict[str, subprocess.Popen] = {}

    # --- setup ---------------------------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        # nothing from the developer's shell: no provider set -> the built-in demo district in-process
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEROSTER_", "DAGSTER_"))}
        env.update(self.server.env())
        env.update({
            "DAGSTER_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        })
        env.update(self.extra_env)
        return env

    def write_files(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(instance_config_for_tests(), sort_keys=False))
        # the shape of deploy/workspace.yaml, on this test's port
        workspace = yaml.safe_load((PROJECT_ROOT / "deploy" / "workspace.yaml").read_text())
        grpc = workspace["load_from"][0]["grpc_server"]
        assert grpc["location_name"] == LOCATION
        grpc.update({"host": self.grpc_host, "port": self.grpc_port})
        self.workspace.write_text(yaml.safe_dump(workspace, sort_keys=False))

    def _start(self, name: str, command: list[str], on_host: list[str] = ()) -> None:
        """Start `command` (prefixed by `on_host`, e.g. `ip netns exec <host>`) logging to <name>.log."""
        # the child keeps its own handle on the log; run from DAGSTER_HOME, not the checkout: the CLI would read a
        # developer's ./.env there
        with open(self.root / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                [*on_host, *command], cwd=self.home, env=self.environment(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, timeout: float = 60.0) -> None:
        """Code server first (the daemon and the webserver load the workspace from it), then daemon and webserver."""
        self.write_files()
        self._start("code-server", [*dagster_command("dagster"), "api", "grpc", "-m", "oneroster_pipeline.definitions",
                                    "-h", "127.0.0.1", "-p", str(self.grpc_port)])
        self.wait_for(self._grpc_answers, "the code server answers gRPC pings", timeout)
        self._start("daemon", [*dagster_command("dagster-daemon"), "run", "-w", str(self.workspace)])
        self._start("webserver", [*dagster_command("dagster-webserver"), "-w", str(self.workspace),
                                  "-h", "127.0.0.1", "-p", str(self.web_port)])
        self.wait_for(self._location_loaded, "the webserver serves the code location", timeout)

    # --- waiting -------------------------------------------------------------------------------------------------

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for name in self.processes:
            try:
                text = (self.root / f"{name}.log").read_text(errors="replace")[-chars:]
            except OSError:
                text = ""
            parts.append(f"----- {name} log (tail) -----\n{text}")
        parts.append(f"----- postgres log (tail) -----\n{self.server.log_tail(1500)}")
        return "\n".join(parts)

    def fail(self, message: str) -> None:
        raise AssertionError(f"{message}\n{self.logs()}")

    def _assert_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                self.fail(f"{name} exited with code {process.returncode}")

    def wait_for(self, condition, what: str, timeout: float, interval: float = 0.5):
        """Poll `condition()` until it returns a truthy value; fail (with the logs) when a process died or time ran
        out."""
        deadline = time.monotonic() + timeout
        while True:
            self._assert_alive()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout:.0f} s waiting until {what}")
            time.sleep(interval)

    def _grpc_answers(self, host: str = "127.0.0.1") -> bool:
        from dagster._core.errors import DagsterUserCodeUnreachableError
        from dagster._grpc.client import DagsterGrpcClient

        try:
            return DagsterGrpcClient(port=self.grpc_port, host=host).ping("ping")["echo"] == "ping"
        except DagsterUserCodeUnreachableError:  # until the server listens
            return False

    def _location_loaded(self) -> bool:
        try:
            data = self.graphql("""{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        except (requests.RequestException, AssertionError):
            return False
        entry = next((e for e in data["workspaceOrError"]["locationEntries"] if e["name"] == LOCATION), None)
        if entry is None or entry["loadStatus"] != "LOADED":
            return False
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            self.fail(f"code location failed to load: {loaded['message']}")
        return True

    # --- GraphQL and the CLI -------------------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return post_graphql(self.base_url, query, variables)

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """`dagster <args>` against this instance (DAGSTER_HOME) and workspace; fails with its output."""
        done = subprocess.run([*dagster_command("dagster"), *args], check=False, cwd=self.home, env=self.environment(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            self.fail(f"dagster {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                      f"{done.stderr[-3000:]}")
        return done.stdout + done.stderr

    def launch_run(self, job: str, tags: dict[str, str] | None = None) -> str:
        """Submit a run through the webserver (GraphQL launchRun): it goes to the run queue like the UI's."""
        data = self.graphql("""
            mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
              ... on LaunchRunSuccess { run { runId status } }
              ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }""",
            {"params": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                                     "jobName": job},
                        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}})
        result = data["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", f"launchRun {job} failed: {result}"
        return result["run"]["runId"]

    def runs(self) -> list[dict]:
        """Every run of the instance, as the webserver reports it (newest first)."""
        data = self.graphql("""{ runsOrError { __typename ... on Runs { results { runId jobName status
            startTime endTime tags { key value } } } } }""")
        assert data["runsOrError"]["__typename"] == "Runs", data
        return data["runsOrError"]["results"]

    def wait_for_runs(self, count: int, timeout: float, job: str | None = None) -> list[dict]:
        """Wait until `count` runs (of `job`) exist and all have finished; fail naming any that did not succeed."""
        def finished():
            runs = [r for r in self.runs() if job is None or r["jobName"] == job]
            return runs if len(runs) >= count and all(r["status"] in TERMINAL for r in runs) else None

        runs = self.wait_for(finished, f"{count} run(s) of {job or 'any job'} finished", timeout, interval=1.0)
        failed = [r for r in runs if r["status"] != "SUCCESS"]
        if failed:
            self.fail(f"runs did not succeed: {[(r['runId'], r['jobName'], r['status']) for r in failed]}")
        return runs

    # --- teardown ------------------------------------------------------------------------------------------------

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each process group (webserver, daemon, then the code servers with their run workers and the rest,
        newest first), SIGKILL what is left, including children that started their own session."""
        for name in ("webserver", "daemon", *reversed(list(self.processes))):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            stop_process_group(process, grace)
