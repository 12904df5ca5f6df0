"""Diagnostics say what went wrong, once, naming what to fix (issue 13, items 7 and 8):

- a DuckDB path that cannot be written fails within seconds naming ONEROSTER_DUCKDB_PATH (a lock is waited for
  briefly, nothing else is retried), through `store.connect` and the Dagster `WarehouseResource` alike;
- a provider that cannot be reached says why: refused, DNS, TLS, connect or read timeout (real sockets on loopback;
  the `.invalid` name never resolves, so no real network traffic happens);
- the connection test starts the sync's own demo district, prints an error once, and reads a CSV export as the
  sync does (manifest version, users/roles rows);
- the fetched-count check speaks of rows read for a CSV pull, not of X-Total-Count.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from oneroster_pipeline import connection_test as command
from oneroster_pipeline.client import diagnostics as cli
from oneroster_pipeline.client.errors import OneRosterConnectionError
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.defs.resources import WarehouseResource
from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline_tests.loopback import free_port

from ..client.client_fixtures import serve

FAST_FAIL = 5.0  # seconds: "within seconds", with room for a loaded machine


# ---- DuckDB path ---------------------------------------------------------------------------------------------------
def store_connect(path):
    return store.connect(path)


def resource_connect(path):
    return WarehouseResource(database=str(path)).connect()


OPENERS = [pytest.param(store_connect, id="store.connect"), pytest.param(resource_connect, id="WarehouseResource")]


def open_error(opener, path) -> tuple[Exception, float]:
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        with opener(path):
            pass
    return info.value, time.monotonic() - started


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("case", ["a directory", "under a file", "not a DuckDB file"])
def test_an_unusable_duckdb_path_fails_at_once_naming_the_variable(tmp_path, opener, case):
    if case == "a directory":
        path = tmp_path / "oneroster.duckdb"
        path.mkdir()
        expected = "is a directory"
    elif case == "under a file":
        (tmp_path / "data").write_text("a file where a folder should be")
        path = tmp_path / "data" / "oneroster.duckdb"
        expected = "a parent of the path is a file"
    else:
        path = tmp_path / "oneroster.duckdb"
        path.write_text("not a database")
        expected = "not a DuckDB database file"
    error, elapsed = open_error(opener, path)
    assert str(error).startswith(f"ONEROSTER_DUCKDB_PATH={path}: ") and expected in str(error), str(error)
    assert elapsed < FAST_FAIL, f"took {elapsed:.1f}s"


@pytest.mark.parametrize("opener", OPENERS)
def test_a_path_without_write_permission_fails_at_once(opener):
    path = Path("/sys/oneroster-test.duckdb")  # sysfs refuses new files even to root
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs here")
    error, elapsed = open_error(opener, path)
    assert str(error).startswith(f"ONEROSTER_DUCKDB_PATH={path}: cannot open the DuckDB file for writing: "
                                 "permission denied"), str(error)
    assert elapsed < FAST_FAIL


@contextmanager
def lock_held(path: Path, seconds: float = 30.0):
    """Another process holding DuckDB's write lock on `path` (for `seconds` at most); yields its pid."""
    code = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("opener", OPENERS)
def test_a_file_locked_by_another_process_fails_after_a_short_wait_naming_the_pid(tmp_path, monkeypatch, opener):
    monkeypatch.setattr(store, "LOCK_WAIT_SECONDS", 1.0, raising=False)  # old code: no such wait
    path = tmp_path / "oneroster.duckdb"
    with lock_held(path) as holder:
        error, elapsed = open_error(opener, path)
    assert str(error).startswith(f"ONEROSTER_DUCKDB_PATH={path}: the DuckDB file is locked by another process "
                                 f"(pid {holder.pid})"), str(error)
    assert 1.0 <= elapsed < 1.0 + FAST_FAIL, f"took {elapsed:.1f}s"
    # a lock released within the wait is waited for
    monkeypatch.setattr(store, "LOCK_WAIT_SECONDS", 20.0, raising=False)
    with lock_held(path, seconds=1.0):
        with opener(path) as con:
            assert con.execute("SELECT count(*) FROM buildings").fetchall() == [(0,)]


# ---- connection errors -----------------------------------------------------------------------------------------
def rest_settings(base_url: str, **overrides) -> ConnectionSettings:
    settings = ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_AUTH": "none",
                                            "ONEROSTER_BASE_URL": base_url, "ONEROSTER_MAX_RETRIES": "0"})
    return settings.with_overrides(**{"backoff_seconds": 0.0, "timeout_seconds": 5.0, **overrides})


def pull_error(settings: ConnectionSettings) -> OneRosterConnectionError:
    with open_source(settings) as source:
        with pytest.raises(OneRosterConnectionError) as info:
            list(source.org_batches())
    return info.value



@contextmanager
def silent_server():
    """A loopback server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted, stop = [], threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@contextmanager
def full_backlog():
    """A loopback port whose listen backlog is full: new connections are never completed (a connect timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port, fillers = server.getsockname()[1], []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        time.sleep(0.1)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_a_refused_connection_says_refused_not_timed_out():
    port = free_port()
    error = pull_error(rest_settings(f"http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2"))
    message = str(error)
    assert message.startswith(f"connection refused by 127.0.0.1:{port}: nothing is listening"), message
    assert f"http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2/orgs" in message and "timed out" not in message
    assert (error.kind, error.host) == ("refused", f"127.0.0.1:{port}")


def test_a_host_name_that_does_not_resolve_is_a_dns_failure():
    started = time.monotonic()
    error = pull_error(rest_settings("http://nonexistent.invalid/ims/oneroster/rostering/v1p2"))
    assert str(error).startswith("DNS lookup failed: the host name 'nonexistent.invalid' could not be resolved"), \
        str(error)
    assert error.kind == "dns" and "timed out" not in str(error) and time.monotonic() - started < FAST_FAIL


def test_https_to_a_plain_http_server_is_a_tls_failure():
    with serve(auth="none") as provider:
        base = provider.base_url("1.2").replace("http://", "https://")
        error = pull_error(rest_settings(base))
    host = base.split("/")[2]
    assert str(error).startswith(f"TLS handshake with {host} failed"), str(error)
    assert "plain HTTP" in str(error) and error.kind == "tls"


def test_a_server_that_never_answers_is_a_read_timeout():
    with silent_server() as port:
        error = pull_error(rest_settings(f"http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2",
                                         timeout_seconds=0.3))
    assert str(error).startswith(f"read timed out: 127.0.0.1:{port} accepted the connection but sent no answer "
                                 "within 0.3s (ONEROSTER_TIMEOUT_SECONDS)"), str(error)
    assert error.kind == "read_timeout"


def test_a_connection_never_accepted_is_a_connect_timeout():
    with full_backlog() as port:
        error = pull_error(rest_settings(f"http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2",
                                         timeout_seconds=0.3))
    assert str(error).startswith(f"connect timed out: no connection to 127.0.0.1:{port} within 0.3s"), str(error)
    assert error.kind == "connect_timeout"


# ---- the connection test ---------------------------------------------------------------------------------------
def run_cli(capsys, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    code = command.main(list(args), env)  # the command: it starts the demo district when nothing is configured
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_with_no_provider_the_connection_test_starts_the_syncs_demo_district(capsys):
    code, out, _ = run_cli(capsys, {})  # nothing configured: the sync's defaults, 8 schools / 2000 students
    assert code == 0 and "demo district (8 schools, 2000 students, seed 42)" in out
    assert "students: 2000" in out.splitlines()
    shape = DistrictShape(schools=3, students=120, seed=9)
    code, out, _ = run_cli(capsys, {"ONEROSTER_DEMO_SCHOOLS": "3", "ONEROSTER_DEMO_STUDENTS": "120",
                                    "ONEROSTER_DEMO_SEED": "9"})
    schools = len(District(shape).school_ids())
    assert code == 0 and "demo district (3 schools, 120 students, seed 9)" in out
    assert "students: 120" in out.splitlines() and f"schools: {schools} " in out
    code, _, err = run_cli(capsys, {"ONEROSTER_DEMO_STUDENTS": "many"})
    assert code == 1 and "ONEROSTER_DEMO_STUDENTS: must be a whole number" in err


def test_a_failed_connection_test_prints_its_error_once(capsys):
    port = free_port()
    code, out, err = run_cli(capsys, {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_AUTH": "none",
                                      "ONEROSTER_MAX_RETRIES": "0",
                                      "ONEROSTER_BASE_URL": f"http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2"})
    failing_url = f"127.0.0.1:{port}/ims/oneroster/rostering/v1p2/schools"
    assert code == 1 and f"connection refused by 127.0.0.1:{port}" in err
    assert (out + err).count(failing_url) == 1, out + err


def csv_export(tmp_path: Path, version: str, edit=None) -> Path:
    """A demo district's OneRoster CSV export as a folder; `edit(folder)` breaks it."""
    district = District(DistrictShape(schools=3, students=40, seed=5))
    folder = tmp_path / f"export-{version}"
    with zipfile.ZipFile(export_csv(district, tmp_path / f"export-{version}.zip", version)) as archive:
        archive.extractall(folder)
    if edit:
        edit(folder)
    return folder


def csv_env(folder: Path) -> dict[str, str]:
    return {"ONEROSTER_PROVIDER": "csv", "ONEROSTER_CSV_PATH": str(folder)}


def rows_of(folder: Path, name: str) -> list[str]:
    return (folder / name).read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_csv_connection_test_shows_the_manifest_version_and_reads_the_students(capsys, tmp_path, version):
    folder = csv_export(tmp_path, version)
    code, out, err = run_cli(capsys, csv_env(folder))
    assert code == 0 and f"OneRoster version: {version}" in out.splitlines(), out
    files = "users.csv + roles.csv" if version == "1.2" else "users.csv"
    report = cli.connection_test(ConnectionSettings.from_env(csv_env(folder)))
    result, detail = {c.check: (c.result, c.detail) for c in report.checks}["students"]
    assert result == "ok" and detail.startswith(f"{files}: ") and "none rejected" in detail
    assert report.student_count == 40 and report.version == version
    assert {c.check: c.result for c in report.checks}["manifest"] == "ok"


def test_a_csv_export_whose_users_file_cannot_be_read_fails(capsys, tmp_path):
    def drop_sourced_id(folder: Path) -> None:
        users = rows_of(folder, "users.csv")
        (folder / "users.csv").write_text(users[0].replace("sourcedId", "id", 1) + "".join(users[1:]))

    code, out, err = run_cli(capsys, csv_env(csv_export(tmp_path, "1.1", drop_sourced_id)))
    assert code == 1 and "users.csv: has no sourcedId column" in err
    assert "users.csv: has no sourcedId column" not in out  # said once


def test_csv_rows_the_sync_would_reject_are_a_warning_with_counts_per_file(tmp_path):
    def break_rows(folder: Path) -> None:
        users = rows_of(folder, "users.csv")
        users[2] = users[2].rstrip("\r\n") + ",one column too many\n"
        (folder / "users.csv").write_text("".join(users))
        roles = rows_of(folder, "roles.csv")
        header = roles[0].rstrip("\r\n").split(",")
        cells = roles[1].rstrip("\r\n").split(",")
        cells[header.index("role")] = ""
        roles[1] = ",".join(cells) + "\n"
        (folder / "roles.csv").write_text("".join(roles))

    report = cli.connection_test(ConnectionSettings.from_env(csv_env(csv_export(tmp_path, "1.2", break_rows))))
    result, detail = {c.check: (c.result, c.detail) for c in report.checks}["students"]
    assert report.ok and result == "warning", detail
    # the user whose only roles.csv row lost its role is rejected too (no role at all: the enumeration rule)
    assert "3 rejected (2 in users.csv, 1 in roles.csv)" in detail and "users.csv line 3" in detail, detail
    assert "one column too many" not in detail  # locations and reasons, never values


# ---- the fetched-count check on a CSV pull ---------------------------------------------------------------------
def test_the_count_check_of_a_csv_pull_speaks_of_rows_read_not_of_x_total_count(tmp_path):
    from oneroster_pipeline.defs.sync.checks import fetched_count_matches_provider_total  # noqa: PLC0415

    path = tmp_path / "oneroster.duckdb"
    now = datetime.now(timezone.utc)
    with store.connect(path) as con:  # the row the sync writes for a CSV student pull (pipeline.py)
        store.insert_rows(con, "pull_reports", [dict(
            run_id="r1", collection="students", provider="csv", endpoint="users.csv + roles.csv", mode="full",
            started_at=now, reported_total=None, received=69, kept=58, duplicates=0, rejected=2, skipped=9,
            pages=1, complete=True, fetched_at=now)])
    with WarehouseResource(database=str(path)).connect() as con:
        result = fetched_count_matches_provider_total.evaluate(con, SyncPolicy.from_env({}))
    assert result.passed and result.check_name == "fetched_count_matches_provider_total"
    assert "X-Total-Count" not in result.description
    assert result.description.startswith("CSV export (users.csv + roles.csv): 69 rows read, 2 rejected"), \
        result.description
    spec = fetched_count_matches_provider_total.spec
    assert "CSV export" in spec.description and "X-Total-Count" in spec.description  # both kinds of pull
