"""What the lake tests run, in processes of their own (multiprocessing's spawn) or in the test's: one district's sync
as the Dagster assets call the core (defs/sync/assets.py: the connection guard, `stage_pull`, `apply_org_pull`,
building sync in one transaction, `choose_student_pull`, `apply_student_pull` with the run's `sync_runs` row
committed with it), each staged pull applied to every warehouse given (a DuckLake schema and a DuckDB file: the same
pull, run id and time, so their tables must be equal row for row); and the halves of a same-district double apply."""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from oneroster_pipeline.client.settings import ConnectionSettings, Secret
from oneroster_pipeline.client.sources import open_source
from oneroster_pipeline.warehouse import lake, store
from oneroster_pipeline.warehouse.backends import Warehouse
from oneroster_pipeline.warehouse.buildings import sync_buildings
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline.warehouse.provider_switch import activate_connection, require_active_connection
from oneroster_pipeline.warehouse.pulls import (
    apply_org_pull,
    apply_student_pull,
    choose_student_pull,
    last_org_pull_complete,
    stage_pull,
)

CLIENT_ID, CLIENT_SECRET = "lake-client", "lake-client-secret-value"
POLICY = SyncPolicy()


@dataclass
class DistrictJob:
    """One district's sync: its provider (a demo provider on loopback), its warehouses, its staging folder."""

    district: str
    base_url: str
    auth: str
    token_url: str | None
    warehouses: list[Warehouse]
    staging: str
    provider: str = "oneroster"
    forced_mode: str = ""  # the sync-mode tag: '' (the cadence), 'full', 'delta'
    history: list[str] = field(default_factory=list)

    def settings(self) -> ConnectionSettings:
        return ConnectionSettings(provider=self.provider, base_url=self.base_url, auth=self.auth,
                                  token_url=self.token_url, client_id=CLIENT_ID, client_secret=Secret(CLIENT_SECRET),
                                  max_retries=2)


def record_run(con, run_id: str, **columns) -> None:
    """The step's `sync_runs` columns, as defs/runs.py record_run writes them (upsert by run id)."""
    store.upsert_sync_run(con, run_id, **columns)


def sync_district(job: DistrictJob, run_id: str, now: datetime, barrier=None) -> dict:
    """Orgs, buildings and students for one district into each of its warehouses; `barrier` (if any) is waited
    for before each apply, so that concurrent processes' lake commits overlap. Returns {'ok': ..., 'error': ...}."""
    try:
        settings = job.settings()
        staging = Path(job.staging) / run_id
        with open_source(settings) as source:
            connections = []
            for warehouse in job.warehouses:  # the orgs step's connection guard (its own transaction)
                with warehouse.connect() as con:
                    connections.append(require_active_connection(con, settings, now)[0])
            orgs = stage_pull(source, "orgs", staging)
            _wait(barrier)
            for warehouse, connection in zip(job.warehouses, connections):
                with warehouse.connect() as con:
                    apply_org_pull(con, orgs, run_id, now)
                    activate_connection(con, connection, now)
                    record_run(con, run_id, job_name="full_sync", trigger="test", connection=orgs.label,
                               orgs_fetched=orgs.rows, orgs_complete=orgs.verdict.complete, started_at=now)
            _wait(barrier)
            for warehouse in job.warehouses:  # the buildings step: one transaction
                with warehouse.connect() as con, store.transaction(con):
                    result = sync_buildings(con, now, flag_missing=last_org_pull_complete(con))
                    record_run(con, run_id, buildings_created=result.created)
            modes = set()
            for warehouse in job.warehouses:
                with warehouse.connect() as con:
                    modes.add(choose_student_pull(con, settings.provider, job.forced_mode,
                                                  POLICY.full_sync_every_days, POLICY.delta_overlap_minutes))
            assert len(modes) == 1, f"the warehouses disagree on the student pull's start: {modes}"
            students = stage_pull(source, "students", staging, modes.pop())
            _wait(barrier)
            outcomes = []
            for warehouse, connection in zip(job.warehouses, connections):
                with warehouse.connect() as con:
                    done = apply_student_pull(
                        con, students, run_id, now, POLICY.hold,
                        before_commit=lambda done, con=con: record_run(
                            con, run_id, students_fetched=students.rows, pull_mode=students.mode,
                            students_created=done.plan.created, students_updated=done.plan.updated,
                            students_deactivated=done.plan.deactivated, outcome=done.outcome, finished_at=now))
                    activate_connection(con, connection, now)
                    outcomes.append(done.outcome)
        shutil.rmtree(staging, ignore_errors=True)
        return {"ok": True, "district": job.district, "outcomes": outcomes, "mode": students.mode,
                "students": students.rows}
    except BaseException as error:  # noqa: BLE001 - reported to the test
        return {"ok": False, "district": job.district, "error": f"{type(error).__name__}: {error}",
                "type": type(error).__name__, "trace": traceback.format_exc()[-3000:]}


def _wait(barrier) -> None:
    if barrier is not None:
        barrier.wait(timeout=120)


def apply_students_once(warehouse: Warehouse, pull, run_id: str, now: datetime, barrier) -> dict:
    """One half of a same-district double apply: `apply_student_pull` whose transaction waits for the other half at
    its last step before COMMIT (`before_commit`), so both transactions are open when the first commits."""
    try:
        with warehouse.connect() as con:
            done = apply_student_pull(con, pull, run_id, now, POLICY.hold,
                                      before_commit=lambda done: (record_run(con, run_id, outcome=done.outcome),
                                                                  barrier.wait(timeout=120)))
        return {"ok": True, "run_id": run_id, "outcome": done.outcome}
    except BaseException as error:  # noqa: BLE001 - reported to the test
        return {"ok": False, "run_id": run_id, "type": type(error).__name__, "error": str(error)}


def sync_buildings_once(warehouse: Warehouse, run_id: str, now: datetime, guarded: bool, barrier) -> dict:
    """One half of a same-district double building sync (insert-only: both would create the same new buildings),
    waiting for the other half inside the transaction. `guarded=False` removes the lake's writer guard first (what
    DuckLake alone would do)."""
    try:
        with warehouse.connect() as con:
            if not guarded:
                store.BEFORE_COMMIT.pop(con, None)
            with store.transaction(con):
                result = sync_buildings(con, now, flag_missing=last_org_pull_complete(con))
                barrier.wait(timeout=120)
        return {"ok": True, "run_id": run_id, "created": result.created}
    except BaseException as error:  # noqa: BLE001 - reported to the test
        return {"ok": False, "run_id": run_id, "type": type(error).__name__, "error": str(error)}


def open_district(settings, schema: str, barrier) -> dict:
    """Attach the lake and open the district `schema` (creating its tables), all callers at the same moment."""
    try:
        barrier.wait(timeout=120)
        with lake.connect(settings, schema) as con:
            return {"ok": True, "students": con.execute("SELECT count(*) FROM students").fetchall()[0][0]}
    except BaseException as error:  # noqa: BLE001 - reported to the test
        return {"ok": False, "type": type(error).__name__, "error": str(error)}


def run_in_processes(calls: list[tuple], timeout: float = 300) -> list[dict]:
    """Each (function, *args) of `calls` in a spawned process of its own, started together, with a barrier shared by
    all of them as its last argument. Returns their results (dicts) in the order of `calls`."""
    import multiprocessing  # noqa: PLC0415

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(calls)), context.Queue()
    processes = [context.Process(target=_report, args=(results, i, function, (*args, barrier)))
                 for i, (function, *args) in enumerate(calls)]
    for process in processes:
        process.start()
    got = dict(results.get(timeout=timeout) for _ in processes)
    for process in processes:
        process.join(timeout)
    return [got[i] for i in range(len(calls))]


def _report(results, index: int, function, args: tuple) -> None:
    results.put((index, function(*args)))


def table_rows(con, table: str, without: tuple[str, ...] = ()) -> list[tuple]:
    exclude = f" EXCLUDE ({', '.join(without)})" if without else ""
    return con.execute(f"SELECT *{exclude} FROM {table} ORDER BY ALL").fetchall()


def columns(con, table: str) -> list[tuple]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


def differences(lake_con, file_con, without: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Every table (and view) of the contract whose columns or rows differ between a lake schema and a DuckDB file
    (`without`: columns not compared, per table: a wall-clock time)."""
    found = []
    for table in store.TABLES_DDL:
        if columns(lake_con, table) != columns(file_con, table):
            found.append(f"{table}: columns {columns(lake_con, table)} != {columns(file_con, table)}")
            continue
        skip = (without or {}).get(table, ())
        mine, theirs = table_rows(lake_con, table, skip), table_rows(file_con, table, skip)
        if mine != theirs:
            extra = [r for r in mine if r not in theirs][:3]
            missing = [r for r in theirs if r not in mine][:3]
            found.append(f"{table}: {len(mine)} rows != {len(theirs)}; only in the lake {extra}; only in the "
                         f"file {missing}")
    return found


__all__ = ["DistrictJob", "apply_students_once", "differences", "open_district", "run_in_processes",
           "sync_buildings_once", "sync_district"]
