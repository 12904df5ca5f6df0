"""Where the student step's CPU goes: cProfile of `pipeline.stage_pull` and `apply_student_pull` against the fast
static provider (benchmarks/static_provider.py), and a page -> Arrow comparison of record paths.

    .venv/bin/python benchmarks/profile_student_step.py --students 300000 [--concurrency 1] [--top 25]
    .venv/bin/python benchmarks/profile_student_step.py --students 100000 --record-paths-only

1. Profile: in this process, the same calls the `student_sync_assets` step makes (org pull, building sync, then
   the student pull staged to Parquet and applied to DuckDB), each phase under cProfile. Page requests run in the
   client's worker threads, which cProfile does not see: the main thread's wait for them shows as
   `Future.result`. Prints, per phase, the cumulative seconds of the known cost centres (JSON decode, normalise per
   field, Arrow building, Parquet writing, DuckDB statements) and the top functions by own time.
2. Record paths (`--record-paths`, default on): the provider's /students pages fetched once as raw bytes, then,
   per 100,000 records: `json.loads` alone; `json.loads` + today's `tables.users_table` (and + its
   per-record path `_users_per_record`, the whole normaliser before issue 15's columnar fast path); DuckDB `read_text` +
   `json_transform` over the raw page files with the normalisation written in SQL (a prototype, benchmarks only: trims, lower-cased
   enumerations, timestamps, enabledUser spellings, role/org lists; NOT the rejection rules of normalize.py);
   and, when importable, `orjson.loads` / `msgspec.json.decode` in place of `json.loads` (msgspec is a dependency
   since issue 15, orjson is not: point `--extra-path` at a folder where they are installed, e.g. `pip install
   --target DIR orjson msgspec`). The rows marked "GC paused" run as the sync does (store.stage_batches pauses the
   cyclic garbage collector while a pull is staged); the others with it on, as before.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dagster_run_benchmark import CLIENT_ID, CLIENT_SECRET, fetch_token, start_provider  # noqa: E402

# (label, file suffix, function name): cumulative seconds of each are reported
COST_CENTRES = (
    ("wait for page requests (worker threads)", "concurrent/futures/_base.py", "result"),
    ("JSON decode (client.http.parse_json)", "client/http.py", "parse_json"),
    ("normalise per field (normalize._rows)", "client/normalize.py", "_rows"),
    ("normalise columns (tables._user_columns)", "client/tables.py", "_user_columns"),
    ("normalise + Arrow (tables.users_table)", "client/tables.py", "users_table"),
    ("  of which _columns (zip rows->columns)", "client/normalize.py", "_columns"),
    ("pager: ids, duplicates (Pager.accept)", "client/paging.py", "accept"),
    ("Parquet writing (ParquetWriter.write_table)", "pyarrow/parquet/core.py", "write_table"),
    ("  raw table load (store.replace_from_parquet)", "warehouse/store.py", "replace_from_parquet"),
    ("  plan (sync.plan_student_sync)", "warehouse/students.py", "plan_student_sync"),
    ("  hold decision (holds.evaluate_holds)", "warehouse/holds.py", "evaluate_holds"),
    ("  apply (sync.apply_student_sync)", "warehouse/students.py", "apply_student_sync"),
    ("  pull report + rejections (record_pull)", "warehouse/pulls.py", "record_pull"),
)


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    """The largest cumulative time among entries named `name` (a Python function, or a C method `{... name ...}`)
    whose file ends with `suffix`."""
    pattern = re.compile(rf"[\s'.]{re.escape(name)}[\s'}}>]")
    total = 0.0
    for (filename, _, function), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        named = function == name or (function[:1] in "<{" and pattern.search(function))
        if named and filename.endswith(suffix):
            total = max(total, ct)
    return total


def report(title: str, profile: cProfile.Profile, wall: float, top: int, records: int) -> None:
    stats = pstats.Stats(profile)
    print(f"\n== {title}: {wall:.1f} s wall, {records} records ({wall / max(records, 1) * 1e5:.1f} s per 100k)")
    for label, suffix, name in COST_CENTRES:
        seconds = cumulative(stats, suffix, name)
        if seconds >= 0.05:
            print(f"  {label:<50} {seconds:>7.2f} s  ({seconds / wall:>4.0%})")
    # C extension calls (pyarrow's Cython, DuckDB's pybind11) get no entries of their own: their time is the own
    # time of the Python function that calls them
    arrow = cumulative(stats, "client/tables.py", "users_table") - cumulative(stats, "client/normalize.py", "_rows") \
        - cumulative(stats, "client/normalize.py", "_columns") - cumulative(stats, "client/tables.py", "_user_columns")
    duck = sum(tt for (filename, _, _), (_, _, tt, _, _) in stats.stats.items()  # type: ignore[attr-defined]
               if filename.endswith(("warehouse/store.py", "warehouse/students.py",
                                     "warehouse/holds.py", "warehouse/pulls.py")))
    for label, seconds in (("Arrow building (users_table own: Table.from_arrays, filter)", arrow),
                           ("own time in store/students/holds/pulls.py (~ DuckDB)", duck)):
        if seconds >= 0.05:
            print(f"  {label:<50} {seconds:>7.2f} s  ({seconds / wall:>4.0%})")
    print(f"  -- top {top} functions by own time --")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (filename, line, function), (_, calls, tt, ct, _) in rows:
        where = filename if filename == "~" else f"{Path(filename).parent.name}/{Path(filename).name}:{line}"
        print(f"  {tt:>7.2f} s own {ct:>7.2f} s cum {calls:>9} calls  {function[:60]}  {where[-60:]}")


def profile_step(base_url: str, token_url: str, page_size: int, concurrency: int | None, top: int) -> None:
    from oneroster_pipeline.client.settings import ConnectionSettings
    from oneroster_pipeline.client.sources import open_source
    from oneroster_pipeline.warehouse import store
    from oneroster_pipeline.warehouse.buildings import sync_buildings
    from oneroster_pipeline.warehouse.policy import HoldPolicy
    from oneroster_pipeline.warehouse.pulls import apply_org_pull, apply_student_pull, stage_pull

    env = {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": base_url, "ONEROSTER_AUTH": "oauth2",
           "ONEROSTER_TOKEN_URL": token_url, "ONEROSTER_CLIENT_ID": CLIENT_ID,
           "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET, "ONEROSTER_PAGE_SIZE": str(page_size)}
    if concurrency:
        env["ONEROSTER_MAX_CONCURRENCY"] = str(concurrency)
    with tempfile.TemporaryDirectory(prefix="oneroster-profile-") as workdir, \
            open_source(ConnectionSettings.from_env(env)) as source, \
            store.connect(Path(workdir) / "profile.duckdb") as con:
        now = datetime.now(timezone.utc)
        apply_org_pull(con, stage_pull(source, "orgs", Path(workdir) / "orgs"), "profile", now)
        with store.transaction(con):
            sync_buildings(con, now)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        pull = stage_pull(source, "students", Path(workdir) / "students")
        profile.disable()
        staged = time.perf_counter() - started
        print(f"concurrency {source.reports['students'].concurrency}, {source.reports['students'].pages} pages")
        report("fetch + stage (stage_pull 'students')", profile, staged, top, pull.rows)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        done = apply_student_pull(con, pull, "profile", now, HoldPolicy())
        profile.disable()
        report(f"apply (apply_student_pull, outcome {done.outcome})", profile, time.perf_counter() - started, top,
               pull.rows)


# ------------------------------------------------------------------------------------------ record paths

USER_JSON_SHAPE = json.dumps({"users": [{
    "sourcedId": "VARCHAR", "status": "VARCHAR", "dateLastModified": "VARCHAR", "username": "VARCHAR",
    "enabledUser": "VARCHAR", "givenName": "VARCHAR", "familyName": "VARCHAR", "middleName": "VARCHAR",
    "role": "VARCHAR", "identifier": "VARCHAR", "email": "VARCHAR", "orgs": [{"sourcedId": "VARCHAR"}],
    "grades": ["VARCHAR"]}]})
# read_text + json_transform: DuckDB's read_json(format='unstructured', columns={users: 'STRUCT(...)[]'}) gives the
# same rows but was ~20x slower here on page objects holding a 1000-element array (measured: 0.25 s per page)
DUCKDB_USERS = f"""
SELECT
    trim(u.sourcedId) AS sourced_id,
    CASE lower(trim(u.status)) WHEN 'inactive' THEN 'tobedeleted' ELSE nullif(lower(trim(u.status)), '') END
        AS status,
    CAST(u.dateLastModified AS TIMESTAMPTZ) AS date_last_modified,
    nullif(trim(u.username), '') AS username,
    nullif(trim(u.givenName), '') AS given_name,
    nullif(trim(u.familyName), '') AS family_name,
    nullif(trim(u.middleName), '') AS middle_name,
    nullif(trim(u.email), '') AS email,
    nullif(trim(u.identifier), '') AS identifier,
    CASE lower(trim(u.enabledUser)) WHEN 'true' THEN true WHEN '1' THEN true WHEN 'yes' THEN true
        WHEN 'false' THEN false WHEN '0' THEN false WHEN 'no' THEN false END AS enabled_user,
    CASE WHEN nullif(trim(u.role), '') IS NULL THEN []::VARCHAR[] ELSE [lower(trim(u.role))] END AS roles,
    list_filter(orgs, lambda x, i: x IS NOT NULL AND list_position(orgs, x) = i) AS org_sourced_ids,
    NULL::VARCHAR AS primary_org_sourced_id,
    list_filter(list_transform(u.grades, lambda g: nullif(trim(g), '')), lambda x: x IS NOT NULL) AS grades,
    NULL::VARCHAR AS legacy_sourced_id
FROM (SELECT u, list_transform(u.orgs, lambda o: nullif(trim(o.sourcedId), '')) AS orgs
      FROM (SELECT unnest(json_transform(content, '{USER_JSON_SHAPE}').users) AS u FROM read_text(?)))
"""


def fetch_raw_pages(base_url: str, token_url: str, page_size: int) -> list[bytes]:
    from oneroster_pipeline.client.rest import SORT_FIELD, USER_FIELDS

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {fetch_token(token_url)}"
    query = {"fields": USER_FIELDS["1.1"], "sort": SORT_FIELD, "limit": page_size}
    pages, offset = [], 0
    while True:
        response = session.get(f"{base_url}/students", params={**query, "offset": offset})
        response.raise_for_status()
        pages.append(response.content)
        offset += page_size
        if offset >= int(response.headers["X-Total-Count"]):
            return pages


def record_paths(pages: list[bytes], records: int, threads: int, repeat: int) -> None:
    import duckdb
    import pyarrow as pa

    from oneroster_pipeline.client.schemas import USER_SCHEMA
    from oneroster_pipeline.client.tables import _users_per_record, users_table

    per = 100_000 / records
    results: list[tuple[str, float, float]] = []

    def timed(label: str, work) -> object:
        """Best of `repeat` runs (the machine is shared): wall seconds and this process's CPU seconds."""
        best_wall = best_cpu = float("inf")
        for _ in range(repeat):
            started, cpu = time.perf_counter(), time.process_time()
            value = work()
            best_wall = min(best_wall, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        results.append((label, best_wall * per, best_cpu * per))
        return value

    def decode_only(loads) -> None:  # each page dropped at once, as the sync does (no heap of all pages for the GC)
        for page in pages:
            loads(page)

    timed("json.loads only (stdlib)", lambda: decode_only(json.loads))
    today = timed("json.loads + users_table (today)",
                  lambda: pa.concat_tables([users_table(json.loads(p)["users"], "bench", [])[0] for p in pages]))
    per_record = timed("json.loads + per-record path (_users_per_record)",
                       lambda: pa.concat_tables([_users_per_record(json.loads(p)["users"], "bench", [])[0]
                                                 for p in pages]))
    from oneroster_pipeline.client.http import loads as client_loads
    from oneroster_pipeline.warehouse.store import gc_paused

    def paused(work):
        def run():
            with gc_paused():
                return work()
        return run

    timed("json.loads + users_table, GC paused", paused(
        lambda: [users_table(json.loads(p)["users"], "bench", [])[0] for p in pages]))
    timed("http.loads + users_table, GC paused (the client)", paused(
        lambda: [users_table(client_loads(p)["users"], "bench", [])[0] for p in pages]))
    for name, loads in _fast_decoders():
        timed(f"{name} only", lambda loads=loads: decode_only(loads))
        timed(f"{name} + users_table", lambda loads=loads: [users_table(loads(p)["users"], "bench", [])[0]
                                                            for p in pages])
    typed = _msgspec_typed()
    if typed:
        timed("msgspec typed Structs only (no dicts)", lambda: decode_only(typed))
    with tempfile.TemporaryDirectory(prefix="oneroster-pages-") as folder:
        def write_pages() -> str:
            for i, page in enumerate(pages):
                Path(folder, f"page-{i:06d}.json").write_bytes(page)
            return str(Path(folder, "page-*.json"))

        pattern = timed("  write raw pages to files", write_pages)
        con = duckdb.connect()
        con.execute(f"SET threads = {threads}")
        via_duckdb = timed("duckdb read_text+json_transform, SQL -> Arrow",
                           lambda: con.sql(DUCKDB_USERS, params=[pattern]).to_arrow_table())
        timed("duckdb read_text+json_transform, SQL -> Parquet",
              lambda: con.execute(f"COPY ({DUCKDB_USERS.replace('?', repr(pattern))}) TO "
                                  f"'{folder}/users.parquet' (FORMAT parquet)"))
        con.close()
    print(f"\n== page -> Arrow, seconds per 100,000 records, best of {repeat} ({records} records in {len(pages)} "
          f"pages, {sum(map(len, pages)) / 2**20:.0f} MiB of JSON; DuckDB threads {threads})")
    print(f"  {'':<50} {'wall s':>7} {'CPU s':>7}")
    for label, wall, cpu in results:
        print(f"  {label:<50} {wall:>7.2f} {cpu:>7.2f}")
    print(f"  check: users_table and the per-record path give equal tables: {today.equals(per_record)}")
    print(f"  check: today {today.num_rows} rows, duckdb {via_duckdb.num_rows} rows; "
          f"same sourced_ids and org lists: {_same(today, via_duckdb, USER_SCHEMA)}")


def _same(a, b, schema) -> str:
    import pyarrow as pa

    a = a.sort_by("sourced_id")
    for name in schema.names:  # a column the prototype does not make (e.g. user_master_identifier): all null
        if name not in b.column_names:
            b = b.append_column(name, pa.nulls(b.num_rows, schema.field(name).type))
    b = b.select(schema.names).sort_by("sourced_id")
    b = b.cast(schema) if b.schema != schema else b
    differing = [name for name in schema.names if not a.column(name).equals(b.column(name))]
    return "yes" if not differing else f"no, columns differ: {', '.join(differing)}"


def _msgspec_typed():
    """A msgspec decoder straight into Structs of the fields the sync reads (values typed `object`, so any JSON
    value still decodes; a real path would still normalise them). None when msgspec is not importable."""
    try:
        import msgspec
    except ImportError:
        return None

    names = ("sourcedId", "status", "dateLastModified", "metadata", "username", "enabledUser", "givenName",
             "familyName", "middleName", "role", "identifier", "email", "grades")
    ref = msgspec.defstruct("Ref", [("sourcedId", object, None)])
    user = msgspec.defstruct("User", [(name, object, None) for name in names] + [("orgs", list[ref] | None, None)])
    page = msgspec.defstruct("Page", [("users", list[user])])
    return msgspec.json.Decoder(page).decode


def _fast_decoders():
    try:
        import orjson
        yield "orjson.loads", orjson.loads
    except ImportError:
        print("(orjson not importable: skipped)")
    try:
        import msgspec
        yield "msgspec.json.decode", msgspec.json.decode
    except ImportError:
        print("(msgspec not importable: skipped)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=300_000)
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=None, help="ONEROSTER_MAX_CONCURRENCY (default: 8)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3, help="record paths: best of this many runs each")
    parser.add_argument("--duckdb-threads", type=int, default=1, help="DuckDB threads for the record-path prototype")
    parser.add_argument("--record-paths-only", action="store_true")
    parser.add_argument("--no-record-paths", action="store_true")
    parser.add_argument("--extra-path", help="a folder put on sys.path for orjson / msgspec (not dependencies)")
    args = parser.parse_args()
    if args.extra_path:
        sys.path.append(args.extra_path)
    provider = start_provider(args.students, args.schools, 0, False)
    try:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; provider: {provider.banner}")
        if not args.record_paths_only:
            profile_step(provider.base_url, provider.token_url, args.page_size, args.concurrency, args.top)
        if not args.no_record_paths:
            record_paths(fetch_raw_pages(provider.base_url, provider.token_url, args.page_size), args.students, args.duckdb_threads, args.repeat)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        provider.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
