"""The sync steps, framework-free: pull a collection to Parquet, then apply it to DuckDB in one transaction.

The Dagster assets compose these; the benchmark runs the very same path without Dagster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from . import store
from .client.errors import OneRosterHTTPError
from .client.records import ORG_SCHEMA, USER_SCHEMA
from .sync import (
    MassChangePolicy,
    StudentSyncResult,
    apply_student_sync,
    mass_change_violations,
    plan_student_sync,
)

log = logging.getLogger(__name__)


class SyncHeld(Exception):
    """A guard refused to apply a pull; raised inside the transaction so nothing is written."""

    def __init__(self, reasons: list[str], plan: dict):
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.plan = plan


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


def stage_pull(source, collection: str, staging_dir: Path, modified_since: datetime | None = None,
               logger: logging.Logger | None = None) -> StagedPull:
    """Stream one collection page by page into Parquet. A provider that rejects the delta filter gets a full pull."""
    logger = logger or log
    path = staging_dir / f"{collection}.parquet"
    started_at = datetime.now(timezone.utc)
    if collection == "orgs":
        rows = store.stage_batches(source.org_batches(), path, ORG_SCHEMA)
    else:
        try:
            rows = store.stage_batches(source.student_batches(modified_since=modified_since), path, USER_SCHEMA)
        except OneRosterHTTPError as error:
            if modified_since is None or error.status not in (400, 422):
                raise
            logger.warning(f"the provider rejected the dateLastModified delta filter ({error}); "
                           "falling back to a full pull")
            modified_since = None
            rows = store.stage_batches(source.student_batches(), path, USER_SCHEMA)
    label = source.settings.connection_label()
    logger.info(f"fetched {rows} {collection} ({'delta' if modified_since else 'full'} pull) from {label}")
    return StagedPull(collection, path, rows, source.reports[collection], list(source.rejections), label,
                      "delta" if modified_since else "full", modified_since, started_at)


def record_pull(con: duckdb.DuckDBPyConnection, pull: StagedPull, run_id: str | None, now: datetime) -> None:
    report = pull.report
    store.insert_rows(con, "pull_reports", [{
        "run_id": run_id, "collection": pull.collection, "provider": pull.label,
        "endpoint": report.endpoint, "mode": pull.mode, "modified_since": pull.modified_since,
        "started_at": pull.started_at, "reported_total": report.reported_total, "received": report.received, "kept": pull.rows,
        "duplicates": report.duplicates, "rejected": len(pull.rejections), "skipped": report.skipped,
        "pages": report.pages,
        "complete": report.complete, "incomplete_reason": report.incomplete_reason, "fetched_at": now,
    }])
    store.insert_rows(con, "rejected_records", [{
        "run_id": run_id, "collection": pull.collection, "sourced_id": r.sourced_id,
        "location": r.location, "field": r.field, "reason": r.reason, "recorded_at": now,
    } for r in pull.rejections])


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
                   approved: bool = False) -> int:
    """Replace `oneroster_orgs`; refuse an org pull with no active school while buildings exist."""
    with store.transaction(con):
        schools = con.execute(
            "SELECT count(*) FROM read_parquet(?) WHERE type = 'school' AND status = 'active'",
            [str(pull.path)]).fetchall()[0][0]
        buildings = con.execute("SELECT count(*) FROM buildings WHERE status = 'active'").fetchall()[0][0]
        if schools == 0 and buildings and not approved:
            raise SyncHeld([f"the provider returned no active school while {buildings} buildings are active"],
                           {"orgs_fetched": pull.rows, "active_buildings": buildings})
        store.replace_from_parquet(con, "oneroster_orgs", pull.path, pull.label, now)
        record_pull(con, pull, run_id, now)
    return schools


def apply_student_pull(con: duckdb.DuckDBPyConnection, pull: StagedPull, run_id: str | None, now: datetime,
                       policy: MassChangePolicy, approved: bool = False) -> StudentSyncResult:
    """Replace (complete full pull) or merge (delta, or an incomplete pull) `oneroster_users`, plan the student
    sync, guard it, apply it: one transaction.

    Absence means deletion only in a complete full pull; anything less is merged, so a student missing from a
    partial pull is never deactivated because of it.
    """
    replace = pull.mode == "full" and pull.report.complete
    if pull.mode == "full" and not replace:
        log.warning(f"the student pull is incomplete ({pull.report.incomplete_reason}); merging it without "
                    "deactivating absent students")
    with store.transaction(con):
        apply = store.replace_from_parquet if replace else store.merge_from_parquet
        apply(con, "oneroster_users", pull.path, pull.label, now)
        record_pull(con, pull, run_id, now)
        plan = plan_student_sync(con, now)
        violations = mass_change_violations(plan, pull.rows, policy, full_pull=replace)
        if violations and not approved:
            raise SyncHeld(violations, plan.as_metadata())
        return apply_student_sync(con, plan, now, run_id)
