"""A code location with full_sync's asset graph and none of its work: Dagster's own cost of a many-district backfill.

`many_districts_benchmark.py --floor` loads this module instead of `oneroster_pipeline.definitions`, with the same
districts file, the same `ONEROSTER_DISTRICTS_PER_RUN` and the same instance, daemon and webserver. It has the same
asset keys, steps, check names, pool, partitions (the file's district ids), backfill policy and in-process executor
as the code location, and each step records what the real one records for each district (one materialization per
asset and district with a few metadata values; one result per check with a table by district in a batched step),
but it pulls nothing, opens no DuckDB file and has none of the code location's run hooks, sensors or schedules.
Like the code location, it is built when Dagster loads it (`defs`, a lazy `@dg.definitions`), not when imported.
What a backfill of it costs is the floor under any implementation of the sync on this machine: the backfill
daemon's pickup, run creation with its planned events, the queue, process starts and the event log. Not a product: imports only dagster and yaml
(oneroster_pipeline_tests/test_orchestration_floor.py keeps its graph the code location's).
"""

import os
import warnings

import dagster as dg
import yaml

ORG_CHECKS = [("oneroster_orgs", "pull_complete"), ("oneroster_orgs", "rejections_within_tolerance"),
              ("buildings", "building_sis_matches_schools"), ("buildings", "building_sis_unique")]
STUDENT_CHECKS = [("oneroster_users", "fetched_count_matches_provider_total"), ("oneroster_users", "pull_complete"),
                  ("oneroster_users", "rejections_within_tolerance"), ("students", "students_ids_unique"),
                  ("students", "students_buildings_exist"), ("students", "students_landed"),
                  ("students", "one_student_per_person")]


def _recorded(context, asset_keys) -> list[dg.MaterializeResult]:
    """What a batched step of the real code location records: each district's own metadata on its partition."""
    for key in context.partition_keys:
        for asset_key in asset_keys:
            context.add_asset_metadata({"dagster/row_count": 0, "district": key}, asset_key=asset_key,
                                       partition_key=key)
    return [dg.MaterializeResult(asset_key=asset_key) for asset_key in asset_keys]


def _check_results(context, checks) -> list[dg.AssetCheckResult]:
    table = "\n".join(f"| {key} | True |" for key in context.partition_keys)
    return [dg.AssetCheckResult(asset_key=asset, check_name=name, passed=True,
                                metadata={"districts": dg.MetadataValue.md("| district | passed |\n|---|---|\n" + table)})
            for asset, name in checks]


def oneroster_orgs(context: dg.AssetExecutionContext):
    yield from _recorded(context, [dg.AssetKey("oneroster_orgs")])
    yield dg.AssetCheckResult(asset_key="oneroster_orgs", check_name="schools_present_guard", passed=True)


def buildings(context: dg.AssetExecutionContext):
    (result,) = _recorded(context, [dg.AssetKey("buildings")])
    return result


STUDENT_ASSETS = ["oneroster_users", "students", "student_buildings", "ignored_students"]


def student_sync_assets(context: dg.AssetExecutionContext):
    yield from _recorded(context, [dg.AssetKey(key) for key in STUDENT_ASSETS])
    yield dg.AssetCheckResult(asset_key="students", check_name="mass_change_guard", passed=True)


def _checks_step(name: str, checks: list[tuple[str, str]], partitions) -> dg.AssetChecksDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [dg.AssetCheckSpec(check, asset=asset, partitions_def=partitions) for asset, check in checks]

    @dg.multi_asset_check(specs=specs, name=name, can_subset=True)
    def evaluate(context: dg.AssetCheckExecutionContext):
        yield from _check_results(context, checks)

    return evaluate


def build(district_ids: list[str], per_run: int) -> dg.Definitions:
    """full_sync's graph over `district_ids`, `per_run` districts per backfill run."""
    partitions = dg.StaticPartitionsDefinition(district_ids)
    common = {"pool": "duckdb", "partitions_def": partitions, "backfill_policy": dg.BackfillPolicy.multi_run(per_run)}
    student_specs = [dg.AssetSpec("oneroster_users"), dg.AssetSpec("students", deps=["oneroster_users", "buildings"]),
                     dg.AssetSpec("student_buildings", deps=["students"]),
                     dg.AssetSpec("ignored_students", deps=["oneroster_users", "buildings", "oneroster_orgs"])]
    return dg.Definitions(
        assets=[
            dg.multi_asset(specs=[dg.AssetSpec("oneroster_orgs")], name="oneroster_orgs", check_specs=[
                dg.AssetCheckSpec("schools_present_guard", asset="oneroster_orgs", blocking=True)], **common)(
                oneroster_orgs),
            dg.asset(name="buildings", deps=["oneroster_orgs"], **common)(buildings),
            dg.multi_asset(specs=student_specs, name="student_sync_assets", check_specs=[
                dg.AssetCheckSpec("mass_change_guard", asset="students", blocking=True)], **common)(
                student_sync_assets)],
        asset_checks=[_checks_step("org_and_building_checks", ORG_CHECKS, partitions),
                      _checks_step("student_checks", STUDENT_CHECKS, partitions)],
        jobs=[dg.define_asset_job("full_sync", selection=dg.AssetSelection.assets(
            "oneroster_orgs", "buildings", *STUDENT_ASSETS))],  # for `dagster job execute` over a range, as a check
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The floor of the districts file ONEROSTER_DISTRICTS_FILE names, ONEROSTER_DISTRICTS_PER_RUN per run."""
    with open(os.environ["ONEROSTER_DISTRICTS_FILE"]) as districts_file:
        district_ids = [entry["id"] for entry in yaml.safe_load(districts_file)["districts"]]
    return build(district_ids, int(os.environ.get("ONEROSTER_DISTRICTS_PER_RUN", "1")))
