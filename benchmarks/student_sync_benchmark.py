"""Benchmark: the real student sync path against the demo provider, beside the fetch floor.

    .venv/bin/python benchmarks/student_sync_benchmark.py --students 1000000 [--latency-ms 100] [--page-size 1000]

For each district size it starts the demo provider in its own process (auth none), then prints side by side:
- the fetch floor: the same /students pages (same query: limit, fields, sort) fetched with plain `requests`, one
  at a time on one connection, and thrown away;
- the sync at concurrency 1 and at the provider profile's default concurrency (generic OneRoster: 8), each in a
  fresh process running the very path the Dagster assets run (pipeline.stage_pull -> apply_org_pull -> buildings ->
  apply_student_pull): wall time of the student pull + apply, rows/s, peak RSS of that process, and the split:
  fetch+stage (client -> Parquet) and apply (DuckDB), with the peak RSS reached before the apply started.
Not a test: numbers depend on the machine; the closing notes of the performance issue quote runs of it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def start_demo(students: int, schools: int, latency_ms: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "oneroster_pipeline.demo", "--port", "0", "--students", str(students),
               "--schools", str(schools), "--auth", "none", "--version", "1.2", "--latency-ms", str(latency_ms)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        match = re.search(r"1\.2 base URL: (\S+)", line)
        if match:
            return process, match.group(1)
    raise RuntimeError("the demo provider did not start")


def fetch_floor(base_url: str, page_size: int) -> tuple[float, int]:
    """Plain requests over every /students page the sync asks for (same query: fields, sort, limit), one at a
    time on one connection, bodies read and discarded."""
    from oneroster_pipeline.client.rest import SORT_FIELD, USER_FIELDS

    query = {"fields": USER_FIELDS["1.2"], "sort": SORT_FIELD, "limit": page_size}
    session, offset, pages, started = requests.Session(), 0, 0, time.perf_counter()
    while True:
        response = session.get(f"{base_url}/students", params={**query, "offset": offset})
        response.raise_for_status()
        total = int(response.headers["X-Total-Count"])
        offset += page_size
        pages += 1
        if offset >= total:
            return time.perf_counter() - started, pages


def child(base_url: str, page_size: int, concurrency: int | None, workdir: str, memory_limit: str | None) -> None:
    """The measured process: the real sync path, then its own wall time and peak RSS as JSON."""
    from oneroster_pipeline.client.settings import ConnectionSettings
    from oneroster_pipeline.client.sources import open_source
    from oneroster_pipeline.warehouse import store
    from oneroster_pipeline.warehouse.buildings import sync_buildings
    from oneroster_pipeline.warehouse.policy import HoldPolicy
    from oneroster_pipeline.warehouse.pulls import apply_org_pull, apply_student_pull, stage_pull

    env = {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": base_url, "ONEROSTER_AUTH": "none",
           "ONEROSTER_PAGE_SIZE": str(page_size)}
    if os.environ.get(_AUTH_FROM_ENV):  # another provider's credentials (dagster_run_benchmark.py --library)
        env.update({name: os.environ[name] for name in AUTH_VARIABLES if os.environ.get(name)})
    if concurrency:
        env["ONEROSTER_MAX_CONCURRENCY"] = str(concurrency)
    settings = ConnectionSettings.from_env(env)
    database = Path(workdir) / "bench.duckdb"
    with open_source(settings) as source, store.connect(database) as con:
        if memory_limit:  # an experiment: replaces what store.connect set (store.DEFAULT_MEMORY_LIMIT or the variable)
            store.limit_memory(con, memory_limit)
        now = datetime.now(timezone.utc)
        apply_org_pull(con, stage_pull(source, "orgs", Path(workdir) / "orgs"), "bench", now)
        with store.transaction(con):
            sync_buildings(con, now)
        started, cpu_started = time.perf_counter(), time.process_time()  # CPU: every thread of this process
        pull = stage_pull(source, "students", Path(workdir) / "students")
        staged, staged_rss, cpu_staged = time.perf_counter(), peak_rss_mb(), time.process_time()
        done = apply_student_pull(con, pull, "bench", now, HoldPolicy())
        wall, cpu_applied = time.perf_counter() - started, time.process_time()
        report = source.reports["students"]
    print(json.dumps({"wall": wall, "stage": staged - started, "apply": wall - (staged - started),
                      "cpu_stage": cpu_staged - cpu_started, "cpu_apply": cpu_applied - cpu_staged,
                      "rows": pull.rows, "outcome": done.outcome, "complete": report.complete,
                      "concurrency": report.concurrency, "pages": report.pages,
                      "stage_peak_rss_mb": staged_rss, "peak_rss_mb": peak_rss_mb()}))


_AUTH_FROM_ENV = "ONEROSTER_BENCH_AUTH_FROM_ENV"
AUTH_VARIABLES = ("ONEROSTER_AUTH", "ONEROSTER_TOKEN_URL", "ONEROSTER_CLIENT_ID", "ONEROSTER_CLIENT_SECRET")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_sync(base_url: str, page_size: int, concurrency: int | None, memory_limit: str | None,
                 auth: dict[str, str] | None = None) -> dict:
    """The measured process's JSON line, or {"error": ...}. `auth`: ONEROSTER_AUTH and its variables (default none)."""
    # this checkout's package first (not whichever one the virtualenv has installed), then PYTHONPATH's folders
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    if auth:
        unknown = set(auth) - set(AUTH_VARIABLES)
        if unknown:
            raise ValueError(f"auth takes only {AUTH_VARIABLES}, not {sorted(unknown)}")
        env = {**{k: v for k, v in env.items() if k not in AUTH_VARIABLES}, **auth, _AUTH_FROM_ENV: "1"}
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, __file__, "--child", base_url, "--page-size", str(page_size),
                   "--workdir", workdir] + (["--concurrency", str(concurrency)] if concurrency else []) + \
                  (["--duckdb-memory-limit", memory_limit] if memory_limit else [])
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": last[:300]}
        return json.loads(done.stdout.strip().splitlines()[-1])


def _ram_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=0, help="added by the demo provider to every request")
    parser.add_argument("--duckdb-memory-limit", default=None, metavar="SIZE",
                        help="experiment: another DuckDB memory_limit for the sync (e.g. 256MB); default: as "
                             "shipped (ONEROSTER_DUCKDB_MEMORY_LIMIT, else 128MB)")
    parser.add_argument("--child", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.page_size, args.concurrency, args.workdir, args.duckdb_memory_limit)
        return 0

    print(f"machine: {os.cpu_count()} CPUs, {_ram_gb():.0f} GB RAM, load average {os.getloadavg()[0]:.2f}; "
          f"page size {args.page_size}, latency {args.latency_ms} ms/page"
          + (f", DuckDB memory_limit {args.duckdb_memory_limit}" if args.duckdb_memory_limit else ""))
    print(f"{'students':>9} {'run':<27} {'wall s':>7} {'rows/s':>8} {'x floor':>8} {'peak RSS MB':>12} "
          f"{'fetch+stage s':>14} {'apply s':>8} {'RSS after stage':>16}")
    for students in args.students:
        server, base_url = start_demo(students, args.schools, args.latency_ms)
        try:
            floor, pages = fetch_floor(base_url, args.page_size)
            print(f"{students:>9} {'fetch floor (' + str(pages) + ' pages)':<27} {floor:>7.1f} "
                  f"{students / floor:>8.0f} {1.0:>8.2f} {'-':>12}", flush=True)
            for label, concurrency in (("sync, concurrency 1", 1), ("sync, default concurrency", None)):
                run = measure_sync(base_url, args.page_size, concurrency, args.duckdb_memory_limit)
                if "error" in run:
                    print(f"{students:>9} {label:<27} failed: {run['error']}", flush=True)
                    continue
                label = label if concurrency else f"sync, default concurrency {run['concurrency']}"
                print(f"{students:>9} {label:<27} {run['wall']:>7.1f} {run['rows'] / run['wall']:>8.0f} "
                      f"{run['wall'] / floor:>8.2f} {run['peak_rss_mb']:>12.0f} {run['stage']:>14.1f} "
                      f"{run['apply']:>8.1f} {run['stage_peak_rss_mb']:>16.0f}", flush=True)
        finally:
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
