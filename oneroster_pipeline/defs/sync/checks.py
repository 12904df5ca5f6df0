"""Asset checks: validation results a person must see and can act on (offending ids and names, counts)."""


import json

import dagster as dg

from oneroster_pipeline.defs.districts import DISTRICT_PARTITIONS, per_district
from oneroster_pipeline.defs.resources import WarehouseResource
from oneroster_pipeline.defs.runs import markdown_table
from oneroster_pipeline.warehouse import store
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline.warehouse.pulls import rejection_findings

ERROR = dg.AssetCheckSeverity.ERROR
LISTED = 50  # offending records listed in a check's metadata


@dg.asset_check(
    partitions_def=DISTRICT_PARTITIONS, asset="buildings", additional_deps=["oneroster_orgs"], blocking=False,
    description=(
        "Every active building's building_sis is an active OneRoster school, and every active school has a "
        "building. Failing does not stop student sync: it explains students ignored as school_not_a_building."
    ),
)
@per_district
def building_sis_matches_schools(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        unmatched_buildings = store.query_dicts(con, """
            SELECT b.building_id, b.name, b.building_sis, b.origin FROM buildings b
            WHERE b.status = 'active' AND b.building_sis NOT IN (
                SELECT sourced_id FROM oneroster_orgs WHERE type = 'school' AND status = 'active')
            ORDER BY b.building_id""")
        schools_without_building = store.query_dicts(con, """
            SELECT o.sourced_id, o.name, o.identifier FROM oneroster_orgs o
            WHERE o.type = 'school' AND o.status = 'active'
              AND o.sourced_id NOT IN (SELECT building_sis FROM buildings)
            ORDER BY o.name, o.sourced_id""")
        ignored = con.execute(
            "SELECT count(*) FROM ignored_students WHERE reason = 'school_not_a_building'").fetchall()[0][0]
    return dg.AssetCheckResult(
        passed=not unmatched_buildings and not schools_without_building,
        severity=ERROR,
        description=(
            f"{len(unmatched_buildings)} building(s) match no active school; "
            f"{len(schools_without_building)} active school(s) have no building"
        ),
        metadata={
            "buildings_without_school": len(unmatched_buildings),
            "schools_without_building": len(schools_without_building),
            "students_ignored_school_not_a_building": ignored,
            "buildings_without_school_list": dg.MetadataValue.md(markdown_table(unmatched_buildings, LISTED)),
            "schools_without_building_list": dg.MetadataValue.md(markdown_table(schools_without_building, LISTED)),
            "unmatched_building_sis": [b["building_sis"] for b in unmatched_buildings[:LISTED]],
            "unmatched_school_sourced_ids": [s["sourced_id"] for s in schools_without_building[:LISTED]],
        },
    )


@dg.asset_check(partitions_def=DISTRICT_PARTITIONS, asset="students", description="sourced_id and student_id are each unique in students.")
@per_district
def students_ids_unique(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        repeats = store.query_dicts(con, """
            SELECT 'sourced_id' AS column, sourced_id AS value, count(*) AS rows FROM students
            GROUP BY sourced_id HAVING count(*) > 1
            UNION ALL
            SELECT 'student_id', student_id::VARCHAR, count(*) FROM students
            GROUP BY student_id HAVING count(*) > 1
            ORDER BY 1, 2""")
    return dg.AssetCheckResult(
        passed=not repeats, severity=ERROR,
        metadata={"repeated_ids": len(repeats), "repeats": dg.MetadataValue.md(markdown_table(repeats, LISTED))},
    )


@dg.asset_check(partitions_def=DISTRICT_PARTITIONS, asset="students", description="Every student's building_id exists in buildings.")
@per_district
def students_buildings_exist(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        orphans = store.query_dicts(con, """
            SELECT s.student_id, s.sourced_id, s.building_id FROM students s
            ANTI JOIN buildings b ON b.building_id = s.building_id ORDER BY s.student_id""")
    return dg.AssetCheckResult(
        passed=not orphans, severity=ERROR,
        metadata={"orphans": len(orphans), "orphan_list": dg.MetadataValue.md(markdown_table(orphans, LISTED))},
    )


# the pull_reports columns each check reads (and shows as metadata)
COUNT_COLUMNS = ("reported_total", "received", "kept", "duplicates", "rejected", "skipped", "complete",
                 "incomplete_reason", "endpoint")
COMPLETENESS_COLUMNS = ("run_id", "mode", "complete", "incomplete_reason", "reported_total", "received", "duplicates",
                        "pages", "endpoint")
REJECTION_COLUMNS = ("run_id", "mode", "reported_total", "received", "kept", "duplicates", "rejected",
                     "rejected_unidentified", "rejected_kept", "skipped", "received_by_file", "rejected_by_file",
                     "complete", "fetched_at")


def _latest_pull(con, collection: str, columns: tuple[str, ...]) -> dict | None:
    """The latest `pull_reports` row of a collection (those columns), or None before any pull."""
    rows = store.query_dicts(con, f"SELECT {', '.join(columns)} FROM pull_reports WHERE collection = ? "
                                  "ORDER BY fetched_at DESC LIMIT 1", [collection])
    return rows[0] if rows else None


@dg.asset_check(
    partitions_def=DISTRICT_PARTITIONS, asset="oneroster_users",
    description=("REST: the number of students received equals the total the provider reported (X-Total-Count). "
                 "CSV export: every row of users.csv was read (rows read, rejected) from a full (bulk) export."),
)
@per_district
def fetched_count_matches_provider_total(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        pull = _latest_pull(con, "students", COUNT_COLUMNS)
    if pull is None:
        return dg.AssetCheckResult(passed=False, severity=ERROR, description="no student pull recorded yet")
    total = pull["reported_total"]
    # `received` counts every record the provider sent (duplicates, rejected and skipped ones included), which is
    # what X-Total-Count counts; a provider that sends no total is judged by the pager's completeness verdict alone
    passed = bool(pull["complete"]) and (total is None or pull["received"] == total)
    kept = (f"kept {pull['kept']} ({pull['duplicates']} duplicates, {pull['rejected']} rejected, "
            f"{pull['skipped']} not students)")
    if (pull["endpoint"] or "").endswith(".csv"):  # a CSV export ("users.csv", "users.csv + roles.csv"): no total
        counted = f"CSV export ({pull['endpoint']}): {pull['received']} rows read, {pull['rejected']} rejected; {kept}"
    else:
        counted = (f"received {pull['received']} of a reported total of "
                   f"{total if total is not None else 'unknown (no X-Total-Count)'}; {kept}")
    return dg.AssetCheckResult(
        passed=passed, severity=ERROR,
        description=counted + (f"; incomplete: {pull['incomplete_reason']}" if not pull["complete"] else ""),
        metadata={k: v for k, v in pull.items() if v is not None},
    )


def _pull_complete_check(asset: str, collection: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        partitions_def=DISTRICT_PARTITIONS, asset=asset, name="pull_complete",
        description=(
            f"The latest {collection} pull saw the whole collection: the pager reached the end as the server said, "
            "X-Total-Count stayed the same and matches the records received, and no sourcedId repeated. An "
            "incomplete pull deactivates nothing by absence."
        ),
    )
    @per_district
    def pull_complete(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            pull = _latest_pull(con, collection, COMPLETENESS_COLUMNS)
        if pull is None:
            return dg.AssetCheckResult(passed=False, severity=ERROR, description=f"no {collection} pull recorded yet")
        return dg.AssetCheckResult(
            passed=bool(pull["complete"]), severity=ERROR,
            description=("complete" if pull["complete"] else
                         f"incomplete, so nothing was deactivated by absence: {pull['incomplete_reason']}"),
            metadata={k: v for k, v in pull.items() if v is not None},
        )

    return pull_complete


orgs_pull_complete = _pull_complete_check("oneroster_orgs", "orgs")
students_pull_complete = _pull_complete_check("oneroster_users", "students")


def _rejected_sample(con, collection: str, pull: dict) -> list[dict]:
    return store.query_dicts(con, """
        SELECT location, sourced_id, field, reason FROM rejected_records
        WHERE collection = ? AND recorded_at = ? AND run_id IS NOT DISTINCT FROM ?
        ORDER BY location LIMIT ?""", [collection, pull["fetched_at"], pull["run_id"], LISTED])


def _rejections_check(asset: str, collection: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        partitions_def=DISTRICT_PARTITIONS, asset=asset, name="rejections_within_tolerance",
        description=(
            f"At most ONEROSTER_MAX_REJECTED_PCT (default 1) % of the latest {collection} pull's records were rejected "
            "(could not be read: a bad date, enabledUser or enumeration value, a broken CSV line), overall and in "
            "each CSV file. Rejected records keep their existing rows, so a high share means the district's data "
            "is not being synced. The rejected records are in rejected_records."
        ),
    )
    @per_district
    def rejections_within_tolerance(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                                    sync_policy: dg.ResourceParam[SyncPolicy]) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            pull = _latest_pull(con, collection, REJECTION_COLUMNS)
            sample = _rejected_sample(con, collection, pull) if pull else []
        if pull is None:
            return dg.AssetCheckResult(passed=False, severity=ERROR, description=f"no {collection} pull recorded yet")
        received_by_file = json.loads(pull["received_by_file"] or "{}")
        rejected_by_file = json.loads(pull["rejected_by_file"] or "{}")
        max_pct = sync_policy.max_rejected_pct
        findings = rejection_findings(pull["received"], pull["rejected"], received_by_file, rejected_by_file, max_pct)
        kept = pull["rejected_kept"] or 0
        unidentified = pull["rejected_unidentified"] or 0
        effects = (f"; {kept} existing row(s) of rejected records kept as they were"
                   + (f"; {unidentified} rejected record(s) without a readable sourcedId, so nothing was "
                      "deactivated by absence" if unidentified else ""))
        if findings:
            description = (f"more than ONEROSTER_MAX_REJECTED_PCT={max_pct:g}% of the {collection} pull was "
                           f"rejected: {'; '.join(findings)}{effects}. See rejected_records (field and reason per "
                           "record) and tell the provider")
        else:
            description = (f"{pull['rejected']} of {pull['received']} records rejected, within "
                           f"ONEROSTER_MAX_REJECTED_PCT={max_pct:g}%" + (effects if pull["rejected"] else ""))
        return dg.AssetCheckResult(
            passed=not findings, severity=ERROR, description=description,
            metadata={
                "received": pull["received"], "rejected": pull["rejected"], "rejected_kept": kept,
                "rejected_unidentified": unidentified, "max_rejected_pct": max_pct,
                "received_by_file": dg.MetadataValue.json(received_by_file),
                "rejected_by_file": dg.MetadataValue.json(rejected_by_file),
                "rejected_sample": dg.MetadataValue.md(markdown_table(sample, LISTED)),
            },
        )

    return rejections_within_tolerance


orgs_rejections_within_tolerance = _rejections_check("oneroster_orgs", "orgs")
users_rejections_within_tolerance = _rejections_check("oneroster_users", "students")


@dg.asset_check(
    partitions_def=DISTRICT_PARTITIONS, asset="students", additional_deps=["oneroster_users"],
    description=(
        "The latest student pull landed students when the provider sent (or reported) any: zero students kept "
        "from a pull of records means every one was rejected or lacked the student role (e.g. a roles.csv that "
        "could not be read), never an empty district."
    ),
)
@per_district
def students_landed(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        pull = _latest_pull(con, "students", REJECTION_COLUMNS)
        sample = _rejected_sample(con, "students", pull) if pull else []
    if pull is None:
        return dg.AssetCheckResult(passed=False, severity=ERROR, description="no student pull recorded yet")
    total = pull["reported_total"]
    sent = pull["received"] > 0 or (total or 0) > 0
    passed = pull["kept"] > 0 or not sent
    by_file = json.loads(pull["rejected_by_file"] or "{}")
    files = ", ".join(f"{n} in {name}" for name, n in sorted(by_file.items()))
    description = (
        f"{pull['kept']} students landed from {pull['received']} records received"
        + (f" (reported total {total})" if total is not None else "")
        + f": {pull['rejected']} rejected{f' ({files})' if files else ''}, {pull['skipped']} without the "
        f"student role, {pull['duplicates']} duplicates"
        + ("" if passed else ". Nothing landed: see rejected_records and the pull_complete and "
                             "rejections_within_tolerance checks; tell the provider")
    )
    return dg.AssetCheckResult(
        passed=passed, severity=ERROR, description=description,
        metadata={"kept": pull["kept"], "received": pull["received"], "reported_total": total if total is not None
                  else "-", "rejected": pull["rejected"], "skipped": pull["skipped"],
                  "rejected_sample": dg.MetadataValue.md(markdown_table(sample, LISTED))},
    )


SYNC_CHECKS = [
    building_sis_matches_schools, students_ids_unique, students_buildings_exist, fetched_count_matches_provider_total,
    orgs_pull_complete, students_pull_complete, orgs_rejections_within_tolerance, users_rejections_within_tolerance,
    students_landed,
]
