"""The same provider through this project and through dlt's `rest_api` source into DuckDB, in one run.

    .venv/bin/python benchmarks/dlt_comparison.py --students 100000 [--page-size 1000] [--repeat 3]

One `static_provider.py` (OneRoster 1.1, OAuth 2.0, pages pre-rendered) serves every row of the run:
- the **fetch floor**: plain `requests`, one page at a time, `.json()` parsed and dropped;
- **this project**: the real `dagster job execute -m oneroster_pipeline.definitions -j student_sync` (after one
  untimed `building_sync`, in a fresh DAGSTER_HOME and DuckDB file), wall time and the peak RSS of its process tree;
- **dlt**: `dlt.sources.rest_api.rest_api_source` on `/students` (bearer token, `limit` = the page size, the `Link`
  header's rel="next" as paginator, `users` as data selector) loaded by `dlt.pipeline(destination="duckdb")` into a
  fresh DuckDB file, in a throwaway virtual environment the script makes (dlt is not a dependency of the project):
  wall time and peak RSS of its process tree.
Each row is the median of `--repeat` runs; the ratios are dlt's over this project's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dagster_run_benchmark import (  # noqa: E402
    TreeSampler,
    fetch_floor,
    fetch_token,
    measure_dagster_run,
    start_provider,
)

DLT_VENV = Path(tempfile.gettempdir()) / "oneroster-dlt-venv"
DLT_REQUIREMENT = "dlt[duckdb]"
DLT_PIPELINE = """
import json, sys
import dlt
from dlt.sources.rest_api import rest_api_source
base_url, token, page_size, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
source = rest_api_source({
    "client": {"base_url": base_url + "/", "auth": {"type": "bearer", "token": token},
               "paginator": {"type": "header_link"}},
    "resources": [{"name": "students", "endpoint": {"path": "students", "params": {"limit": page_size},
                                                     "data_selector": "users"}}],
})
pipeline = dlt.pipeline(pipeline_name="oneroster_students", destination=dlt.destinations.duckdb(workdir + "/dlt.duckdb"),
                        dataset_name="oneroster", pipelines_dir=workdir + "/pipelines")
info = pipeline.run(source)
import duckdb
with duckdb.connect(workdir + "/dlt.duckdb", read_only=True) as con:
    print(json.dumps({"rows": con.execute("SELECT count(*) FROM oneroster.students").fetchall()[0][0]}))
"""


def dlt_python() -> Path:
    """The throwaway venv's python with dlt installed (made once, reused)."""
    python = DLT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", DLT_REQUIREMENT], check=True)
    return python


def run_dlt(python: Path, base_url: str, token: str, page_size: int) -> tuple[float, int, int]:
    """(wall s, peak RSS MB of the process tree, rows landed)."""
    workdir = Path(tempfile.mkdtemp(prefix="oneroster-dlt-bench-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEROSTER_", "DAGSTER_"))}
        env["RUNTIME__LOG_LEVEL"] = "WARNING"
        started = time.perf_counter()
        process = subprocess.Popen([str(python), "-c", DLT_PIPELINE, base_url, token, str(page_size), str(workdir)],
                                   env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = TreeSampler(process.pid)
        sampler.start()
        out, err = process.communicate()
        wall = time.perf_counter() - started
        sample = sampler.stop()
        if process.returncode:
            raise RuntimeError(f"dlt failed: {err[-2000:]}")
        rows = json.loads(out.strip().splitlines()[-1])["rows"]
        return wall, max(sample.peak_by_pid.values()) >> 20, rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, nargs="+", default=[100_000])
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = dlt_python()
    version = subprocess.run([str(python), "-c", "import dlt, duckdb; print(dlt.__version__, duckdb.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"dlt {version[0]} (its venv's DuckDB {version[1]}); page size {args.page_size}")
    print(f"{'students':>9} {'run':<34} {'wall s':>7} {'peak RSS MB':>11} {'rows':>9}")
    for students in args.students:
        provider = start_provider(students, 40, 0, full_records=False)
        try:
            floors = [fetch_floor(provider, args.page_size)[0] for _ in range(args.repeat)]
            ours = [measure_dagster_run(provider, args.page_size, None, [], keep=False) for _ in range(args.repeat)]
            failed = [r.error for r in ours if r.code]
            if failed:
                raise RuntimeError(f"student_sync failed: {failed[0]}")
            theirs = [run_dlt(python, provider.base_url, fetch_token(provider.token_url), args.page_size)
                      for _ in range(args.repeat)]
        finally:
            provider.stop()
        our_wall = statistics.median(r.wall for r in ours)
        our_rss = statistics.median(max(r.rss.peak_by_pid.values()) >> 20 for r in ours)
        their_wall = statistics.median(w for w, _, _ in theirs)
        their_rss = statistics.median(m for _, m, _ in theirs)
        print(f"{students:>9} {'fetch floor (requests, .json())':<34} {statistics.median(floors):>7.1f} {'-':>11} "
              f"{students:>9}")
        print(f"{students:>9} {'oneroster_pipeline student_sync':<34} {our_wall:>7.1f} {our_rss:>11} {students:>9}")
        print(f"{students:>9} {'dlt rest_api -> duckdb':<34} {their_wall:>7.1f} {their_rss:>11} "
              f"{theirs[0][2]:>9}")
        print(f"{'':>9} dlt / this project: {their_wall / our_wall:.1f}x the time, {their_rss / our_rss:.1f}x the "
              "memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
