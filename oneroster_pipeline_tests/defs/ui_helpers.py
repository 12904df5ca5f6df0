"""Helpers for the browser test of the Dagster UI: a `dagster dev` subprocess, its GraphQL API, and Chromium.

`dagster dev` runs in its own process group on 127.0.0.1 with a temporary DAGSTER_HOME (a copy of the project's
dagster.yaml), a temporary DuckDB file and the built-in demo district; `DagsterDev.stop()` ends the whole group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from oneroster_pipeline_tests.dagster_servers import post_graphql, stop_process_group
from oneroster_pipeline_tests.loopback import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium as root on a machine with a closed network (see README, "Using the UI")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCATION = "oneroster_pipeline"  # workspace.yaml's location_name
REPOSITORY = "__repository__"  # the repository name Dagster gives a `Definitions` object
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}



class DagsterDev:
    """`dagster dev -w workspace.yaml` on a free loopback port, isolated from the developer's own instance."""

    def __init__(self, home: Path, log_path: Path, demo_students: int = 300,
                 workspace: Path = PROJECT_ROOT / "workspace.yaml"):
        self.home = home
        self.workspace = workspace
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.demo_students = demo_students
        self.process: subprocess.Popen | None = None
        self._log = None

    def environment(self) -> dict[str, str]:
        # no ONEROSTER_* from the developer's shell: no provider set -> the built-in demo district in-process
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEROSTER_", "DAGSTER_"))}
        env.update({
            "DAGSTER_HOME": str(self.home),
            "ONEROSTER_DUCKDB_PATH": str(self.home / "oneroster.duckdb"),
            "ONEROSTER_DEMO_STUDENTS": str(self.demo_students),
            "PYTHONUNBUFFERED": "1",
            # the code server imports the package from this checkout, installed or not
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        })
        return env

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "dagster.yaml", self.home / "dagster.yaml")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(self.workspace),
             "-h", "127.0.0.1", "-p", str(self.port)],
            # run from DAGSTER_HOME, not the checkout: the CLI would read a developer's ./.env there
            cwd=self.home, env=self.environment(), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _assert_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"dagster dev exited with code {self.process.returncode}; log tail:\n{self.log_tail()}")

    def wait_until_loaded(self, timeout: float = 120.0) -> None:
        """Wait until the webserver answers and the code location is loaded; fail with its error if it did not."""
        deadline = time.monotonic() + timeout
        while True:
            self._assert_alive()
            try:
                if requests.get(f"{self.base_url}/server_info", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"webserver did not answer within {timeout:.0f} s; log tail:\n{self.log_tail()}")
            time.sleep(0.5)
        query = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
            locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"""
        while True:
            self._assert_alive()
            entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            assert entry is not None, f"code location {LOCATION!r} missing from the workspace: {entries}"
            if entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise AssertionError(
                        f"code location {LOCATION!r} failed to load: {loaded['message']}\n{''.join(loaded['stack'])}")
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"code location not loaded within {timeout:.0f} s; log tail:\n{self.log_tail()}")
            time.sleep(0.5)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return post_graphql(self.base_url, query, variables)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group (webserver, daemon, code servers), then SIGKILL whatever is left."""
        if self.process is None:
            return
        stop_process_group(self.process, grace)
        if self._log is not None:
            self._log.close()
        self.process = None

    # --- GraphQL reads the test asserts on -------------------------------------------------------------------

    def repository(self) -> dict:
        data = self.graphql("""
            query Repo($selector: RepositorySelector!) { repositoryOrError(repositorySelector: $selector) {
              __typename ... on PythonError { message }
              ... on Repository { jobs { name } schedules { name scheduleState { status } }
                assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name
                  executionForLatestMaterialization { status runId evaluation { success } } } } } } } } }""",
            {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}})
        repo = data["repositoryOrError"]
        assert repo["__typename"] == "Repository", f"repository not loaded: {repo}"
        return repo

    def run(self, run_id: str) -> dict:
        data = self.graphql("""
            query Run($runId: ID!) { runOrError(runId: $runId) { __typename
              ... on Run { runId jobName status tags { key value } } } }""", {"runId": run_id})
        run = data["runOrError"]
        assert run["__typename"] == "Run", f"run {run_id} not found: {run}"
        return run

    def run_errors(self, run_id: str) -> list[str]:
        data = self.graphql("""
            query Logs($runId: ID!) { logsForRun(runId: $runId, limit: 1000) { ... on EventConnection {
              events { __typename ... on MessageEvent { message stepKey }
                ... on ExecutionStepFailureEvent { error { ...Chain } }
                ... on RunFailureEvent { error { ...Chain } } } } } }
            fragment Chain on PythonError { message errorChain { error { message } } }""", {"runId": run_id})
        events = (data["logsForRun"] or {}).get("events", [])
        lines = []
        for event in events:
            if event["__typename"] not in ("ExecutionStepFailureEvent", "RunFailureEvent"):
                continue
            error = event.get("error") or {}
            causes = [link["error"]["message"].strip() for link in error.get("errorChain") or []]
            lines.append(" <- ".join([f"{event.get('stepKey') or 'run'}: {event.get('message')}", *causes]))
        return lines

    def wait_for_run(self, run_id: str, timeout: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in TERMINAL_RUN_STATUSES:
                return run
            self._assert_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {run['status']} after {timeout:.0f} s")
            time.sleep(1)

    def latest_metadata(self, asset: str, run_id: str) -> dict:
        """Text and number metadata of the asset's latest materialization, which must come from `run_id`."""
        data = self.graphql("""
            query Latest($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename
              ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries { label
                ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue }
                ... on FloatMetadataEntry { floatValue } } } } } }""", {"key": {"path": [asset]}})
        materializations = data["assetOrError"].get("assetMaterializations") or []
        assert materializations and materializations[0]["runId"] == run_id, (
            f"{asset} was not materialized by run {run_id}: {materializations[:1]}")
        return {e["label"]: e.get("text", e.get("intValue", e.get("floatValue")))
                for e in materializations[0]["metadataEntries"]}

    def add_dynamic_partition(self, partitions_def: str, key: str) -> None:
        """Add a key to a dynamic partitions definition, as the UI's "Add a partition" does."""
        data = self.graphql("""
            mutation Add($name: String!, $key: String!, $selector: RepositorySelector!) {
              addDynamicPartition(partitionsDefName: $name, partitionKey: $key, repositorySelector: $selector) {
                __typename ... on PythonError { message } } }""",
            {"name": partitions_def, "key": key,
             "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}})
        assert data["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", data

    def partition_keys(self, asset: str) -> list[str]:
        """The partition keys the UI offers for an asset."""
        data = self.graphql("""
            query Keys($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
              ... on AssetNode { partitionKeys } } }""", {"key": {"path": [asset]}})
        node = data["assetNodeOrError"]
        assert node["__typename"] == "AssetNode", f"asset {asset} not found: {node}"
        return node["partitionKeys"]

    def schedule_status(self, name: str) -> str:
        data = self.graphql("""
            query Schedule($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
              __typename ... on Schedule { scheduleState { status } } } }""",
            {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "scheduleName": name}})
        schedule = data["scheduleOrError"]
        assert schedule["__typename"] == "Schedule", f"schedule {name!r} not found: {schedule}"
        return schedule["scheduleState"]["status"]


@contextmanager
def step(page, name: str):
    """One step of the walkthrough: a screenshot in test-artifacts/ui/ afterwards, marked FAILED if it raised."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        _screenshot(page, f"{name}-FAILED")
        raise
    _screenshot(page, name)


def _screenshot(page, name: str) -> None:
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    except Exception:  # a screenshot must never hide the real failure
        pass
