"""Where the student step's time and memory go, phase by phase and statement by statement (the library path the
`student_sync_assets` step runs, without Dagster's events), against the fast static provider.

    .venv/bin/python benchmarks/step_phases.py --students 1000000 [--definitions] [--statements 15]

In a fresh process (the measured one): import, connect, the org pull and building sync, then the student pull
staged to Parquet and `apply_student_pull`. For each phase: wall seconds, this process's CPU seconds (every
thread), RSS at its end and the peak RSS reached during it (the kernel's high-water mark, reset at each phase's
start through /proc/self/clear_refs), and Arrow's memory pool (bytes allocated now). Then the apply's SQL
statements by wall time (a proxy around the DuckDB connection times every `execute`), the slowest first.
`--definitions` first imports the code location (`oneroster_pipeline.definitions`, which imports dagster) as the
step's process has. Experiments: ONEROSTER_PHASES_TRIM=1 adds two phases after staging (Arrow's pool released,
then glibc's malloc_trim) to show what of the staging's RSS can be given back; ONEROSTER_PHASES_KEEP=FILE copies
the staged Parquet file to FILE and the DuckDB file before the apply to FILE.duckdb. Not a test: the numbers depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _status(key: str) -> float:
    """VmRSS / VmHWM of this process in MB (VmHWM: its own peak, unlike ru_maxrss, which keeps the peak of the
    parent it was forked from across exec: 589 MB reported for a 315 MB child of apply_benchmark.py)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass


class Phases:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def run(self, name: str, work):
        import pyarrow as pa

        _reset_peak()
        started, cpu = time.perf_counter(), time.process_time()
        value = work()
        self.rows.append({"phase": name, "wall": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                          "rss": _status("VmRSS"), "peak": _status("VmHWM"),
                          "arrow": pa.total_allocated_bytes() / 2**20})
        return value


class TimedConnection:
    """A DuckDB connection whose `execute` is timed per statement (everything else passes through)."""

    def __init__(self, con, times: list) -> None:
        self._con, self._times = con, times

    def execute(self, sql, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._con.execute(sql, *args, **kwargs)
        finally:
            self._times.append((time.perf_counter() - started, " ".join(str(sql).split())[:110]))

    def __getattr__(self, name):
        return getattr(self._con, name)

    def __hash__(self) -> int:
        return hash(self._con)

    def __eq__(self, other) -> bool:
        return other is self or other is self._con


def child(base_url: str, token_url: str, page_size: int, definitions: bool, statements: int) -> None:
    phases = Phases()
    if definitions:
        phases.run("import the code location", lambda: __import__("oneroster_pipeline.definitions"))
    from datetime import UTC, datetime

    from dagster_run_benchmark import CLIENT_ID, CLIENT_SECRET

    def imports():
        from oneroster_pipeline.client.settings import ConnectionSettings
        from oneroster_pipeline.client.sources import open_source
        from oneroster_pipeline.warehouse import pulls, store
        from oneroster_pipeline.warehouse.buildings import sync_buildings
        from oneroster_pipeline.warehouse.policy import HoldPolicy
        return ConnectionSettings, open_source, pulls, store, sync_buildings, HoldPolicy

    ConnectionSettings, open_source, pulls, store, sync_buildings, HoldPolicy = phases.run("import the core", imports)
    env = {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": base_url, "ONEROSTER_AUTH": "oauth2",
           "ONEROSTER_TOKEN_URL": token_url, "ONEROSTER_CLIENT_ID": CLIENT_ID, "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET,
           "ONEROSTER_PAGE_SIZE": str(page_size)}
    times: list = []
    with tempfile.TemporaryDirectory(prefix="oneroster-phases-") as workdir, \
            open_source(ConnectionSettings.from_env(env)) as source:
        database, now = Path(workdir) / "phases.duckdb", datetime.now(UTC)

        def connect():
            with store.connect(database):
                pass

        def orgs_and_buildings():
            with store.connect(database) as con:
                pulls.apply_org_pull(con, orgs, "bench", now)
                with store.transaction(con):
                    sync_buildings(con, now)

        phases.run("connect (DuckDB, tables)", connect)
        orgs = phases.run("org pull: fetch, stage (first Parquet file)",
                          lambda: pulls.stage_pull(source, "orgs", Path(workdir) / "orgs"))
        phases.run("org apply, building sync", orgs_and_buildings)
        pull = phases.run("student pull: fetch, decode, normalise, stage",
                          lambda: pulls.stage_pull(source, "students", Path(workdir) / "students"))

        def apply():
            with store.connect(database) as con:
                return pulls.apply_student_pull(TimedConnection(con, times), pull, "bench", now, HoldPolicy())

        if os.environ.get("ONEROSTER_PHASES_TRIM"):  # an experiment: what of the staging's RSS can be given back
            import ctypes

            import pyarrow as pa
            phases.run("release: Arrow pool", lambda: pa.default_memory_pool().release_unused())
            phases.run("release: malloc_trim", lambda: ctypes.CDLL("libc.so.6").malloc_trim(0))
        if os.environ.get("ONEROSTER_PHASES_KEEP"):  # an experiment's input: the staged file, copied
            import shutil
            shutil.copy(pull.path, os.environ["ONEROSTER_PHASES_KEEP"])
            shutil.copy(database, os.environ["ONEROSTER_PHASES_KEEP"] + ".duckdb")
        done = phases.run("apply (connect, load, plan, holds, apply, commit)", apply)
        phases.run("after: nothing (RSS held)", lambda: None)
    print(json.dumps({"phases": phases.rows, "statements": sorted(times, reverse=True)[:statements],
                      "statement_total": sum(t for t, _ in times), "outcome": done.outcome, "rows": pull.rows}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--definitions", action="store_true", help="import the code location first (as the step)")
    parser.add_argument("--statements", type=int, default=15, help="how many of the slowest statements to list")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.page_size, args.definitions, args.statements)
        return 0
    from dagster_run_benchmark import start_provider

    provider = start_provider(args.students, 40, 0, False)
    try:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {provider.banner}")
        for _ in range(args.repeat):
            command = [sys.executable, __file__, "--child", provider.base_url, provider.token_url,
                       "--page-size", str(args.page_size), "--statements", str(args.statements)] + \
                      (["--definitions"] if args.definitions else [])
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-3000:])
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"\n{result['rows']} students, outcome {result['outcome']}; load average {os.getloadavg()[0]:.2f}")
            print(f"  {'phase':<52} {'wall s':>7} {'CPU s':>6} {'RSS MB':>7} {'peak MB':>8} {'Arrow MB':>9}")
            for p in result["phases"]:
                print(f"  {p['phase']:<52} {p['wall']:>7.2f} {p['cpu']:>6.2f} {p['rss']:>7.0f} {p['peak']:>8.0f} "
                      f"{p['arrow']:>9.1f}")
            print(f"  apply statements: {result['statement_total']:.2f} s in all; the slowest:")
            for seconds, sql in result["statements"]:
                print(f"  {seconds:>7.2f} s  {sql}")
    finally:
        provider.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
