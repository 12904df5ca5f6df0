"""Benchmark: many districts synced from scratch by ONE asset backfill through Dagster's daemon, beside one big district.

    .venv/bin/python benchmarks/many_districts_benchmark.py [--districts 200] [--students 1000000] \
        [--per-run 1 25] [--max-concurrent-runs 2 4] [--hosts 4] [--slow-hosts 1] [--slow-latency-ms 50] \
        [--baseline-students 1000000 | --no-baseline] [--backfill-baseline] [--floor] [--keep] \
        [--warehouse duckdb ducklake]   # ducklake: run with .venv-lake/bin/python (the [lake] extra)

Providers: `--hosts` processes of `benchmarks/static_provider.py --districts` (pre-rendered pages, OAuth 2.0), each
serving its share of the districts under `/<id>/ims/oneroster/v1p1`; the last `--slow-hosts` of them answer every
page after `--slow-latency-ms`. District sizes are skewed (size ~ rank^-0.8, a few large and many small, shuffled so
batches mix sizes); one more district (`dead`, counted in `--districts`, last in the file) points at a port nothing
listens on (`--no-dead`: all `--districts` are live).

Per scenario (each `--per-run` x each `--max-concurrent-runs`), in a fresh folder: the districts YAML
(ONEROSTER_DISTRICTS_FILE), a DAGSTER_HOME whose `dagster.yaml` has SQLite storage, the run queue
(`max_concurrent_runs`, a `tag_concurrency_limits` entry per unique `oneroster/provider_host`, 1 s dequeue interval)
and the `duckdb` pool's limit at `max_concurrent_runs`; a `workspace.yaml` loading `oneroster_pipeline.definitions`;
`dagster instance migrate`; then `dagster-daemon run` (debug log) and `dagster-webserver` with
ONEROSTER_DISTRICTS_PER_RUN set. Once the daemons are healthy and the backfill daemon has logged its first (idle)
tick, one GraphQL `launchPartitionBackfill` over every district for full_sync's assets (an asset backfill:
BackfillPolicy.multi_run(N) groups N districts per run): submitted after the first tick, the backfill waits for the
daemon's next one (up to 30 s), the same in every scenario, and that pickup (the submit to the first run's creation)
is reported apart. Then it polls the instance until the backfill is no longer requested and every run has finished.
Reported: runs, succeeded / failed (and which districts the failed runs covered), wall time from the submit to the
last run's end, throughput, time to the first run, the median queue wait and run time, the students that landed
(counted: students + ignored_students over the districts' DuckDB files, or the lake's district schemas), peak RSS of
every process of the Dagster tree (daemon, webserver, code servers, run workers, sampled every 0.2 s: the max of any
single process by role, and the max sum) and the provider processes' RSS, separately.

`--warehouse duckdb ducklake`: each scenario twice, one after the other on the same providers, queue and pool settings:
into one DuckDB file per district, then into one lake (ONEROSTER_WAREHOUSE=ducklake: its catalog a new database of a
throwaway Debian PostgreSQL server the script starts, as the lake tests do; its data path a local folder; the catalog
and district schemas created before the submit, deploy/LAKE.md's setup step). The lake needs the `[lake]` extra: run
the script with `.venv-lake/bin/python`, so both sides use its DuckDB (printed), and the ratio lake / files is printed.

Baseline: one `--baseline-students` district with `dagster job execute -j full_sync` (dagster_run_benchmark.py's
provider and CLI helpers) into a DuckDB file, wall time of the process, peak RSS of its tree, the students it landed
(counted in its file). `--backfill-baseline` adds the same
district synced by one asset backfill through the daemon, as the many-district scenarios are (its own host and
instance; the daemon's 0-30 s pickup included), and prints each scenario's ratio to it.

`--floor` runs, after each scenario, the same backfill of `benchmarks/orchestration_floor.py` (full_sync's asset
graph, steps and checks recording each district and doing no work) in the same way: what Dagster itself costs here.

`--executor default` (the default) passes no run config: every run, an asset backfill's implicit asset job's too,
uses the code location's in-process executor (`Definitions(executor=in_process_executor)`). `--executor in_process`
names that executor in the run config (`execution: {config: {}}`). (Before the code location set it, asset backfill
runs used Dagster's multiprocess executor and the in-process run config was `{in_process: {}}`.) Not a test:
numbers depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dagster_run_benchmark import (
    CLIENT_ID,
    CLIENT_SECRET,
    MB,
    ROOT,
    Provider,
    TreeSample,
    TreeSampler,
    _clean_environ,
    cpu_seconds,
    dagster_execute,
    start_provider,
    sync_env,
)

BIN = Path(sys.executable).parent
SECRET_VAR = "BENCH_OR_SECRET"
# full_sync's assets (defs/sync/jobs.py: BUILDING_ASSETS | STUDENT_ASSETS); their checks come with them
FULL_SYNC_ASSETS = ("oneroster_orgs", "buildings", "oneroster_users", "students", "student_buildings",
                    "ignored_students")
CODE_LOCATION = "oneroster_pipeline.definitions"
FLOOR = "benchmarks.orchestration_floor"  # full_sync's asset graph doing no work: Dagster's own cost
DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


# ----------------------------------------------------------------------------------------------- districts

def plan_districts(live: int, students: int, hosts: int, seed: int) -> list[dict]:
    """`live` districts totalling `students` (size ~ rank^-0.8, at least 200), shuffled, spread over the hosts
    round-robin by size (the dead one is added after them, in `districts_yaml`)."""
    weights = [(rank + 1) ** -0.8 for rank in range(live)]
    sizes = [max(200, int(students * w / sum(weights))) for w in weights]
    sizes[0] += students - sum(sizes)
    plan = [{"students": n, "schools": max(2, min(40, n // 2500)), "seed": 1000 + rank, "host": rank % hosts}
            for rank, n in enumerate(sizes)]
    random.Random(seed).shuffle(plan)
    for number, district in enumerate(plan, start=1):
        district["id"] = f"d{number:03d}"
    return plan


@dataclass
class Host:
    provider: Provider
    latency_ms: int
    urls: dict[str, str]  # district id -> base URL


def start_host(districts: list[dict], latency_ms: int, folder: Path, number: int) -> subprocess.Popen:
    """Start one provider host (it renders, then prints its URLs and `ready`: see `host_ready`)."""
    spec = folder / f"host{number}.json"
    spec.write_text(json.dumps([{k: d[k] for k in ("id", "students", "schools", "seed")} for d in districts]))
    command = [sys.executable, str(ROOT / "benchmarks" / "static_provider.py"), "--port", "0", "--districts",
               str(spec), "--latency-ms", str(latency_ms), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def host_ready(process: subprocess.Popen, latency_ms: int, number: int) -> Host:
    urls, found = {}, {}
    for line in process.stdout:
        if match := re.match(r"district (\S+): (\S+)", line):
            urls[match.group(1)] = match.group(2)
        elif match := re.match(r"token URL: (\S+)", line):
            found["token"] = match.group(1)
        elif line.startswith("rendered"):
            found["banner"] = line.strip()
        elif line.strip() == "ready":
            return Host(Provider(process, "", found["token"], found.get("banner", "")), latency_ms, urls)
    raise RuntimeError(f"provider host {number} did not start (exit code {process.wait()})")


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lake_number(number: int, districts: int, lakes: int) -> int:
    """The lake of the live district `number` (-1: the dead one, the last lake): `lakes` blocks of districts."""
    return lakes - 1 if number < 0 else min(lakes - 1, number * lakes // districts)


def districts_yaml(plan: list[dict], hosts: list[Host], folder: Path, dead_district: bool,
                   files: bool = True, lakes: list[dict[str, str]] | None = None) -> str:
    """The districts file; `files`: each district's DuckDB file under folder/data (the lake: no file keys); `lakes`
    (more than one): the districts in order, in len(lakes) blocks, each writing one lake (its ducklake_* keys; the
    dead one the last lake): a batched run's districts share few lakes (deploy/LAKE.md, "Memory")."""
    lines = ["districts:"]

    def lake_keys(number: int) -> list[str]:
        if not lakes or len(lakes) < 2:
            return []
        env = lakes[lake_number(number, len(plan), len(lakes))]
        return ["    warehouse: ducklake", f"    ducklake_catalog: {env['ONEROSTER_DUCKLAKE_CATALOG']}",
                f"    ducklake_data_path: {env['ONEROSTER_DUCKLAKE_DATA_PATH']}"]

    for number, d in enumerate(plan):
        host = hosts[d["host"]]
        lines += [f"  - id: {d['id']}", "    provider: oneroster", f"    base_url: {host.urls[d['id']]}",
                  "    auth: oauth2", f"    token_url: {host.provider.token_url}", f"    client_id: {CLIENT_ID}",
                  f"    client_secret_env: {SECRET_VAR}", "    page_size: 1000"]
        if files:
            lines.append(f"    duckdb_path: {folder / 'data' / (d['id'] + '.duckdb')}")
        lines += lake_keys(number)
    if not dead_district:
        return "\n".join(lines) + "\n"
    dead = free_port()  # closed again: nothing listens there
    lines += ["  - id: dead", "    name: Dead Valley", "    provider: oneroster",
              f"    base_url: http://127.0.0.1:{dead}/ims/oneroster/v1p1", "    auth: oauth2",
              f"    token_url: http://127.0.0.1:{dead}/oauth2/token", f"    client_id: {CLIENT_ID}",
              f"    client_secret_env: {SECRET_VAR}", "    max_retries: 0", "    timeout_seconds: 2"]
    if files:
        lines.append(f"    duckdb_path: {folder / 'data' / 'dead.duckdb'}")
    lines += lake_keys(-1)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- the instance

DAGSTER_YAML = """telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: {runs}
    tag_concurrency_limits:
      - key: oneroster/provider_host
        value: {{applyLimitPerUniqueValue: true}}
        limit: {host_limit}
  pools:
    default_limit: {runs}
run_queue:
  dequeue_interval_seconds: 1
"""

WORKSPACE_YAML = """load_from:
  - python_module:
      module_name: {module}
      location_name: oneroster_pipeline
      working_directory: {root}
"""


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=120)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
LOCATION = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on PartitionKeysNotFoundError { message } ... on UnauthorizedError { message } } }"""


FIRST_TICK = "No backfill jobs in progress, canceling, or failing."  # the backfill daemon's idle tick (debug)


def wait_first_backfill_tick(log: Path, deadline: float) -> float:
    """Wait until the backfill daemon has ended its first tick (its idle line in the daemon's debug log): a backfill
    submitted after it waits for the next tick, 30 s later at most (DEFAULT_DAEMON_INTERVAL_SECONDS), whenever the
    daemon started. Returns the time the line was seen."""
    while time.monotonic() < deadline:
        if FIRST_TICK in log.read_text(errors="replace"):
            return time.time()
        time.sleep(0.2)
    raise TimeoutError(f"the backfill daemon logged no tick in {log}")


def wait_ready(url: str, deadline: float) -> None:
    """The webserver answers, the code location is loaded and every required daemon is healthy."""
    while time.monotonic() < deadline:
        try:
            entries = graphql(url, LOCATION)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                error = entries[0]["locationOrLoadError"]
                if error and error["__typename"] == "PythonError":
                    raise RuntimeError(f"code location failed to load: {error['message'][:2000]}")
                statuses = graphql(url, DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
                if statuses and all(s["healthy"] for s in statuses if s["required"]):
                    return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError("the webserver, code location or daemons did not become ready")


# ------------------------------------------------------------------------------------------------ the lake

class LakeServer:
    """--warehouse ducklake: one throwaway PostgreSQL server (Debian's binaries, as the lake tests start it:
    oneroster_pipeline_tests/deploy/postgres_server.py) for the whole benchmark; each scenario's catalog is a new
    database of it and its data path a local folder of the scenario."""

    def __init__(self) -> None:
        sys.path.insert(0, str(ROOT))
        from oneroster_pipeline_tests.deploy.postgres_server import start_server

        self.server = start_server()
        self.count = 0

    def env(self, folder: Path) -> dict[str, str]:
        """A new lake's environment: its catalog a new database, its data under folder/lake-data-<n>."""
        self.count += 1
        return {"ONEROSTER_WAREHOUSE": "ducklake",
                "ONEROSTER_DUCKLAKE_CATALOG": "postgres:" + self.server.new_database("lake").libpq,
                "ONEROSTER_DUCKLAKE_DATA_PATH": str(folder / f"lake-data-{self.count}")}

    def stop(self) -> None:
        from oneroster_pipeline_tests.deploy.postgres_server import stop_server

        stop_server(self.server)


LAKE_SCRIPT = """import json, os, sys
from oneroster_pipeline.warehouse import lake
from oneroster_pipeline.warehouse.lake_settings import LakeSettings
settings = LakeSettings.from_env(os.environ)
if sys.argv[1] == "create":
    print(json.dumps(lake.create_lake(settings, sys.argv[2:])))
else:
    with lake.reader(settings) as con:  # district by district: one statement over 200 districts took 4.6 GB
        total = sum(row[1] for row in lake.rows_per_district(
            con, "SELECT (SELECT count(*) FROM students) + (SELECT count(*) FROM ignored_students)"))
        print(json.dumps({"students": total}))
"""


def lake_call(env: dict[str, str], *args: str) -> dict:
    """LAKE_SCRIPT in a process of its own (the lake's DuckDB instance and catalog connections end with it)."""
    done = subprocess.run([sys.executable, "-c", LAKE_SCRIPT, *args], check=False, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"lake {args[0]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Outcome:
    per_run: int
    max_runs: int
    warehouse: str = "duckdb"
    wall: float = 0.0
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    failed_districts: str = ""
    first_run: float = 0.0
    queue_wait: float = 0.0
    run_seconds: float = 0.0
    backfill_done: float = 0.0
    backfill_status: str = ""
    landed: int = 0
    rss: TreeSample | None = None
    host_tagged: int = 0
    provider_cpu: float = 0.0
    tick_wait: float = 0.0
    error: str = ""


def districts_of(tags: dict) -> str:
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    return f"{tags.get('dagster/asset_partition_range_start')}...{tags.get('dagster/asset_partition_range_end')}"


def backfill_params(kind: str, executor: str, keys: list[str], per_run: int) -> dict:
    """launchPartitionBackfill's input: an asset backfill of full_sync's assets, or a job backfill of full_sync's
    partition set (runs of the full_sync job itself, with its run tags and its in-process executor)."""
    title = {"title": f"many districts benchmark, {per_run} per run"}
    if kind == "job":
        return {"selector": {"partitionSetName": "full_sync_partition_set", "repositorySelector": {
            "repositoryName": "__repository__", "repositoryLocationName": "oneroster_pipeline"}},
            "partitionNames": keys, **title}
    run_config = {"execution": {"config": {}}} if executor == "in_process" else None
    return {"assetSelection": [{"path": [key]} for key in FULL_SYNC_ASSETS], "partitionNames": keys, **title,
            **({"runConfigData": run_config} if run_config else {})}


def run_scenario(plan: list[dict], hosts: list[Host], per_run: int, max_runs: int, host_limit: int,
                 executor: str, kind: str, dead: bool, timeout: float, keep: bool, module: str = CODE_LOCATION,
                 lake_server: LakeServer | None = None, lakes: int = 1) -> Outcome:
    """One backfill on a fresh instance; into DuckDB files, or with `lake_server` into a new lake."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    outcome = Outcome(per_run, max_runs, "ducklake" if lake_server else "duckdb")
    work = Path(tempfile.mkdtemp(prefix="oneroster-many-districts-"))
    home = work / "dagster_home"
    home.mkdir()
    (work / "data").mkdir()
    lake_envs = [lake_server.env(work) for _ in range(lakes)] if lake_server else []
    (work / "districts.yaml").write_text(districts_yaml(plan, hosts, work, dead, files=lake_server is None,
                                                        lakes=lake_envs))
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(runs=max_runs, host_limit=host_limit))
    (work / "workspace.yaml").write_text(WORKSPACE_YAML.format(root=ROOT, module=module))
    env = {**_clean_environ(), "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT), SECRET_VAR: CLIENT_SECRET,
           "ONEROSTER_DISTRICTS_FILE": str(work / "districts.yaml"), "ONEROSTER_DISTRICTS_PER_RUN": str(per_run)}
    keys = [d["id"] for d in plan] + (["dead"] if dead else [])
    groups = [[key for number, key in enumerate(keys)
               if lake_number(-1 if key == "dead" else number, len(plan), lakes) == n] for n in range(lakes)]
    if lake_server:
        env.update(lake_envs[0])
        # deploy/LAKE.md's setup step, before concurrent writers (not timed): the catalog and every district schema
        for lake_env, group in zip(lake_envs, groups):
            lake_call({**env, **lake_env}, "create", *group)
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, cwd=work, check=True,
                   capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/graphql"
    logs = [(work / name).open("w") for name in ("daemon.log", "webserver.log")]
    # debug: the backfill daemon's idle tick is a debug line (wait_first_backfill_tick)
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "--log-level", "debug", "-w",
                               str(work / "workspace.yaml")], env=env,
                              cwd=work, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True)
    webserver = subprocess.Popen([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w",
                                  str(work / "workspace.yaml")], env=env, cwd=work, stdout=logs[1],
                                 stderr=subprocess.STDOUT, start_new_session=True)
    sampler = TreeSampler([daemon.pid, webserver.pid], interval=0.2)
    sampler.start()
    provider_cpu = _cpu_seconds([host.provider.process.pid for host in hosts])
    instance = None
    try:
        wait_ready(url, time.monotonic() + 180)
        ticked = wait_first_backfill_tick(work / "daemon.log", time.monotonic() + 180)
        params = backfill_params(kind, executor, keys, per_run)
        submitted = time.time()
        outcome.tick_wait = submitted - ticked
        result = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {result}")
        backfill_id = result["backfillId"]
        instance = DagsterInstance.from_config(str(home))
        finished = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
        deadline = time.monotonic() + timeout
        while True:
            backfill = instance.get_backfill(backfill_id)
            records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
            status = backfill.status.value if backfill else "?"
            if status in DONE and all(r.dagster_run.status in finished for r in records):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {status}, {len(records)} runs, not done in {timeout:.0f} s")
            time.sleep(1)
        outcome.backfill_done, outcome.backfill_status = time.time() - submitted, status
        outcome.runs = len(records)
        ok = [r for r in records if r.dagster_run.status == DagsterRunStatus.SUCCESS]
        bad = [r for r in records if r.dagster_run.status != DagsterRunStatus.SUCCESS]
        outcome.succeeded, outcome.failed = len(ok), len(bad)
        outcome.failed_districts = ", ".join(sorted(districts_of(r.dagster_run.tags) for r in bad))
        outcome.host_tagged = sum("oneroster/provider_host" in r.dagster_run.tags for r in records)
        ends = [r.end_time for r in records if r.end_time]
        outcome.wall = max(ends) - submitted if ends else 0.0
        outcome.first_run = min(r.create_timestamp.timestamp() for r in records) - submitted if records else 0.0
        outcome.queue_wait = median(r.start_time - r.create_timestamp.timestamp() for r in records
                                    if r.start_time) if records else 0.0
        outcome.run_seconds = median(r.end_time - r.start_time for r in records
                                     if r.start_time and r.end_time) if records else 0.0
        outcome.landed = (sum(lake_call({**env, **lake_env}, "count")["students"] for lake_env in lake_envs)
                          if lake_server else landed_students(work / "data", plan))
    except Exception as error:  # noqa: BLE001 (report what happened, keep the folder to look at)
        outcome.error = f"{type(error).__name__}: {error}"[:1500]
        keep = True
    finally:
        outcome.rss = sampler.stop()
        outcome.provider_cpu = _cpu_seconds([host.provider.process.pid for host in hosts]) - provider_cpu
        if instance is not None:
            instance.dispose()
        for process in (daemon, webserver):
            try:
                os.killpg(process.pid, signal.SIGTERM)  # its own session: the daemon's code server and run workers
            except ProcessLookupError:
                pass
        for process in (daemon, webserver):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for log in logs:
            log.close()
        if keep:
            print(f"# kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return outcome


def _cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(psutil.Process(pid)) for pid in pids)


def landed_students(folder: Path, plan: list[dict]) -> int:
    """Students in students + ignored_students over every live district's DuckDB file."""
    import duckdb

    total = 0
    for d in plan:
        path = folder / f"{d['id']}.duckdb"
        if path.exists():
            with duckdb.connect(str(path), read_only=True) as con:
                total += con.execute("SELECT (SELECT count(*) FROM students) + "
                                     "(SELECT count(*) FROM ignored_students)").fetchone()[0]
    return total


# ------------------------------------------------------------------------------------------------- report

# a run worker is a multiprocessing child of the code server (DefaultRunLauncher -> the code server's start_run);
# with --executor default a step's process is one too
ROLES = (("daemon", ("dagster-daemon",)), ("webserver", ("dagster-webserver",)), ("code server", ("api grpc",)),
         ("run worker", ("execute_run", "spawn_main", "multiprocessing")))


def role_of(command_line: str) -> str:
    """A process's role (ROLES) from its command line; "other" for step subprocesses and anything else."""
    return next((role for role, marks in ROLES if any(mark in command_line for mark in marks)), "other")


def by_role(sample: TreeSample) -> dict[str, int]:
    """The largest peak RSS of any single process per role (other: step subprocesses and anything else)."""
    peaks: dict[str, int] = {}
    for pid, rss in sample.peak_by_pid.items():
        role = role_of(sample.name_by_pid.get(pid, ""))
        peaks[role] = max(peaks.get(role, 0), rss)
    return peaks


def cpu_by_role(sample: TreeSample) -> dict[str, float]:
    """CPU seconds summed over every process of each role."""
    seconds: dict[str, float] = {}
    for pid, cpu in sample.cpu_by_pid.items():
        role = role_of(sample.name_by_pid.get(pid, ""))
        seconds[role] = seconds.get(role, 0.0) + cpu
    return seconds


def cpu_text(sample: TreeSample) -> str:
    """`Dagster processes N (role n, ...)`: CPU seconds of the Dagster tree, and by role."""
    return (f"Dagster processes {sample.cpu_seconds:.0f} ("
            + ", ".join(f"{role} {cpu:.0f}" for role, cpu in sorted(cpu_by_role(sample).items())) + ")")


def baseline(students: int, schools: int) -> tuple[float, int, TreeSample, int]:
    """One district, `dagster job execute -j full_sync`, fresh DAGSTER_HOME and DuckDB: (wall s, exit, RSS, the
    students that landed in its DuckDB file)."""
    provider = start_provider(students, schools, 0, False)
    workdir = Path(tempfile.mkdtemp(prefix="oneroster-one-district-"))
    try:
        home = workdir / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**_clean_environ(), "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT),
               **sync_env(provider, 1000, workdir, None)}
        before = _cpu_seconds([provider.process.pid])
        wall, code, tail, samples = dagster_execute("full_sync", env, [], sample=True)
        print(f"# baseline provider CPU s {_cpu_seconds([provider.process.pid]) - before:.0f}", flush=True)
        if code:
            print(f"# baseline failed: {tail}", flush=True)
        landed = landed_students(workdir, [{"id": "warehouse"}])
        return wall, code, samples, landed
    finally:
        provider.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def one_district_backfill(args) -> tuple:
    """One --baseline-students district on one provider host, synced by one asset backfill through the daemon: the
    table row (the same launch path as the many-district scenarios)."""
    district = {"id": "one", "students": args.baseline_students, "schools": 40, "seed": 1000, "host": 0}
    folder = Path(tempfile.mkdtemp(prefix="oneroster-one-host-"))
    process = start_host([district], 0, folder, 0)
    try:
        host = host_ready(process, 0, 0)
        out = run_scenario([district], [host], 1, 1, args.host_limit, args.executor, "asset", False, args.timeout,
                           args.keep)
    finally:
        Provider(process, "", "", "").stop()
        shutil.rmtree(folder, ignore_errors=True)
    print("# one district by asset backfill: " + (out.error or (
        f"ended {out.wall:.1f} s after submit, first run created at {out.first_run:.1f} s, run {out.run_seconds:.1f}"
        f" s; students landed {out.landed}; CPU s: {cpu_text(out.rss)}")), flush=True)
    return ("one district (asset backfill)", 1, args.baseline_students, 1, 1, out.runs, out.wall, out.first_run,
            f"{out.succeeded}/{out.failed}", out.landed,
            f"{max(out.rss.peak_by_pid.values()) / MB:.0f}" if out.rss else "-",
            f"{out.rss.peak_sum / MB:.0f}" if out.rss else "-", f"{os.getloadavg()[0]:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--districts", type=int, default=200, help="districts, the dead one included")
    parser.add_argument("--no-dead", action="store_true", help="no dead district: all --districts are live")
    parser.add_argument("--students", type=int, default=1_000_000, help="students over the live districts")
    parser.add_argument("--per-run", type=int, nargs="+", default=[1, 25], help="ONEROSTER_DISTRICTS_PER_RUN")
    parser.add_argument("--max-concurrent-runs", type=int, nargs="+", default=[2])
    parser.add_argument("--host-limit", type=int, default=1, help="runs in progress per provider host (tag limit)")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--slow-hosts", type=int, default=1)
    parser.add_argument("--slow-latency-ms", type=int, default=50)
    parser.add_argument("--executor", choices=("in_process", "default"), default="default",
                        help="asset backfill: default = no run config (the code location's in-process executor); "
                             "in_process = that executor named in the run config")
    parser.add_argument("--backfill", choices=("asset", "job"), default="asset",
                        help="asset: full_sync's assets (BackfillPolicy); job: full_sync's partition set")
    parser.add_argument("--baseline-students", type=int, default=1_000_000)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--backfill-baseline", action="store_true",
                        help="also sync one --baseline-students district by one asset backfill through the daemon "
                             "(the many-district rows' launch path, its 0-30 s pickup included)")
    parser.add_argument("--floor", action="store_true",
                        help="after each scenario, the same backfill of benchmarks/orchestration_floor.py: full_sync's "
                             "asset graph, steps and checks doing no work (Dagster's own cost on this machine)")
    parser.add_argument("--warehouse", choices=("duckdb", "ducklake"), nargs="+", default=["duckdb"],
                        help="each scenario into DuckDB files (duckdb) and/or one lake (ducklake: a PostgreSQL "
                             "catalog on a throwaway Debian PostgreSQL server, a local data path; needs the [lake] "
                             "extra: run with .venv-lake/bin/python, so both sides use its DuckDB), one after the other")
    parser.add_argument("--lakes", type=int, default=1,
                        help="ducklake: spread the districts over this many lakes (a catalog database and data folder "
                             "each, districts-file keys), district n into lake n mod N")
    parser.add_argument("--timeout", type=float, default=3600, help="per scenario, seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep each scenario's folder (DAGSTER_HOME, logs, DuckDB)")
    args = parser.parse_args()
    if args.floor and args.backfill == "job":
        parser.error("--floor measures an asset backfill: the floor's code location has no partitioned job")
    import duckdb

    duckdb_version = duckdb.__version__

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GB RAM; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.backfill} backfill, executor {args.executor}; "
          f"DuckDB {duckdb_version}; warehouse {' '.join(args.warehouse)}", flush=True)
    rows = []
    if not args.no_baseline:
        wall, code, rss, landed = baseline(args.baseline_students, 40)
        rows.append((f"one district (CLI full_sync), duckdb file {duckdb_version}", 1, args.baseline_students, "-",
                     "-", 1, wall, 0.0, "ok" if code == 0 else "FAILED", landed,
                     f"{max(rss.peak_by_pid.values()) / MB:.0f}", f"{rss.peak_sum / MB:.0f}", "-"))
        print(f"# baseline: {args.baseline_students} students ({landed} landed), full_sync {wall:.1f} s, exit {code}, max RSS "
              f"{max(rss.peak_by_pid.values()) / MB:.0f} MB, CPU s {rss.cpu_seconds:.0f} (provider apart); load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    if args.backfill_baseline:
        rows.append(one_district_backfill(args))
    dead = not args.no_dead
    plan = plan_districts(args.districts - dead, args.students, args.hosts, args.seed)
    sizes = sorted((d["students"] for d in plan), reverse=True)
    print(f"# districts: {len(plan)} live + {0 if args.no_dead else 1} dead; students {sum(sizes)}; largest {sizes[:5]}, median "
          f"{sizes[len(sizes) // 2]}, smallest {sizes[-1]}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="oneroster-many-hosts-"))
    hosts: list[Host] = []
    pairs: dict[tuple[int, int], dict[str, tuple[float, float]]] = {}  # (per run, max runs) -> (wall, pickup)
    started_hosts: list[subprocess.Popen] = []
    lake_server = LakeServer() if "ducklake" in args.warehouse else None
    try:
        started = time.perf_counter()
        latencies = [args.slow_latency_ms if n >= args.hosts - args.slow_hosts else 0 for n in range(args.hosts)]
        started_hosts = [start_host([d for d in plan if d["host"] == n], latencies[n], folder, n)
                         for n in range(args.hosts)]  # they render side by side
        hosts = [host_ready(process, latencies[n], n) for n, process in enumerate(started_hosts)]
        provider_rss = [psutil.Process(h.provider.process.pid).memory_info().rss for h in hosts]
        print(f"# providers: {args.hosts} processes ready in {time.perf_counter() - started:.0f} s; RSS "
              + ", ".join(f"{rss / MB:.0f} MB" for rss in provider_rss) + f" (sum {sum(provider_rss) / MB:.0f} MB); "
              + "; ".join(f"host {n}: {h.provider.banner}, latency {h.latency_ms} ms" for n, h in enumerate(hosts)),
              flush=True)
        # the warehouses one after the other within each scenario (the floor does no work: no warehouse)
        scenarios = [(max_runs, per_run, module, warehouse) for max_runs in args.max_concurrent_runs
                     for per_run in args.per_run for module in (CODE_LOCATION, FLOOR)[:1 + args.floor]
                     for warehouse in (args.warehouse if module == CODE_LOCATION else ["duckdb"])]
        for max_runs, per_run, module, warehouse in scenarios:
            floor = module == FLOOR
            out = run_scenario(plan, hosts, per_run, max_runs, args.host_limit, args.executor, args.backfill,
                               dead, args.timeout, args.keep, module,
                               lake_server if warehouse == "ducklake" else None, args.lakes)
            roles = by_role(out.rss) if out.rss else {}
            lake_label = "one lake" if args.lakes == 1 else f"{args.lakes} lakes"
            label = "orchestration floor" if floor else (lake_label if warehouse == "ducklake" else "DuckDB files")
            print(f"# {label}, {per_run} per run, max {max_runs} runs: " + (out.error or (
                f"submitted {out.tick_wait:.1f} s after the backfill daemon's first tick; "
                f"{out.runs} runs ({out.succeeded} ok, {out.failed} failed: {out.failed_districts}); last run "
                f"ended {out.wall:.1f} s after submit, first run created at {out.first_run:.1f} s, backfill "
                f"{out.backfill_status} seen at {out.backfill_done:.1f} s; median queue wait "
                f"{out.queue_wait:.1f} s, median run {out.run_seconds:.1f} s; runs with a provider_host tag: "
                f"{out.host_tagged}; students landed {out.landed}; peak RSS by role (MB): "
                + ", ".join(f"{role} {rss / MB:.0f}" for role, rss in sorted(roles.items()))
                + f"; CPU s: {cpu_text(out.rss)}, providers {out.provider_cpu:.0f}"
                + f"; load {os.getloadavg()[0]:.1f}")), flush=True)
            if not out.error:
                if not floor:
                    pairs.setdefault((per_run, max_runs), {})[warehouse] = (out.wall, out.first_run)
                rows.append((("orchestration floor (no work): " if floor else "")
                             + f"{args.backfill} backfill, {per_run}/run" + ("" if dead else ", no dead")
                             + ("" if floor else f", {lake_label if warehouse == 'ducklake' else 'duckdb files'} "
                                                 f"{duckdb_version}"),
                             len(plan) + dead, sum(sizes), per_run,
                             max_runs, out.runs, out.wall, out.first_run, f"{out.succeeded}/{out.failed}",
                             out.landed,
                             f"{max(out.rss.peak_by_pid.values()) / MB:.0f}", f"{out.rss.peak_sum / MB:.0f}",
                             f"{os.getloadavg()[0]:.1f}"))
    finally:
        for process in started_hosts:
            Provider(process, "", "", "").stop()
        shutil.rmtree(folder, ignore_errors=True)
        if lake_server:
            lake_server.stop()
    base = rows[0][6] if rows and rows[0][0].startswith("one district") else None
    print("\n| scenario | districts | students | per run | max runs | runs | wall s | of which the daemon's pickup s "
          "| x one district | x one district, from pickup | students/s | ok/failed | students landed "
          "| max RSS MB (any process) | sum RSS MB | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, districts, students, per_run, max_runs, runs, wall, pickup, status, landed, peak, total, load1 in rows:
        ratios = (f"{wall / base:.2f} | {(wall - pickup) / base:.2f}") if base else "- | -"
        print(f"| {name} | {districts} | {students:,} | {per_run} | {max_runs} | {runs} | {wall:.1f} | {pickup:.1f} | "
              f"{ratios} | {students / wall:,.0f} | {status} | {landed:,} | {peak} | {total} | {load1} |")
    one_backfill = next((row for row in rows if row[0] == "one district (asset backfill)"), None)
    if one_backfill:
        for row in rows:
            if row[1] > 1:
                print(f"\n{row[0]}: x one district by the same asset backfill (both from the submit) "
                      f"{row[6] / one_backfill[6]:.2f}", end="")
        print()
    for (per_run, max_runs), walls in pairs.items():
        if len(walls) == 2:
            (lake, lake_pickup), (files, files_pickup) = walls["ducklake"], walls["duckdb"]
            print(f"{lake_label} x DuckDB files ({per_run}/run, max {max_runs} runs): from the submit "
                  f"{lake / files:.2f}, from the daemon's pickup {(lake - lake_pickup) / (files - files_pickup):.2f}")
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
