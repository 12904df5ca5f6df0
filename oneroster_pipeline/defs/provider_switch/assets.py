"""Dagster layer of the provider change: the `id_crosswalk` asset and its checks, and applying the switch.

`id_crosswalk` pulls the configured (new) connection's orgs and students and matches them to the registry; its
blocking checks `crosswalk_ambiguous` and `crosswalk_unmatched` fail when a threshold is exceeded, which stops the
switch before `provider_connections` applies it. A person reviews `id_crosswalk` (the checks' metadata list the
records) and re-runs the job with the run tag `oneroster/approve_provider_switch=true`.
"""


import os
from datetime import datetime, timezone

import dagster as dg

from oneroster_pipeline.defs.alerts.hooks import RUN_HOOKS
from oneroster_pipeline.defs.resources import OneRosterResource, WarehouseResource
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.policy import (
    DEFAULT_SCHOOL_RULES,
    DEFAULT_STUDENT_RULES,
    SCHOOL_RULES,
    STUDENT_RULES,
    SwitchPolicy,
    parse_rules,
)
from oneroster_pipeline.warehouse.provider_switch import (
    SwitchBlocked,
    SwitchError,
    apply_switch,
    build_crosswalk,
    connection_of,
)
from oneroster_pipeline.warehouse.pulls import stage_pull

from .partitions import add_connection_partition

GROUP = "provider_switch"
OWNERS = ["team:data-engineering"]
APPROVE_SWITCH_TAG = "oneroster/approve_provider_switch"  # "true": apply a crosswalk its checks blocked


class SwitchPolicyResource(dg.ConfigurableResource):
    """How a provider switch matches records and when it waits for a person (README, 'Changing provider')."""

    school_match_order: str = ",".join(DEFAULT_SCHOOL_RULES)
    student_match_order: str = ",".join(DEFAULT_STUDENT_RULES)
    max_unmatched_pct: float = 5.0
    max_ambiguous: int = 0

    def policy(self) -> SwitchPolicy:
        return SwitchPolicy(
            school_rules=parse_rules(self.school_match_order, SCHOOL_RULES, "ONEROSTER_SWITCH_SCHOOL_MATCH"),
            student_rules=parse_rules(self.student_match_order, STUDENT_RULES, "ONEROSTER_SWITCH_STUDENT_MATCH"),
            max_unmatched_pct=self.max_unmatched_pct, max_ambiguous=self.max_ambiguous)

    @classmethod
    def from_environment(cls) -> "SwitchPolicyResource":
        kwargs: dict = {}
        for name, var, parse in (
            ("school_match_order", "ONEROSTER_SWITCH_SCHOOL_MATCH", str),
            ("student_match_order", "ONEROSTER_SWITCH_STUDENT_MATCH", str),
            ("max_unmatched_pct", "ONEROSTER_SWITCH_MAX_UNMATCHED_PCT", float),
            ("max_ambiguous", "ONEROSTER_SWITCH_MAX_AMBIGUOUS", int),
        ):
            if os.environ.get(var):
                try:
                    kwargs[name] = parse(os.environ[var])
                except ValueError:
                    raise ValueError(f"{var} must be a number, got {os.environ[var]!r}") from None
        resource = cls(**kwargs)
        resource.policy()  # a bad rule list fails at load, naming the variable
        return resource


def _approved(context) -> bool:
    return (context.run.tags.get(APPROVE_SWITCH_TAG) or "").strip().lower() == "true"


def _rows_md(rows: list[dict]) -> dg.MetadataValue:
    from oneroster_pipeline.defs.sync.assets import markdown_table

    return dg.MetadataValue.md(markdown_table(rows, 50))


@dg.multi_asset(
    specs=[dg.AssetSpec(
        "id_crosswalk", group_name=GROUP, owners=OWNERS, kinds={"duckdb", "python"}, deps=["buildings", "students"],
        description=(
            "Matches the configured (new) provider connection's schools to buildings and students to students, "
            "rule by rule (ONEROSTER_SWITCH_SCHOOL_MATCH / ONEROSTER_SWITCH_STUDENT_MATCH), and records every "
            "record with the rule used, or ambiguous / unmatched, in id_crosswalk (one switch_id per build)."
        ),
    )],
    check_specs=[
        dg.AssetCheckSpec("crosswalk_ambiguous", asset="id_crosswalk", blocking=True, description=(
            "Fails (and blocks the switch) when more buildings or students match ambiguously than "
            f"ONEROSTER_SWITCH_MAX_AMBIGUOUS; {APPROVE_SWITCH_TAG}=true applies anyway (ambiguous ones keep "
            "their old ids).")),
        dg.AssetCheckSpec("crosswalk_unmatched", asset="id_crosswalk", blocking=True, description=(
            "Fails (and blocks the switch) when more than ONEROSTER_SWITCH_MAX_UNMATCHED_PCT % of the buildings or "
            f"students match nothing in the new connection; {APPROVE_SWITCH_TAG}=true applies anyway. Unmatched "
            "new students are never merged onto old ones: they arrive as new students on the next sync.")),
    ],
    pool="duckdb", name="id_crosswalk",
)
def id_crosswalk(context: dg.AssetExecutionContext, oneroster: OneRosterResource, duckdb: WarehouseResource,
                 switch_policy: SwitchPolicyResource):
    policy = switch_policy.policy()
    new = connection_of(oneroster.settings())
    staging = duckdb.staging_dir(context.run.run_id, "provider-switch")
    try:
        with oneroster.open(context.log) as source:
            orgs = stage_pull(source, "orgs", staging, None, context.log)
            students = stage_pull(source, "students", staging, None, context.log)
        with duckdb.connect() as con:
            try:
                report = build_crosswalk(con, context.run.run_id, new, orgs, students, policy,
                                         datetime.now(timezone.utc))
            except SwitchError as error:
                raise dg.Failure(description=f"No crosswalk built: {error}") from None
    finally:
        store.remove_staging(staging)
    c, approved = report.counts, _approved(context)
    yield dg.MaterializeResult(asset_key="id_crosswalk", metadata={
        "switch_id": report.switch_id, "old_connection": f"{report.old['label']} [{report.old['connection_id']}]",
        "new_connection": f"{new.label} [{new.connection_id}]", "status": report.status,
        "blocked_because": "; ".join(report.reasons) or "-", **c,
        "building_rules": dg.MetadataValue.json(report.rules_used["building"]),
        "student_rules": dg.MetadataValue.json(report.rules_used["student"]),
        "query": f"SELECT * FROM id_crosswalk WHERE switch_id = '{report.switch_id}' ORDER BY entity, status",
    })
    for check, kind, rows in (("crosswalk_ambiguous", "ambiguous", report.ambiguous),
                              ("crosswalk_unmatched", "match no", report.unmatched)):
        reasons = [r for r in report.reasons if kind in r]
        severity = dg.AssetCheckSeverity.WARN if approved else dg.AssetCheckSeverity.ERROR
        description = ("; ".join(reasons) + (f" (approved by {APPROVE_SWITCH_TAG})" if approved else
                       f". Review id_crosswalk; to apply anyway re-run provider_switch with {APPROVE_SWITCH_TAG}=true")
                       ) if reasons else None
        yield dg.AssetCheckResult(
            asset_key="id_crosswalk", check_name=check, passed=not reasons, severity=severity,
            description=description, metadata={
                "switch_id": report.switch_id, "count": len(rows),
                "old_ids": list(dict.fromkeys(r["old_id"] for r in rows if r["old_id"])),
                "new_ids": list(dict.fromkeys(r["new_id"] for r in rows if r["new_id"] and not r["old_id"])),
                "records": _rows_md(rows),
            })


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"duckdb"}, pool="duckdb", deps=["id_crosswalk"],
    description=(
        "Applies the latest crosswalk in one transaction: every building_id and student_id is kept, building_sis "
        "and sourced_id take the new connection's ids (old ones in id_history), the raw tables take the new pull, "
        "the new connection becomes active and the old one retired. Nothing is deleted."
    ),
)
def provider_connections(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.connect() as con:
        own = con.execute("SELECT switch_id FROM provider_switches WHERE switch_id = ?",
                          [context.run.run_id]).fetchall()
        latest = store.query_dicts(con, "SELECT switch_id FROM provider_switches ORDER BY built_at DESC LIMIT 1")
        if not own and not latest:
            raise dg.Failure(description="No crosswalk to apply: run the job provider_switch (it builds id_crosswalk).")
        switch_id = own[0][0] if own else latest[0]["switch_id"]
        try:
            done = apply_switch(con, switch_id, context.run.run_id, datetime.now(timezone.utc), _approved(context))
        except SwitchBlocked as blocked:
            raise dg.Failure(description=(
                f"Switch blocked, nothing changed: {blocked}. Review id_crosswalk (switch_id {switch_id}); to apply "
                f"anyway re-run provider_switch with the run tag {APPROVE_SWITCH_TAG}=true.")) from None
        except SwitchError as error:
            raise dg.Failure(description=f"Switch not applied: {error}") from None
        connections = store.query_dicts(
            con, "SELECT connection_id, label, status, activated_at, retired_at FROM provider_connections "
                 "ORDER BY first_seen_at")
    add_connection_partition(context.instance, done.new_connection_id)
    context.log.info(f"provider switch applied: {done.old_connection_id} -> {done.new_connection_id}; now backfill "
                     f"rebuild_student_tables for partition {done.new_connection_id}")
    return dg.MaterializeResult(metadata={
        "switch_id": switch_id, "retired": done.old_connection_id, "active": done.new_connection_id,
        "buildings_rewritten": done.buildings_rewritten, "students_rewritten": done.students_rewritten,
        "ignored_rewritten": done.ignored_rewritten, "students_kept_unmatched": done.students_kept_unmatched,
        "next_step": f"backfill the job rebuild_student_tables for partition {done.new_connection_id}",
        "connections": _rows_md(connections),
    })


provider_switch_job = dg.define_asset_job(
    "provider_switch", selection=dg.AssetSelection.assets("id_crosswalk", "provider_connections"), hooks=RUN_HOOKS,
    description=("Provider change: builds id_crosswalk from the configured (new) connection and applies it unless "
                 f"its checks block it ({APPROVE_SWITCH_TAG}=true applies a blocked crosswalk)."),
)
provider_switch_preview_job = dg.define_asset_job(
    "provider_switch_preview", selection=dg.AssetSelection.assets("id_crosswalk"), hooks=RUN_HOOKS,
    description="Provider change, review only: builds id_crosswalk from the configured connection, applies nothing.",
)
