"""Benchmark: the whole `dagster job execute -j student_sync` run against a fast provider, beside the fetch floor.

    .venv/bin/python benchmarks/dagster_run_benchmark.py --students 100000 300000 [--latency-ms 0 100] \
        [--executor default in_process] [--concurrency default 1] [--run-config extra.yaml] [--library]

For each district size and each latency it starts `benchmarks/static_provider.py` in its own process: OneRoster
1.1, OAuth 2.0 client credentials, every record rendered to JSON bytes before the first request and pages served
from memory by a threaded HTTP server (no JSON work per request), so the provider is not what is measured. Then,
one row each:

- fetch floor: plain `requests` on one connection, one page at a time (the sync's own query: limit, offset,
  fields, sort; bearer token from the token endpoint), each body parsed with `.json()` and dropped;
- dagster run: in a fresh DAGSTER_HOME and a fresh DuckDB file, `dagster job execute -m
  oneroster_pipeline.definitions -j building_sync` once (not timed), then `... -j student_sync` (timed) with
  ONEROSTER_PROVIDER=oneroster, ONEROSTER_BASE_URL, ONEROSTER_AUTH=oauth2, ONEROSTER_TOKEN_URL / CLIENT_ID /
  CLIENT_SECRET, ONEROSTER_PAGE_SIZE, ONEROSTER_DUCKDB_PATH (and ONEROSTER_MAX_CONCURRENCY for `--concurrency 1`).
  Reported: wall time from process start to exit; from the run's event log (DagsterInstance of that
  DAGSTER_HOME): RUN_START -> RUN_SUCCESS, the `student_sync_assets` step (STEP_START -> STEP_SUCCESS) and its split
  at the step's "fetched N students" log line (fetch+stage before, apply after), how many steps ran and in how
  many processes; from psutil samples of the whole process tree every 50 ms: peak RSS of the student step's process,
  the largest peak of any process, and the largest sum over processes alive at the same sample.
  One row per `--executor` (`default`: the job's own executor, in process since the jobs set it; `in_process`: adds
  the run config `execution: {config: {}}`, the same executor named explicitly) and per `--concurrency` (`default`: the provider profile's, 8 for a
  generic OneRoster server; a number sets ONEROSTER_MAX_CONCURRENCY). `--run-config FILE` adds a YAML run config
  to every student_sync run (dagster's `-c`), to measure a change without changing code.
- `--library`: the same pull and apply without Dagster (benchmarks/student_sync_benchmark.py's measured process:
  pipeline.stage_pull -> apply_student_pull in one process), at each concurrency.

Not a test: the numbers depend on the machine and on what else runs on it; the header prints CPUs and the load
average before and after, and each row the 1-minute load average when it finished.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"  # the static provider's test credentials
STUDENT_STEP = "student_sync_assets"
IN_PROCESS_YAML = "execution:\n  config: {}\n"  # the jobs' in_process_executor, default config
MB = 2**20


# ---------------------------------------------------------------------------------------------------- provider

@dataclass
class Provider:
    process: subprocess.Popen
    base_url: str
    token_url: str
    banner: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_provider(students: int, schools: int, latency_ms: int, full_records: bool) -> Provider:
    command = [sys.executable, str(ROOT / "benchmarks" / "static_provider.py"), "--port", "0", "--students",
               str(students), "--schools", str(schools), "--latency-ms", str(latency_ms), "--client-id", CLIENT_ID,
               "--client-secret", CLIENT_SECRET] + (["--full-records"] if full_records else [])
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    found: dict[str, str] = {}
    for line in process.stdout:
        if match := re.match(r"(base|token) URL: (\S+)", line):
            found[match.group(1)] = match.group(2)
        elif line.startswith("rendered"):
            found["banner"] = line.strip()
        elif line.strip() == "ready":
            return Provider(process, found["base"], found["token"], found.get("banner", ""))
    raise RuntimeError(f"the static provider did not start (exit code {process.wait()})")


def fetch_token(token_url: str) -> str:
    response = requests.post(token_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET))
    response.raise_for_status()
    return response.json()["access_token"]


def fetch_floor(provider: Provider, page_size: int) -> tuple[float, int, int]:
    """Plain requests, one page at a time on one connection, the sync's query; `.json()` parsed, then dropped.
    (seconds, pages, records)."""
    from oneroster_pipeline.client.rest import SORT_FIELD, USER_FIELDS

    session = requests.Session()
    started = time.perf_counter()
    session.headers["Authorization"] = f"Bearer {fetch_token(provider.token_url)}"
    query = {"fields": USER_FIELDS["1.1"], "sort": SORT_FIELD, "limit": page_size}
    offset = pages = records = 0
    while True:
        response = session.get(f"{provider.base_url}/students", params={**query, "offset": offset})
        response.raise_for_status()
        records += len(response.json()["users"])
        total = int(response.headers["X-Total-Count"])
        offset += page_size
        pages += 1
        if offset >= total:
            return time.perf_counter() - started, pages, records


# ---------------------------------------------------------------------------------------------- RSS sampling

@dataclass
class TreeSample:
    peak_by_pid: dict[int, int] = field(default_factory=dict)
    name_by_pid: dict[int, str] = field(default_factory=dict)
    peak_sum: int = 0
    samples: int = 0
    cpu_by_pid: dict[int, float] = field(default_factory=dict)  # user + system seconds at the last sample

    @property
    def cpu_seconds(self) -> float:
        """CPU time of every process seen (a process's last 0-`interval` s before it exited are not counted)."""
        return sum(self.cpu_by_pid.values())


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds a process has used so far."""
    times = process.cpu_times()
    return times.user + times.system


class TreeSampler(threading.Thread):
    """RSS of a process (or of several: `pid` a list) and all their descendants every `interval` seconds, until
    stop(); the sum is over every process of every tree alive at the same sample."""

    def __init__(self, pid: int | list[int], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.roots = [psutil.Process(p) for p in (pid if isinstance(pid, list) else [pid])]
        self.interval, self.result = interval, TreeSample()
        self._halt = threading.Event()

    def _processes(self) -> list[psutil.Process]:
        processes = []
        for root in self.roots:
            try:
                processes += [root] + root.children(recursive=True)
            except psutil.Error:
                continue
        return processes

    def run(self) -> None:
        result = self.result
        while not self._halt.is_set():
            processes = self._processes()
            if not processes:
                break
            total = 0
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    result.cpu_by_pid[process.pid] = cpu_seconds(process)
                except psutil.Error:
                    continue
                total += rss
                if rss > result.peak_by_pid.get(process.pid, 0):
                    result.peak_by_pid[process.pid] = rss
                if not result.name_by_pid.get(process.pid):  # empty while a process is being started: ask again
                    try:
                        result.name_by_pid[process.pid] = " ".join(process.cmdline()[1:5])[:120]
                    except psutil.Error:
                        pass
            result.peak_sum = max(result.peak_sum, total)
            result.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> TreeSample:
        self._halt.set()
        self.join()
        return self.result


# ------------------------------------------------------------------------------------------------ dagster run

def _clean_environ() -> dict[str, str]:
    """This process's environment without any ONEROSTER_* or DAGSTER_HOME (the run gets only what we set)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_") and k != "DAGSTER_HOME"}


def sync_env(provider: Provider, page_size: int, workdir: Path, concurrency: int | None) -> dict[str, str]:
    env = {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": provider.base_url, "ONEROSTER_AUTH": "oauth2",
           "ONEROSTER_TOKEN_URL": provider.token_url, "ONEROSTER_CLIENT_ID": CLIENT_ID,
           "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET, "ONEROSTER_PAGE_SIZE": str(page_size),
           "ONEROSTER_DUCKDB_PATH": str(workdir / "warehouse.duckdb")}
    if concurrency:
        env["ONEROSTER_MAX_CONCURRENCY"] = str(concurrency)
    return env


def dagster_execute(job: str, env: dict[str, str], config_files: list[Path], sample: bool) \
        -> tuple[float, int, str, TreeSample | None]:
    """`dagster job execute -m oneroster_pipeline.definitions -j JOB [-c FILE ...]`: (wall s, exit code, stderr
    tail, RSS samples of the process tree)."""
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "job", "execute", "-m", "oneroster_pipeline.definitions", "-j", job]
    for path in config_files:
        command += ["-c", str(path)]
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        sampler = TreeSampler(process.pid) if sample else None
        if sampler:
            sampler.start()
        code = process.wait()
        wall = time.perf_counter() - started
        samples = sampler.stop() if sampler else None
        out.seek(0)
        tail = "" if code == 0 else " | ".join(out.read().strip().splitlines()[-3:])[-400:]
    return wall, code, tail, samples


@dataclass
class RunEvents:
    run_seconds: float | None = None  # RUN_START -> RUN_SUCCESS / RUN_FAILURE
    status: str = "?"
    step_seconds: float | None = None  # student_sync_assets STEP_START -> STEP_SUCCESS
    fetch_stage_seconds: float | None = None  # STEP_START -> the "fetched N students" log line
    apply_seconds: float | None = None  # that line -> STEP_SUCCESS
    steps: int = 0
    step_processes: int = 0
    step_pid: int | None = None
    step_durations: dict[str, float] = field(default_factory=dict)


def read_run_events(dagster_home: Path, job: str) -> RunEvents:
    """The latest run of `job` in the DAGSTER_HOME instance, from its event log."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        runs = instance.get_runs(RunsFilter(job_name=job), limit=1)
        found = RunEvents()
        if not runs:
            return found
        found.status = runs[0].status.value
        starts: dict[str, float] = {}
        run_start = fetched_at = None
        pids = set()
        for entry in instance.all_logs(runs[0].run_id):
            event = entry.dagster_event
            if event is None:
                if entry.step_key == STUDENT_STEP and re.match(r"fetched \d+ students", entry.user_message or ""):
                    fetched_at = entry.timestamp
                continue
            kind = event.event_type
            if kind == DagsterEventType.RUN_START:
                run_start = entry.timestamp
            elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE) and run_start:
                found.run_seconds = entry.timestamp - run_start
            elif kind == DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
                pids.add(event.pid)
                if event.step_key == STUDENT_STEP:
                    found.step_pid = event.pid
            elif kind == DagsterEventType.STEP_SUCCESS and event.step_key in starts:
                found.step_durations[event.step_key] = entry.timestamp - starts[event.step_key]
        found.steps, found.step_processes = len(starts), len(pids)
        found.step_seconds = found.step_durations.get(STUDENT_STEP)
        if fetched_at and STUDENT_STEP in starts and found.step_seconds is not None:
            found.fetch_stage_seconds = fetched_at - starts[STUDENT_STEP]
            found.apply_seconds = found.step_seconds - found.fetch_stage_seconds
        return found
    finally:
        instance.dispose()


@dataclass
class DagsterRow:
    wall: float
    code: int
    error: str
    events: RunEvents
    rss: TreeSample
    building_wall: float


def measure_dagster_run(provider: Provider, page_size: int, concurrency: int | None, config_files: list[Path],
                        keep: bool) -> DagsterRow:
    workdir = Path(tempfile.mkdtemp(prefix="oneroster-dagster-bench-"))
    try:
        dagster_home = workdir / "dagster_home"
        dagster_home.mkdir()
        path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # e.g. a folder of extras
        env = {**_clean_environ(), "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": path,
               **sync_env(provider, page_size, workdir, concurrency)}
        building_wall, code, tail, _ = dagster_execute("building_sync", env, [], sample=False)
        if code:
            return DagsterRow(building_wall, code, f"building_sync failed: {tail}", RunEvents(), TreeSample(), 0)
        wall, code, tail, samples = dagster_execute("student_sync", env, config_files, sample=True)
        events = read_run_events(dagster_home, "student_sync")
        return DagsterRow(wall, code, tail, events, samples, building_wall)
    finally:
        if keep:
            print(f"  (kept {workdir})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- report

COLUMNS = (("students", 9), ("lat ms", 6), ("run", 34), ("wall s", 7), ("x floor", 7), ("rows/s", 8),
           ("run s", 6), ("step s", 7), ("fetch s", 7), ("apply s", 7), ("steps/procs", 11),
           ("step RSS MB", 11), ("max RSS MB", 10), ("sum RSS MB", 10), ("CPU s", 6), ("load", 5))


def row(values: dict) -> str:
    cells = []
    for (name, width) in COLUMNS:
        value = values.get(name, "-")
        if isinstance(value, float):
            value = f"{value:.1f}" if name not in ("x floor",) else f"{value:.2f}"
        cells.append(f"{value:<{width}}" if name == "run" else f"{value!s:>{width}}")
    return " ".join(cells)


def fmt_mb(value: int | None) -> str:
    return "-" if not value else f"{value / MB:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0],
                        help="per-request latency of the provider; one block of rows per value (e.g. 0 100)")
    parser.add_argument("--executor", nargs="+", choices=("default", "in_process"), default=["default"],
                        help="default: the job's own (in-process) executor; in_process: run config "
                             "execution: {config: {}}")
    parser.add_argument("--concurrency", nargs="+", default=None, metavar="N|default",
                        help="ONEROSTER_MAX_CONCURRENCY per row ('default': unset, the profile's 8). Default: "
                             "'default' without latency, 'default 1' with latency")
    parser.add_argument("--run-config", type=Path, action="append", default=[], metavar="YAML",
                        help="extra run config for every student_sync run (dagster job execute -c; repeatable)")
    parser.add_argument("--library", action="store_true",
                        help="also the library path without Dagster (student_sync_benchmark.py's measured process)")
    parser.add_argument("--full-records", action="store_true",
                        help="the provider serves whole records, ignoring fields= (more bytes per record)")
    parser.add_argument("--steps", action="store_true", help="also print every step's STEP_START -> STEP_SUCCESS")
    parser.add_argument("--keep", action="store_true", help="keep each run's DAGSTER_HOME and DuckDB (prints where)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="the fetch floor and each Dagster run this many times, then a row of their medians")
    args = parser.parse_args()
    for path in args.run_config:
        if not path.is_file():
            parser.error(f"--run-config {path}: no such file")

    with tempfile.TemporaryDirectory(prefix="oneroster-bench-config-") as config_dir:
        in_process = Path(config_dir) / "in_process.yaml"
        in_process.write_text(IN_PROCESS_YAML)
        load = os.getloadavg()
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        print(f"machine: {os.cpu_count()} CPUs, {ram:.0f} GB RAM, Python {sys.version.split()[0]}, load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; page size {args.page_size}; OneRoster 1.1, OAuth 2.0; "
              f"extra run config: {', '.join(map(str, args.run_config)) or 'none'}", flush=True)
        print(row({name: name for name, _ in COLUMNS}), flush=True)
        for latency in args.latency_ms:
            concurrencies = args.concurrency or (["default", "1"] if latency else ["default"])
            for students in args.students:
                provider = start_provider(students, args.schools, latency, args.full_records)
                try:
                    print(f"# provider: {provider.banner}; latency {latency} ms", flush=True)
                    floors = []
                    for _ in range(args.repeat):
                        floor, pages, records = fetch_floor(provider, args.page_size)
                        floors.append(floor)
                        base = {"students": students, "lat ms": latency}
                        print(row({**base, "run": f"fetch floor ({pages} pages)", "wall s": floor, "x floor": 1.0,
                                   "rows/s": f"{records / floor:.0f}", "load": f"{os.getloadavg()[0]:.1f}"}),
                              flush=True)
                    floor = statistics.median(floors)
                    if args.repeat > 1:
                        print(row({**base, "run": f"fetch floor, median of {args.repeat}", "wall s": floor,
                                   "x floor": 1.0}), flush=True)
                    for concurrency in concurrencies:
                        limit = None if concurrency == "default" else int(concurrency)
                        label_c = "conc default" if limit is None else f"conc {limit}"
                        for executor in args.executor:
                            configs = args.run_config + ([in_process] if executor == "in_process" else [])
                            label = f"dagster {'in_process (run config)' if executor == 'in_process' else 'job executor'}, " \
                                    f"{label_c}"
                            measured = []
                            for _ in range(args.repeat):
                                result = measure_dagster_run(provider, args.page_size, limit, configs, args.keep)
                                if result.code:
                                    print(row({**base, "run": label, "wall s": result.wall}) + f"  FAILED (exit "
                                          f"{result.code}): {result.error}", flush=True)
                                    continue
                                ev, rss = result.events, result.rss
                                values = {"wall s": result.wall, "run s": ev.run_seconds, "step s": ev.step_seconds,
                                          "fetch s": ev.fetch_stage_seconds, "apply s": ev.apply_seconds,
                                          "step RSS MB": rss.peak_by_pid.get(ev.step_pid),
                                          "max RSS MB": max(rss.peak_by_pid.values(), default=0),
                                          "sum RSS MB": rss.peak_sum, "CPU s": rss.cpu_by_pid.get(ev.step_pid)}
                                measured.append(values)
                                print(run_row(base, label, values, floor, students,
                                              steps=f"{ev.steps}/{ev.step_processes}"), flush=True)
                                if args.steps:
                                    print("#   steps (s): " + ", ".join(f"{key} {seconds:.1f}" for key, seconds
                                                                      in ev.step_durations.items()), flush=True)
                            if len(measured) > 1:
                                medians = {name: statistics.median(m[name] for m in measured)
                                           if all(m[name] is not None for m in measured) else None
                                           for name in measured[0]}
                                print(run_row(base, f"median of {len(measured)}", medians, floor, students, steps="-"),
                                      flush=True)
                        if args.library:
                            print(library_row(provider, base, args.page_size, limit, label_c, floor), flush=True)
                finally:
                    provider.stop()
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


def run_row(base: dict, label: str, values: dict, floor: float, students: int, steps: str) -> str:
    """A Dagster run's row (or the medians of several): seconds, MB of RSS, CPU seconds of the step's process."""
    def seconds(name):
        return values[name] if values[name] is not None else "-"

    return row({**base, "run": label, "wall s": values["wall s"], "x floor": values["wall s"] / floor,
                "rows/s": f"{students / values['wall s']:.0f}", "run s": seconds("run s"), "step s": seconds("step s"),
                "fetch s": seconds("fetch s"), "apply s": seconds("apply s"), "steps/procs": steps,
                "step RSS MB": fmt_mb(values["step RSS MB"]), "max RSS MB": fmt_mb(values["max RSS MB"]),
                "sum RSS MB": fmt_mb(values["sum RSS MB"]),
                "CPU s": f"{values['CPU s']:.1f}" if values["CPU s"] is not None else "-",
                "load": f"{os.getloadavg()[0]:.1f}"})


def library_row(provider: Provider, base: dict, page_size: int, concurrency: int | None, label_c: str,
                floor: float) -> str:
    from student_sync_benchmark import measure_sync

    auth = {"ONEROSTER_AUTH": "oauth2", "ONEROSTER_TOKEN_URL": provider.token_url,
            "ONEROSTER_CLIENT_ID": CLIENT_ID, "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET}
    run = measure_sync(provider.base_url, page_size, concurrency, None, auth)
    label = f"library (no dagster), {label_c}"
    if "error" in run:
        return row({**base, "run": label}) + f"  FAILED: {run['error']}"
    return row({**base, "run": label, "wall s": run["wall"], "x floor": run["wall"] / floor,
                "rows/s": f"{run['rows'] / run['wall']:.0f}", "step s": run["wall"], "fetch s": run["stage"],
                "apply s": run["apply"], "step RSS MB": f"{run['peak_rss_mb']:.0f}",
                "max RSS MB": f"{run['peak_rss_mb']:.0f}", "load": f"{os.getloadavg()[0]:.1f}"}) + \
        f"  CPU s: fetch+stage {run['cpu_stage']:.1f}, apply {run['cpu_apply']:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
