"""The hold policy: which parts of a planned student sync look like a provider accident, and their approval."""

# By default additions, updates and reactivations apply while deactivations above a threshold (district-wide or in one
# building, as a count or a percentage) are held; a plan that updates more than `max_update_pct` of the active
# students, or a full pull that returned zero students, holds everything (as Clever does). A hold is identified by the
# hash of the exact held diff: an approval names that hash, expires after `approval_hours`, and a re-run whose held
# diff differs (grew) is held again. Framework-free (no dagster import).

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from .policy import HoldPolicy
from .students import StudentSyncPlan


@dataclass
class HoldDecision:
    """`hold_all` reasons hold the whole sync; `hold_deactivations` reasons hold only the deactivations."""

    hold_all: list[str] = field(default_factory=list)
    hold_deactivations: list[str] = field(default_factory=list)
    buildings_over_threshold: list[dict] = field(default_factory=list)
    diff_hash: str | None = None  # of the held part of the diff; None when nothing is held
    held_changes: int = 0
    approved: bool = False

    @property
    def scope(self) -> str | None:
        return "all" if self.hold_all else "deactivations" if self.hold_deactivations else None

    @property
    def reasons(self) -> list[str]:
        return self.hold_all + self.hold_deactivations


def _over(count: int, base: int, max_count: int, max_pct: float) -> bool:
    return count > max_count or (base > 0 and 100.0 * count / base > max_pct)


def evaluate_holds(con: duckdb.DuckDBPyConnection, plan: StudentSyncPlan, fetched: int, policy: HoldPolicy,
                   full_pull: bool) -> HoldDecision:
    """Decide what to hold of the plan in `_next_students` / `_diff` (call after `plan_student_sync`)."""
    decision = HoldDecision()
    if full_pull and fetched == 0 and plan.active_before > 0:
        decision.hold_all.append(f"the provider returned zero students while {plan.active_before} are active")
    updated_pct = 100.0 * plan.updated / plan.active_before if plan.active_before else 0.0
    if updated_pct > policy.max_update_pct:
        decision.hold_all.append(
            f"{plan.updated} of {plan.active_before} active students ({updated_pct:.1f}%) would be updated, more "
            f"than ONEROSTER_MAX_UPDATE_PCT={policy.max_update_pct:g}%")
    if _over(plan.deactivated, plan.active_before, policy.max_deactivate, policy.max_deactivate_pct):
        pct = 100.0 * plan.deactivated / plan.active_before if plan.active_before else 100.0
        decision.hold_deactivations.append(
            f"{plan.deactivated} of {plan.active_before} active students ({pct:.1f}%) would be deactivated, more "
            f"than ONEROSTER_MAX_DEACTIVATE={policy.max_deactivate} or "
            f"ONEROSTER_MAX_DEACTIVATE_PCT={policy.max_deactivate_pct:g}%")
    by_building = con.execute(
        """
        WITH deactivated AS (  -- per building of the stored students the plan deactivates
            SELECT _old_building_sis AS building_sis, count(*) AS deactivated
            FROM _next_students WHERE _deactivated GROUP BY 1)
        SELECT d.building_sis, d.deactivated, count(*) FILTER (WHERE e.deactivated_at IS NULL) AS active
        FROM deactivated d JOIN students e ON e.building_sis = d.building_sis
        GROUP BY d.building_sis, d.deactivated ORDER BY d.building_sis
        """
    ).fetchall()
    for sis, deactivated, active in by_building:
        if deactivated and _over(deactivated, active, policy.building_max_deactivate,
                                 policy.building_max_deactivate_pct):
            decision.buildings_over_threshold.append(
                {"building_sis": sis, "deactivated": deactivated, "active": active})
    if decision.buildings_over_threshold:
        worst = ", ".join(f"{b['building_sis']} ({b['deactivated']} of {b['active']})"
                          for b in decision.buildings_over_threshold[:5])
        decision.hold_deactivations.append(
            f"deactivations above ONEROSTER_BUILDING_MAX_DEACTIVATE={policy.building_max_deactivate} or "
            f"ONEROSTER_BUILDING_MAX_DEACTIVATE_PCT={policy.building_max_deactivate_pct:g}% in "
            f"{len(decision.buildings_over_threshold)} building(s): {worst}")
    if decision.scope:
        where = "" if decision.scope == "all" else "WHERE change = 'deactivate'"
        decision.held_changes, decision.diff_hash = con.execute(
            f"""
            SELECT count(*), left(sha256(coalesce(string_agg(
                       concat_ws('|', sourced_id, change, field, old_value, new_value, reason), chr(10)
                       ORDER BY sourced_id, change, field), '')), 16)
            FROM _diff {where}
            """
        ).fetchall()[0]
    return decision


def approval_is_valid(con: duckdb.DuckDBPyConnection, decision: HoldDecision, approved_hash: str | None,
                      now: datetime, policy: HoldPolicy) -> bool:
    """True when `approved_hash` names this exact held diff and a hold of it was recorded within the window."""
    if not decision.diff_hash or (approved_hash or "").strip() != decision.diff_hash:
        return False
    since = now - timedelta(hours=policy.approval_hours)
    return bool(con.execute(
        "SELECT count(*) FROM sync_holds WHERE diff_hash = ? AND held_at >= ?", [decision.diff_hash, since]
    ).fetchall()[0][0])


def hold_record(decision: HoldDecision, plan: StudentSyncPlan, run_id: str | None, now: datetime) -> dict:
    """A `sync_holds` row for a held (or approved) decision."""
    return {
        "diff_hash": decision.diff_hash, "run_id": run_id, "held_at": now, "scope": decision.scope,
        "held_changes": decision.held_changes, "reasons": "; ".join(decision.reasons),
        "plan": json.dumps(plan.as_metadata()), "approved": decision.approved,
    }
