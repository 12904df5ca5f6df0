"""A throwaway PostgreSQL server for the deployment tests: Debian's `postgresql` binaries, `initdb` + `pg_ctl` in a
temporary folder, trust authentication, a free loopback port, stopped (and deleted) at teardown.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the `postgres` system user (which
Debian's package creates) through `runuser`; a developer's own user runs it directly. Missing binaries are a
failure with the install command, not a skip: CI (.ci/run) installs them.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from oneroster_pipeline_tests.loopback import free_port

SERVER_USER = "postgres"  # the system user Debian's postgresql package creates
INSTALL_HINT = "install Debian's PostgreSQL: apt-get install -y postgresql (.ci/run does this)"
_databases = itertools.count(1)  # new_database's numbers, unique in the process


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin (newest), else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0)
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise AssertionError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")



@dataclass
class PostgresServer:
    """One running server: connect as `user` (no password) to `db_name` on `host`:`port` (loopback, or an address on a
    test's network of namespaces)."""

    bindir: Path
    root: Path
    port: int
    user: str = "dagster"
    db_name: str = "dagster"
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        # +psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which dagster-postgres does not install
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.db_name}"

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads, pointing at this server."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": self.db_name}

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def connect(self):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=self.db_name)

    @property
    def libpq(self) -> str:
        """The libpq connection string of this database (a DuckLake catalog is `postgres:` + this)."""
        return f"dbname={self.db_name} host={self.host} port={self.port} user={self.user}"

    def new_database(self, prefix: str) -> PostgresServer:
        """A fresh, empty database on this server (`<prefix>_<n>`): no test or scenario sees another's data."""
        name = f"{prefix}_{next(_databases)}"
        con = self.connect()
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        con.close()
        return PostgresServer(bindir=self.bindir, root=self.root, port=self.port, user=self.user, db_name=name,
                              host=self.host)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of one query, on a connection closed afterwards."""
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            con.close()


def _as_server_user() -> list[str]:
    """The command prefix that runs a PostgreSQL binary as a user it accepts (never root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise AssertionError(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as: "
                             f"{INSTALL_HINT}") from exc
    runuser = shutil.which("runuser")
    if runuser is None:
        raise AssertionError("running as root and `runuser` (util-linux) is missing: cannot drop to the postgres user")
    return [runuser, "-u", SERVER_USER, "--"]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{what} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def start_server(timeout: float = 60.0, *, host: str = "127.0.0.1", netns: list[str] | None = None,
                 trusted_network: str | None = None) -> PostgresServer:
    """initdb a fresh cluster in a temporary folder and start it on a free port of `host` (loopback by default; an
    address of a test's network when `netns` is the `ip netns exec <name>` prefix that puts the server on that host,
    accepting `trusted_network`, a CIDR); wait until it accepts."""
    bindir = find_bindir()
    prefix = _as_server_user()
    # not pytest's tmp_path: that sits under a root-only folder the postgres user cannot enter
    root = Path(tempfile.mkdtemp(prefix="oneroster-pg-"))
    server = PostgresServer(bindir=bindir, root=root, port=free_port(), host=host)
    if prefix:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    _run([*prefix, str(bindir / "initdb"), "-D", str(server.data_dir), "-U", server.user, "--auth=trust",
          "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
    if trusted_network:
        with open(server.data_dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {trusted_network} trust\n")
    # the Unix socket goes in the data folder: /var/run/postgresql may not exist or be writable
    options = (f"-c listen_addresses={host} -c port={server.port} -c unix_socket_directories={server.data_dir} "
               "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=100")
    on_host = netns or []
    _run([*on_host, *prefix, str(bindir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.log_path),
          "-o", options, "-w", "-t", str(int(timeout)), "start"], "pg_ctl start")
    _run([*on_host, *prefix, str(bindir / "createdb"), "-h", host, "-p", str(server.port), "-U", server.user,
          server.db_name], "createdb")
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.connect().close()
            return server
        except Exception as exc:  # psycopg2.OperationalError until the server accepts
            if time.monotonic() > deadline:
                stop_server(server)
                raise AssertionError(f"PostgreSQL did not accept connections: {exc}\n{server.log_tail()}") from exc
            time.sleep(0.2)


def stop_server(server: PostgresServer) -> None:
    """Stop the server (fast shutdown: open connections are closed) and delete its folder."""
    try:
        subprocess.run([*_as_server_user(), str(server.bindir / "pg_ctl"), "-D", str(server.data_dir), "-m", "fast",
                        "-w", "-t", "30", "stop"],
                       check=False, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
