"""The sync steps, framework-free: pull a collection to Parquet, then apply it to DuckDB in one transaction."""

# The Dagster assets compose these; the benchmark runs the very same path without Dagster.

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from oneroster_pipeline.client.errors import OneRosterDataError, OneRosterHTTPError
from oneroster_pipeline.client.normalize import REJECTED
from oneroster_pipeline.client.paging import RevisionChanged
from oneroster_pipeline.client.redaction import redact
from oneroster_pipeline.client.schemas import ORG_SCHEMA, USER_SCHEMA

from . import store
from .holds import HoldDecision, approval_is_valid, evaluate_holds, hold_record
from .policy import HoldPolicy
from .students import StudentSyncPlan, StudentSyncResult, apply_student_sync, plan_student_sync

log = logging.getLogger(__name__)


class SyncHeld(Exception):
    """A guard refused to apply a pull; raised inside the transaction so nothing is written."""

    def __init__(self, reasons: list[str], plan: dict, diff_hash: str | None = None):
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.plan = plan
        self.diff_hash = diff_hash


@dataclass(frozen=True)
class Verdict:
    """Whether a pull saw the whole collection; only a complete full pull may deactivate anything by absence."""

    complete: bool
    reason: str | None = None


# the entity whose rejection names a row of the collection's raw table (a roles.csv row names its role, not a user)
RAW_ENTITY = {"orgs": "org", "students": "user"}


def identified_rejections(collection: str, rejections) -> list[str]:
    """The sourcedIds of the rejected records that name a row of the collection's raw table: their existing rows
    are kept as they are (a rejection is not an absence). A dropped value (kind value_dropped) is no rejection."""
    entity = RAW_ENTITY.get(collection)
    return [r.sourced_id for r in rejections if r.entity == entity and r.sourced_id and r.kind == REJECTED]


def unidentified_rejections(collection: str, rejections) -> list:
    """The rejected records whose raw-table sourcedId could not be read (no sourcedId; a roles.csv row, whose user
    is not named by the rejection): any of them may be a record already synced."""
    entity = RAW_ENTITY.get(collection)
    return [r for r in rejections if r.kind == REJECTED and not (r.entity == entity and r.sourced_id)]


def rejected_file(location: str | None) -> str | None:
    """The CSV file a rejection's location names ("roles.csv line 17" -> "roles.csv"); None for REST locations."""
    first = (location or "").split(" ", 1)[0]
    return first if first.lower().endswith(".csv") else None


def rejected_by_file(rejections) -> dict[str, int]:
    """Rejections per CSV file, e.g. {"roles.csv": 2400}; {} for a REST pull."""
    return dict(Counter(f for f in (rejected_file(r.location) for r in rejections) if f))


def completeness_verdict(report, rejections=()) -> Verdict:
    """The pager reached the end as the server said; X-Total-Count stayed put and matches what came; no repeats;
    and every rejected record could be identified (a rejection without a sourcedId may hide a synced record)."""
    if not report.complete:
        return Verdict(False, report.incomplete_reason or "the pull did not finish")
    first, last = report.first_reported_total, report.reported_total
    if first is not None and last != first:
        return Verdict(False, f"X-Total-Count changed during the pull ({first} -> {last}): records moved "
                              "between pages while they were fetched")
    if report.duplicates:
        sample = ", ".join(report.duplicate_sample[:3])
        return Verdict(False, f"{report.duplicates} sourcedId(s) repeated across pages (e.g. {sample}): the "
                              "server's order is not stable, so others may have been skipped")
    if last is not None and report.received != last:
        return Verdict(False, f"received {report.received} records but the server reported {last}")
    unknown = unidentified_rejections(report.collection, rejections)
    if unknown:
        sample = "; ".join(f"{r.location}: {r.field} {r.reason}" for r in unknown[:3])
        return Verdict(False, f"{len(unknown)} rejected record(s) could not be identified (no sourcedId of theirs "
                              f"could be read, e.g. {sample}): any of them may be a record already synced, so "
                              "nothing is deactivated by absence")
    return Verdict(True)


def rejection_findings(received: int, rejected: int, received_by_file: dict[str, int],
                       rejected_by_file: dict[str, int], max_pct: float) -> list[str]:
    """What exceeds the tolerated share of rejected records (ONEROSTER_MAX_REJECTED_PCT): the pull overall and each
    CSV file on its own (a file wholly rejected fails even when it is a small part of the export). [] when within."""
    def over(n: int, base: int) -> bool:
        return n > 0 and (base <= 0 or 100.0 * n / base > max_pct)

    def share(n: int, base: int) -> str:
        return f"{100.0 * n / base:.1f}%" if base > 0 else "all"

    findings = []
    base = sum(received_by_file.values()) if received_by_file else received
    if over(rejected, base):
        findings.append(f"{rejected} of the {base} records read were rejected ({share(rejected, base)})")
    for name, n in sorted(rejected_by_file.items()):
        read = received_by_file.get(name)
        if read is not None and over(n, read):
            findings.append(f"{name}: {n} of its {read} rows rejected ({share(n, read)})")
    return findings


@dataclass
class StagedPull:
    """One collection fetched into a Parquet staging file, with what the client reported about the pull."""

    collection: str  # 'orgs' | 'students'
    path: Path
    rows: int
    report: object  # client.source.PullReport
    rejections: list
    label: str  # the provider connection, without credentials
    mode: str  # 'full' | 'delta'
    modified_since: datetime | None
    started_at: datetime
    kept_rejected: int = 0  # existing raw rows kept as they were because their record was rejected (set by the load)
    person_key: str | None = None  # the records sharing it are one student (people.py); None: one record, one student
    dropped_values: list = field(default_factory=list)  # values set NULL in kept records (Rejection kind value_dropped)

    def __post_init__(self) -> None:  # a value dropped from a kept record is not a rejection (issue 25)
        self.dropped_values += [r for r in self.rejections if r.kind != REJECTED]
        self.rejections = [r for r in self.rejections if r.kind == REJECTED]

    @property
    def verdict(self) -> Verdict:
        return completeness_verdict(self.report, self.rejections)

    @property
    def replaces(self) -> bool:
        """A complete full pull is the whole truth: it replaces the raw table, so absence means deletion."""
        return self.mode == "full" and self.verdict.complete


def stage_pull(source, collection: str, staging_dir: Path, modified_since: datetime | None = None,
               logger: logging.Logger | None = None) -> StagedPull:
    """Stream one collection page by page into Parquet. A provider that rejects the delta filter gets a full pull.
    A pull whose data revision changed while it paged (ClassLink's x-perm-rev) starts again from the first page,
    at most ONEROSTER_MAX_REVISION_RESTARTS times; then it fails naming the revisions (nothing is applied)."""
    logger = logger or log
    path = staging_dir / f"{collection}.parquet"
    started_at = datetime.now(timezone.utc)
    restarts, revisions = getattr(source.settings, "max_revision_restarts", 3), []
    for attempt in range(restarts + 1):
        try:
            rows, modified_since = _stage(source, collection, path, modified_since, logger)
            break
        except RevisionChanged as changed:
            revisions += [r for r in (changed.first, changed.now) if not revisions or revisions[-1] != r]
            if attempt == restarts:
                raise OneRosterDataError(changed.url, f"the provider's data revision (x-perm-rev) kept changing "
                                         f"during the {collection} pull ({' -> '.join(revisions)}); it was started "
                                         f"again {restarts} time(s) (ONEROSTER_MAX_REVISION_RESTARTS): nothing is "
                                         "applied from it") from None
            logger.warning(f"{changed}: starting the {collection} pull again from the first page "
                           f"({attempt + 1} of at most {restarts})")
    report = source.reports[collection]
    if revisions:
        report.events.insert(0, f"the data revision changed while paging ({' -> '.join(revisions)}): started again "
                                f"from the first page {len(revisions) - 1} time(s)")
    label = source.settings.connection_label()
    logger.info(f"fetched {rows} {collection} ({'delta' if modified_since else 'full'} pull) from {label}")
    return StagedPull(collection, path, rows, report, list(source.rejections), label,
                      "delta" if modified_since else "full", modified_since, started_at,
                      person_key=getattr(source.settings, "person_key", None))


def _stage(source, collection: str, path: Path, modified_since: datetime | None,
           logger: logging.Logger) -> tuple[int, datetime | None]:
    """One pass of `stage_pull`: (rows staged, the delta's start, or None when it became a full pull)."""
    if collection == "orgs":
        return store.stage_batches(source.org_batches(), path, ORG_SCHEMA), None
    try:
        return store.stage_batches(source.student_batches(modified_since=modified_since), path,
                                   USER_SCHEMA), modified_since
    except OneRosterHTTPError as error:
        if modified_since is None or error.status not in (400, 422):
            raise
        logger.warning(f"the provider rejected the dateLastModified delta filter ({error}); "
                       "falling back to a full pull")
        return store.stage_batches(source.student_batches(), path, USER_SCHEMA), None


def record_pull(con: duckdb.DuckDBPyConnection, pull: StagedPull, run_id: str | None, now: datetime) -> None:
    report, verdict = pull.report, pull.verdict
    store.insert_rows(con, "pull_reports", [{
        "run_id": run_id, "collection": pull.collection, "provider": pull.label,
        "endpoint": report.endpoint, "mode": pull.mode, "modified_since": pull.modified_since,
        "started_at": pull.started_at, "reported_total": report.reported_total, "received": report.received,
        "kept": pull.rows, "duplicates": report.duplicates, "rejected": len(pull.rejections),
        "rejected_unidentified": len(unidentified_rejections(pull.collection, pull.rejections)),
        "rejected_kept": pull.kept_rejected,
        "received_by_file": json.dumps(dict(getattr(report, "received_by_file", None) or {}), sort_keys=True),
        "rejected_by_file": json.dumps(rejected_by_file(pull.rejections), sort_keys=True),
        "skipped": report.skipped, "pages": report.pages,
        "complete": verdict.complete, "incomplete_reason": redact(verdict.reason) if verdict.reason else None,
        "fetched_at": now, "revision": getattr(report, "revision", None), "person_key": pull.person_key,
    }])
    store.insert_rows(con, "rejected_records", [{
        "run_id": run_id, "collection": pull.collection, "sourced_id": r.sourced_id,
        # the provider's text (a value named in a reason) leaves the process through the one redactor
        "location": redact(r.location), "field": r.field, "reason": redact(r.reason), "recorded_at": now,
        "kind": r.kind,
    } for r in [*pull.rejections, *pull.dropped_values]])


def _load_raw(con: duckdb.DuckDBPyConnection, table: str, pull: StagedPull, now: datetime) -> None:
    """Replace the raw table from a complete full pull; merge anything less (and say why).

    Rejection is not absence: a record rejected with its sourcedId keeps its existing raw row as it is (neither
    removed nor updated), so the sync plans see it unchanged. A merge keeps it anyway (it is not in the file)."""
    if pull.replaces:
        kept_ids = identified_rejections(pull.collection, pull.rejections)
        _, pull.kept_rejected = store.replace_from_parquet(con, table, pull.path, pull.label, now, kept_ids)
        if kept_ids:
            log.warning(f"{len(kept_ids)} {pull.collection} record(s) were rejected (see rejected_records): "
                        f"{pull.kept_rejected} existing {table} row(s) of theirs kept as they were")
        return
    if pull.mode == "full":
        log.warning(f"the {pull.collection} pull is incomplete ({pull.verdict.reason}); merging it without "
                    "treating absent records as deleted")
    store.merge_from_parquet(con, table, pull.path, pull.label, now)


def choose_student_pull(con: duckdb.DuckDBPyConnection, provider: str, forced_mode: str,
                        full_every_days: int, overlap_minutes: int) -> datetime | None:
    """The `modified_since` of today's student pull, or None for a full pull.

    Full when forced, for CSV exports, when no full pull has been applied yet, or when the last one is older than
    the cadence (deletions are invisible to a delta); otherwise a delta since the last applied pull started,
    minus an overlap for clock skew and provider caches.
    """
    if forced_mode == "full" or provider == "csv":
        return None
    last_full, last_any = con.execute("""
        SELECT max(started_at) FILTER (WHERE mode = 'full'), max(started_at)
        FROM pull_reports WHERE collection = 'students' AND complete""").fetchall()[0]
    if last_full is None:
        return None
    if forced_mode != "delta" and datetime.now(timezone.utc) - last_full >= timedelta(days=full_every_days):
        return None
    return last_any - timedelta(minutes=overlap_minutes)


def apply_org_pull(con: duckdb.DuckDBPyConnection, pull: StagedPull, run_id: str | None, now: datetime,
                   approved: bool = False, before_commit: Callable[[], None] | None = None) -> int:
    """Load `oneroster_orgs`; refuse an org pull with no active school while buildings exist. `before_commit()`
    writes the caller's record of the applied pull (its `sync_runs` row) on `con` in the same transaction."""
    with store.transaction(con):
        schools = con.execute(
            "SELECT count(*) FROM read_parquet(?) WHERE type = 'school' AND status = 'active'",
            [str(pull.path)]).fetchall()[0][0]
        buildings = con.execute("SELECT count(*) FROM buildings WHERE status = 'active'").fetchall()[0][0]
        if schools == 0 and buildings and not approved:
            raise SyncHeld([f"the provider returned no active school while {buildings} buildings are active"],
                           {"orgs_fetched": pull.rows, "active_buildings": buildings})
        _load_raw(con, "oneroster_orgs", pull, now)
        record_pull(con, pull, run_id, now)
        if before_commit is not None:
            before_commit()
    return schools


def latest_pull_report(con: duckdb.DuckDBPyConnection, collection: str) -> dict | None:
    """The latest `pull_reports` row of `collection` (orgs, students), every column; None before any pull."""
    rows = store.query_dicts(con, "SELECT * FROM pull_reports WHERE collection = ? ORDER BY fetched_at DESC LIMIT 1",
                             [collection])
    return rows[0] if rows else None


def records_rejected_by_pull(con: duckdb.DuckDBPyConnection, pull: dict, limit: int) -> list[dict]:
    """Up to `limit` of the records a pull (its `pull_reports` row) rejected, by location: location, sourced_id,
    field, reason."""
    return store.query_dicts(con, """
        SELECT location, sourced_id, field, reason FROM rejected_records
        WHERE collection = ? AND recorded_at = ? AND run_id IS NOT DISTINCT FROM ? AND kind = 'rejected'
        ORDER BY location LIMIT ?""", [pull["collection"], pull["fetched_at"], pull["run_id"], limit])


def last_org_pull_complete(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the latest org pull was complete: building sync flags vanished schools only after one."""
    rows = con.execute(
        "SELECT complete FROM pull_reports WHERE collection = 'orgs' ORDER BY fetched_at DESC LIMIT 1").fetchall()
    return bool(rows and rows[0][0])


@dataclass
class StudentSyncOutcome:
    """What a student sync did: `applied`, `partially_held` (deactivations held), or `preview` (nothing)."""

    outcome: str
    plan: StudentSyncPlan
    decision: HoldDecision
    result: StudentSyncResult | None = None


@contextlib.contextmanager
def any_row_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let DuckDB insert rows in any order (its threads append in parallel) while the sync's statements run: every
    statement that needs an order says ORDER BY. The 1,000,000-student raw load takes 1.3 s instead of 3.4 s. The
    setting is DuckDB's GLOBAL one: it holds for the instance's other connections in this process too, until reset."""
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("RESET preserve_insertion_order")


class _RollBack(Exception):
    """Leaves the transaction without writing (a preview)."""


def _save_diff(con: duckdb.DuckDBPyConnection, diff, run_id: str | None, now: datetime, disposition: str) -> None:
    con.register("_diff_rows", diff)
    try:
        con.execute(
            "INSERT INTO sync_diffs BY NAME SELECT ? AS run_id, ? AS computed_at, ? AS disposition, * "
            "FROM _diff_rows", [run_id, now, disposition])
    finally:
        con.unregister("_diff_rows")


def apply_student_pull(con: duckdb.DuckDBPyConnection, pull: StagedPull, run_id: str | None, now: datetime,
                       policy: HoldPolicy, approved_hash: str | None = None, preview: bool = False,
                       before_commit: Callable[[StudentSyncOutcome], None] | None = None) -> StudentSyncOutcome:
    """Load `oneroster_users`, plan the student sync, compute its diff and hold decision, then apply what is not
    held, all in one transaction. A preview records the diff in `sync_diffs` and changes nothing else.
    `before_commit(outcome)` writes the caller's record of an applied sync (its `sync_runs` row) on `con` in that
    same transaction: the tables and the record of them are committed together or not at all (a full disk fails
    the COMMIT and both roll back).

    Raises SyncHeld (nothing applied; the held diff and the hold recorded) when the hold policy holds everything.
    """
    full_pull = pull.replaces
    try:
        with any_row_order(con), store.transaction(con):
            _load_raw(con, "oneroster_users", pull, now)
            if not preview:
                record_pull(con, pull, run_id, now)
            plan = plan_student_sync(con, now, pull.person_key)
            # rows kept for rejected records count as landed: a pull of only rejected students is not an empty one
            decision = evaluate_holds(con, plan, pull.rows + pull.kept_rejected, policy, full_pull)
            decision.approved = approval_is_valid(con, decision, approved_hash, now, policy)
            if preview:
                diff = store.query_arrow(con, "SELECT * FROM _diff")
                raise _RollBack
            if decision.hold_all and not decision.approved:
                held = store.query_arrow(con, "SELECT * FROM _diff")
                raise SyncHeld(decision.hold_all, plan.as_metadata(), decision.diff_hash)
            hold_deactivations = bool(decision.hold_deactivations) and not decision.approved
            if decision.scope:
                store.insert_rows(con, "sync_holds", [hold_record(decision, plan, run_id, now)])
            if hold_deactivations:
                _save_diff(con, store.query_arrow(con, "SELECT * FROM _diff WHERE change = 'deactivate'"),
                           run_id, now, "held")
            result = apply_student_sync(con, plan, now, run_id, hold_deactivations)
            done = StudentSyncOutcome("partially_held" if hold_deactivations else "applied", plan, decision, result)
            if before_commit is not None:
                before_commit(done)
            return done
    except _RollBack:
        with store.transaction(con):
            _save_diff(con, diff, run_id, now, "preview")
        return StudentSyncOutcome("preview", plan, decision)
    except SyncHeld:
        with store.transaction(con):
            _save_diff(con, held, run_id, now, "held")
            store.insert_rows(con, "sync_holds", [hold_record(decision, plan, run_id, now)])
        raise
