"""A deployment on four hosts (network namespaces on one bridge, as root), a backfill spread over two of them, one lake.

- `pg`: PostgreSQL, holding Dagster's instance storage (database `dagster`) and the lake's catalog (its own database),
  and an S3-compatible object store (moto's server) holding the lake's data path, `s3://lake/districts/`;
- `control`: `dagster-daemon run`, `dagster-webserver`, and the address the workspace names for the code location: a
  TCP balancer (deploy/tcp_balancer.py) handing each connection to the worker running fewer processes, as a balancer
  in front of the replicas of a code-server Deployment would;
- `worker1`, `worker2`: a gRPC code server each (`dagster api grpc`, the same code and the same fixed server id, as
  replicas are), where Dagster's default run launcher starts the runs it is asked to start.

Each host has its own loopback (where a run starts its district's built-in demo provider) and reaches the others only
at their addresses. They share the catalog connection and the data path (over the network: no shared folder holds
the lake) and nothing else the sync uses. `dagster job backfill` over four districts goes through the run queue;
the daemon launches the runs through the balancer, so they land on both workers; every district ends in one lake,
exact.

Which host ran a run: every Dagster event records the pid of the process that wrote it, and the test watches which
pids live in each worker's namespace while the backfill runs. Not run here: runs on hosts without a code server
(the Docker/K8s launchers of deploy/). Skipped (with the reason) when
not root, without iproute2, or without the [lake] extra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict

import boto3
import pytest
import yaml
from botocore.exceptions import BotoCoreError, ClientError

from oneroster_pipeline_tests.deploy.dagster_processes import Deployment, dagster_command
from oneroster_pipeline_tests.deploy.postgres_server import start_server, stop_server

from .conftest import UNAVAILABLE, lake_env
from .test_lake_hosts import IP, READER, SHAPES, ip

pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"the DuckLake backend cannot run here: {UNAVAILABLE}"),
    pytest.mark.skipif(os.geteuid() != 0 or IP is None, reason="network namespaces need root and iproute2 (ip)"),
]
SUFFIX = f"dh{os.getpid() % 100000}"
NET = f"10.{200 + os.getpid() % 50}.0"
ADDRESSES = {"pg": f"{NET}.1", "control": f"{NET}.2", "worker1": f"{NET}.11", "worker2": f"{NET}.12",
             "operator": f"{NET}.100"}  # the operator: this test's own process, as a user's browser and CLI
HOSTS = ("pg", "control", "worker1", "worker2")
WORKERS = ("worker1", "worker2")
GRPC_PORT, WEB_PORT, S3_PORT = 4266, 3070, 9070
S3_ENDPOINT = f"http://{ADDRESSES['pg']}:{S3_PORT}"
S3_ACCESS = {"AWS_ACCESS_KEY_ID": "oneroster-writer", "AWS_SECRET_ACCESS_KEY": "lake-secret-7Hq2",
             "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": S3_ENDPOINT}
RUN_TIMEOUT = 300.0


@pytest.fixture
def lan():
    """The hosts' namespaces (`<suffix>-<host>`), each linked by a veth pair to one bridge in a namespace of its own,
    this test's namespace too (the operator); deleted at teardown, their links with them."""
    names = {host: f"{SUFFIX}-{host}" for host in ("lan", *HOSTS)}
    try:
        for ns in names.values():
            ip("netns", "add", ns)
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        ip("netns", "exec", names["lan"], "ip", "link", "add", "br0", "type", "bridge")
        ip("netns", "exec", names["lan"], "ip", "link", "set", "br0", "up")
        for i, host in enumerate((*HOSTS, "operator")):
            port, end = f"{SUFFIX}p{i}", f"{SUFFIX}e{i}"
            ns = [] if host == "operator" else ["netns", names[host]]
            ip("link", "add", port, "netns", names["lan"], "type", "veth", "peer", "name", end, *ns)
            ip("netns", "exec", names["lan"], "ip", "link", "set", port, "master", "br0", "up")
            on_host = [] if host == "operator" else ["netns", "exec", names[host], "ip"]
            ip(*on_host, "addr", "add", f"{ADDRESSES[host]}/24", "dev", end)
            ip(*on_host, "link", "set", end, "up")
        yield names
    finally:
        for ns in names.values():
            subprocess.run([IP, "netns", "del", ns], check=False, capture_output=True)


def on(names: dict[str, str], host: str) -> list[str]:
    return [IP, "netns", "exec", names[host]]


@pytest.fixture
def pg_host(lan):
    server = start_server(host=ADDRESSES["pg"], netns=on(lan, "pg"), trusted_network=f"{NET}.0/24")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def object_store(lan, tmp_path):
    """moto's S3 server on the pg host, with the bucket `lake`: a client of the object store (from the operator)."""
    with open(tmp_path / "object-store.log", "wb") as log:
        server = subprocess.Popen([*on(lan, "pg"), sys.executable, "-m", "moto.server", "-H", ADDRESSES["pg"],
                                   "-p", str(S3_PORT)], stdout=log, stderr=subprocess.STDOUT)
    client = boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id="admin", aws_secret_access_key="admin",
                          region_name="us-east-1")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket="lake")
                break
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        yield client
    finally:
        server.kill()
        server.wait(10)


class HostsDeployment(Deployment):
    """deploy/dagster.yaml's instance on the hosts above: code servers on the workers behind the control host's
    balancer, daemon and webserver on the control host."""

    def __init__(self, root, server, names, extra_env):
        super().__init__(root, server, extra_env)
        self.names = names
        self.grpc_host, self.grpc_port = ADDRESSES["control"], GRPC_PORT
        self.web_port, self.base_url = WEB_PORT, f"http://{ADDRESSES['control']}:{WEB_PORT}"

    def start(self, timeout: float = 120.0) -> None:
        self.write_files()
        # one after the other: the first creates Dagster's tables in the fresh storage database; two at once raced
        # to create them (CI: 'type "run_tags" already exists', the second code server exited)
        for worker in WORKERS:
            self._start(f"code-server-{worker}", [
                *dagster_command("dagster"), "api", "grpc", "-m", "oneroster_pipeline.definitions",
                "-h", ADDRESSES[worker], "-p", str(GRPC_PORT), "--fixed-server-id", "oneroster-code"],
                on(self.names, worker))
            self.wait_for(lambda w=worker: self._grpc_answers(ADDRESSES[w]), f"{worker}'s code server answers", timeout)
        backends = [f"{ADDRESSES[w]}:{GRPC_PORT}@{self.names[w]}" for w in WORKERS]
        self._start("balancer", [sys.executable, "-m", "oneroster_pipeline_tests.deploy.tcp_balancer",
                                 f"{ADDRESSES['control']}:{GRPC_PORT}", *backends], on(self.names, "control"))
        self.wait_for(lambda: self._grpc_answers(ADDRESSES["control"]), "the balancer answers", timeout)
        self._start("daemon", [*dagster_command("dagster-daemon"), "run", "-w", str(self.workspace)],
                    on(self.names, "control"))
        self._start("webserver", [*dagster_command("dagster-webserver"), "-w", str(self.workspace),
                                  "-h", ADDRESSES["control"], "-p", str(WEB_PORT)], on(self.names, "control"))
        self.wait_for(self._location_loaded, "the webserver serves the code location", timeout)


class PidsOfHosts(threading.Thread):
    """Every pid seen in each worker's namespace (`ip netns pids`), polled until stopped."""

    def __init__(self, names: dict[str, str]):
        super().__init__(daemon=True)
        self.names, self.seen, self.done = names, defaultdict(set), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for worker in WORKERS:
                listed = subprocess.run([IP, "netns", "pids", self.names[worker]], capture_output=True, text=True,
                                        check=False)
                self.seen[worker].update(int(pid) for pid in listed.stdout.split())

    def stop(self) -> dict[str, set[int]]:
        self.done.set()
        self.join(10)
        return self.seen


def hosts_of_runs(postgres, seen: dict[str, set[int]]) -> dict[str, set[str]]:
    """run id -> the workers whose processes wrote its events (the daemon's and the CLI's events are the control's
    and the operator's: no worker's)."""
    found = defaultdict(set)
    for run_id, event in postgres.query("SELECT run_id, event FROM event_logs WHERE run_id <> ''"):
        for pid in map(int, re.findall(r'"pid": ?(\d+)', event)):
            found[run_id].update(w for w in WORKERS if pid in seen[w])
    return found


def test_a_backfill_spreads_over_two_worker_hosts_into_one_lake(tmp_path, lan, pg_host, object_store):
    districts = tmp_path / "districts.yaml"
    districts.write_text(yaml.safe_dump({"districts": [
        {"id": d, "demo_schools": s, "demo_students": n, "demo_seed": seed} for d, (s, n, seed) in SHAPES.items()]}))
    catalog = pg_host.new_database("lake")
    env = {**lake_env("postgres:" + catalog.libpq, "s3://lake/districts/"), **S3_ACCESS,
           "ONEROSTER_DISTRICTS_FILE": str(districts)}
    dep = HostsDeployment(tmp_path, pg_host, lan, env)
    watcher = PidsOfHosts(lan)
    try:
        dep.start()
        watcher.start()
        dep.cli("job", "backfill", "-w", str(dep.workspace), "-j", "full_sync", "--all", "--noprompt",
                timeout=RUN_TIMEOUT)
        runs = dep.wait_for_runs(len(SHAPES), RUN_TIMEOUT, job="full_sync")
        seen = watcher.stop()
        balanced = (tmp_path / "balancer.log").read_text()
    finally:
        watcher.done.set()
        dep.stop()

    ran_on = hosts_of_runs(pg_host, seen)
    partition = {r["runId"]: next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition") for r in runs}
    placement = {partition[run_id]: sorted(ran_on[run_id]) for run_id in partition}
    # each run ran on exactly one worker, and the backfill used both
    assert all(len(workers) == 1 for workers in placement.values()), placement
    assert {w for workers in placement.values() for w in workers} == set(WORKERS), (placement, balanced)

    read = subprocess.run([*on(lan, "worker2"), sys.executable, "-c", READER], env={**os.environ, **env},
                          capture_output=True, text=True, check=False, timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    found = json.loads(read.stdout.strip().splitlines()[-1])
    assert found["schemas"] == sorted(SHAPES)
    for d, (schools, students, _) in SHAPES.items():
        assert found["counts"][d] == [students, schools, ["applied"]], d
    assert not list(tmp_path.rglob("*.duckdb")), "a DuckDB file was written: the runs did not use the lake"
    # the lake's data is in the object store, each district under its own prefix; none on this machine's disk
    stored = [o["Key"] for o in object_store.list_objects_v2(Bucket="lake", Prefix="districts/").get("Contents", [])]
    assert {key.split("/")[1] for key in stored if key.endswith(".parquet")} == set(SHAPES), stored
    assert not list(tmp_path.rglob("*.parquet"))
    assert S3_ACCESS["AWS_SECRET_ACCESS_KEY"] not in dep.logs(10**7)
