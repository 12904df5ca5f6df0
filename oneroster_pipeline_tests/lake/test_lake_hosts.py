"""Two run hosts and a catalog host on one machine (network namespaces, as root): PostgreSQL (the lake's catalog) runs in
a namespace of its own, reachable only at its own addresses; two "hosts", each a namespace with its own loopback
(where each run starts its built-in demo district), its own Dagster instance folder and its own address, each run
`dagster job execute -j full_sync` for two districts of one districts file at the same time. They share nothing but
the catalog connection and the data path (a folder: one file system). A reader on one host then finds the four
districts in one lake, each exact.

What this does not run: the Dagster webserver, daemon and code servers in namespaces, a backfill spread over the
hosts, object storage. Skipped (with the reason) when not root, without iproute2, or without the [lake] extra."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from oneroster_pipeline_tests.deploy.postgres_server import SERVER_USER, _as_server_user, find_bindir

from .conftest import UNAVAILABLE

DAGSTER = str(Path(sys.executable).parent / "dagster")
IP = shutil.which("ip")
pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"the DuckLake backend cannot run here: {UNAVAILABLE}"),
    pytest.mark.skipif(os.geteuid() != 0 or IP is None, reason="network namespaces need root and iproute2 (ip)"),
]
PORT = 5432
SUFFIX = f"lk{os.getpid() % 100000}"
# catalog host: one address per link; run host N: 10.27.N.2, the catalog at 10.27.N.1
HOSTS = {1: ("north", "south"), 2: ("east", "west")}
SHAPES = {"north": (3, 60, 11), "south": (2, 40, 12), "east": (2, 50, 13), "west": (3, 30, 14)}

READER = """
import json, sys
from oneroster_pipeline.warehouse import lake
from oneroster_pipeline.warehouse.lake_settings import LakeSettings
import os
with lake.reader(LakeSettings.from_env(os.environ)) as con:
    schemas = lake.district_schemas(con)
    counts = {s: con.execute(f"SELECT (SELECT count(*) FROM {s}.students) + (SELECT count(*) FROM {s}.ignored_students),"
                             f" (SELECT count(*) FROM {s}.buildings), (SELECT list(outcome) FROM {s}.sync_runs)"
                             ).fetchall()[0] for s in schemas}
print(json.dumps({"schemas": schemas, "counts": counts}))
"""


def ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, text=True)


def in_ns(ns: str, command: list[str]) -> list[str]:
    return [IP, "netns", "exec", ns, *command]


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except ConnectionRefusedError:
    sys.exit(0)  # the address answered
except OSError:
    sys.exit(1)
"""


def reachable(ns: str, address: str, port: int = PORT) -> bool:
    """Whether a TCP connection from namespace `ns` (one of this test's) to `address` gets an answer."""
    return subprocess.run(in_ns(ns, [sys.executable, "-c", PROBE, address, str(port)]), check=False,
                          capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def network():
    """Namespaces `<suffix>-pg`, `<suffix>-h1`, `<suffix>-h2`, each run host linked to the catalog host by a veth
    pair (10.27.N.1 <-> 10.27.N.2), every loopback up; deleted at teardown (their links go with them)."""
    names = {"pg": f"{SUFFIX}-pg", 1: f"{SUFFIX}-h1", 2: f"{SUFFIX}-h2"}
    try:
        for ns in names.values():
            ip("netns", "add", ns)
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        for n in HOSTS:
            a, b = f"{SUFFIX}c{n}", f"{SUFFIX}h{n}"
            ip("link", "add", a, "netns", names["pg"], "type", "veth", "peer", "name", b, "netns", names[n])
            ip("netns", "exec", names["pg"], "ip", "addr", "add", f"10.27.{n}.1/24", "dev", a)
            ip("netns", "exec", names["pg"], "ip", "link", "set", a, "up")
            ip("netns", "exec", names[n], "ip", "addr", "add", f"10.27.{n}.2/24", "dev", b)
            ip("netns", "exec", names[n], "ip", "link", "set", b, "up")
        yield names
    finally:
        for ns in names.values():
            subprocess.run([IP, "netns", "del", ns], check=False, capture_output=True)


@pytest.fixture
def catalog_host(network):
    """PostgreSQL in the catalog namespace, listening on its two addresses only (trust for 10.27.0.0/16), with the
    database `lake`."""
    bindir, prefix = find_bindir(), _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="oneroster-pg-ns-"))
    data = root / "data"
    if prefix:
        import pwd

        entry = pwd.getpwnam(SERVER_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    pg = network["pg"]
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "lake", "--auth=trust", "-E", "UTF8",
                    "--locale=C", "--no-sync"], check=True, capture_output=True)
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all 10.27.0.0/16 trust\n")
    options = (f"-c listen_addresses=10.27.1.1,10.27.2.1 -c port={PORT} -c unix_socket_directories={data} "
               "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
    try:
        subprocess.run(in_ns(pg, [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o",
                                  options, "-w", "-t", "60", "start"]), check=True, capture_output=True)
        subprocess.run(in_ns(pg, [*prefix, str(bindir / "createdb"), "-h", "10.27.1.1", "-p", str(PORT), "-U",
                                  "lake", "lake"]), check=True, capture_output=True)
        yield root
    finally:
        subprocess.run(in_ns(pg, [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def host_env(n: int, folder: Path, districts: Path, data_path: Path) -> dict[str, str]:
    """Host n's environment: its own instance folder, the catalog at the catalog host's address on its link."""
    home = folder / f"host{n}"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEROSTER_", "PG"))}
    env.update(DAGSTER_HOME=str(home), ONEROSTER_DISTRICTS_FILE=str(districts), ONEROSTER_WAREHOUSE="ducklake",
               ONEROSTER_DUCKLAKE_CATALOG=f"postgres:dbname=lake host=10.27.{n}.1 port={PORT} user=lake",
               ONEROSTER_DUCKLAKE_DATA_PATH=str(data_path))
    return env


def test_two_hosts_sync_their_districts_into_one_lake_on_a_third(tmp_path, network, catalog_host):
    districts = tmp_path / "districts.yaml"
    districts.write_text("districts:\n" + "".join(
        f"  - id: {d}\n    demo_schools: {s}\n    demo_students: {n}\n    demo_seed: {seed}\n"
        for d, (s, n, seed) in SHAPES.items()))
    data_path = tmp_path / "lake-data"
    envs = {n: host_env(n, tmp_path, districts, data_path) for n in HOSTS}
    for n, env in envs.items():  # each host's own SQLite instance, created before its runs start side by side
        subprocess.run(in_ns(network[n], [DAGSTER, "instance", "migrate"]), env=env, cwd=env["DAGSTER_HOME"],
                       check=True, capture_output=True)
    runs = {d: subprocess.Popen(
        in_ns(network[n], [DAGSTER, "job", "execute", "-m", "oneroster_pipeline.definitions", "-j", "full_sync",
                           "--tags", json.dumps({"dagster/partition": d})]),
        env=envs[n], cwd=envs[n]["DAGSTER_HOME"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for n, ds in HOSTS.items() for d in ds}
    outputs = {d: run.communicate(timeout=400)[0] for d, run in runs.items()}
    for d, run in runs.items():
        assert run.returncode == 0, outputs[d][-3000:]
    # each host reaches the catalog at its own link's address only: not the other host, nor the catalog's other
    # address (a host has no route there: nothing leaves its namespace)
    for n in HOSTS:
        assert not reachable(network[n], f"10.27.{3 - n}.2", 22) and not reachable(network[n], f"10.27.{3 - n}.1")
        assert reachable(network[n], f"10.27.{n}.1")
    read = subprocess.run(in_ns(network[2], [sys.executable, "-c", READER]), env=envs[2], capture_output=True,
                          text=True, check=False, timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    found = json.loads(read.stdout.strip().splitlines()[-1])
    assert found["schemas"] == sorted(SHAPES)
    for d, (schools, students, _) in SHAPES.items():
        landed, buildings, outcomes = found["counts"][d]
        assert (landed, buildings, outcomes) == (students, schools, ["applied"]), d
    assert not list(tmp_path.glob("host*/data"))  # no DuckDB file on either host
