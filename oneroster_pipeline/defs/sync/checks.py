"""Asset checks: validation results a person must see and can act on (offending ids and names, counts).

Each check is a spec and a function of one DuckDB connection. They run as two subsettable steps, one after the org
and building assets, one after the student step: a step opens the warehouse once (per district) for all of its
checks, where a step per check opened it nine times (a batched run over many districts paid that per district).
Each check can still be run alone from the UI and keeps its name, asset and description."""


import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.resources import WarehouseResource
from oneroster_pipeline.defs.runs import markdown_table
from oneroster_pipeline.warehouse.buildings import (
    active_schools_without_building,
    buildings_without_active_school,
    repeated_building_sis,
)
from oneroster_pipeline.warehouse.people import current_person_key, shared_person_keys
from oneroster_pipeline.warehouse.policy import SyncPolicy
from oneroster_pipeline.warehouse.pulls import latest_pull_report, records_rejected_by_pull, rejection_findings
from oneroster_pipeline.warehouse.students import ignored_student_count, repeated_student_ids, students_without_building

ERROR = dg.AssetCheckSeverity.ERROR
LISTED = 50  # offending records listed in a check's metadata


@dataclass(frozen=True)
class SyncCheck:
    """One asset check: its spec, and how it is evaluated on a connection to the district's warehouse."""

    spec: dg.AssetCheckSpec  # unpartitioned: `spec_over` gives it the districts' partitions
    evaluate: Callable[..., dg.AssetCheckResult]  # (con, sync_policy, pulls=None) -> its result

    def spec_over(self, partitions: dg.PartitionsDefinition | None) -> dg.AssetCheckSpec:
        """The spec partitioned like its asset (by district with a districts file)."""
        if partitions is None:
            return self.spec
        with warnings.catch_warnings():  # a partitioned check spec is a preview feature; @asset_check sets it too
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.AssetCheckSpec(self.spec.name, asset=self.spec.asset_key, description=self.spec.description,
                                     additional_deps=[dep.asset_key for dep in self.spec.additional_deps],
                                     partitions_def=partitions)


class LatestPulls:
    """The latest `pull_reports` row of each collection, and its rejected sample, read once for the checks of a step
    (five checks read the student pull; each used to query it again)."""

    def __init__(self, con) -> None:
        self.con, self._rows, self._samples = con, {}, {}

    def _latest(self, collection: str) -> dict | None:
        if collection not in self._rows:
            self._rows[collection] = latest_pull_report(self.con, collection)
        return self._rows[collection]

    def row(self, collection: str, columns: tuple[str, ...]) -> dict | None:
        """The latest pull of `collection` (those columns), or None before any pull."""
        row = self._latest(collection)
        return None if row is None else {column: row[column] for column in columns}

    def rejected_sample(self, collection: str) -> list[dict]:
        """Up to LISTED of the records the latest pull of `collection` rejected, with field and reason (none
        before any pull)."""
        if collection not in self._samples:
            pull = self._latest(collection)
            self._samples[collection] = ([] if pull is None or not pull["rejected"]  # none to read (no query)
                                         else records_rejected_by_pull(self.con, pull, LISTED))
        return self._samples[collection]


def _check(asset: str, name: str, description: str, additional_deps=()):
    """Decorate `evaluate(con, policy, pulls)` as the check `name` on `asset`; the check is then called as
    `evaluate(con, policy)`, or with the step's shared `LatestPulls`."""
    def make(evaluate) -> SyncCheck:
        spec = dg.AssetCheckSpec(name, asset=asset, description=description, additional_deps=additional_deps)

        def evaluated(con, policy: SyncPolicy, pulls: LatestPulls | None = None) -> dg.AssetCheckResult:
            result = evaluate(con, policy, pulls or LatestPulls(con))  # named here: a step's results say which is which
            return dg.AssetCheckResult(asset_key=spec.asset_key, check_name=name, passed=result.passed,
                                       severity=result.severity, description=result.description,
                                       metadata=result.metadata)
        return SyncCheck(spec, evaluated)
    return make


@_check("buildings", "building_sis_matches_schools", additional_deps=["oneroster_orgs"], description=(
    "Every active building's building_sis is an active OneRoster school, and every active school has a "
    "building. Failing does not stop student sync: it explains students ignored as school_not_a_building."))
def building_sis_matches_schools(con, policy, pulls) -> dg.AssetCheckResult:
    unmatched_buildings = buildings_without_active_school(con)
    schools_without_building = active_schools_without_building(con)
    ignored = ignored_student_count(con, "school_not_a_building")
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


@_check("buildings", "building_sis_unique", description=(
    "building_sis is unique in buildings: a building is one OneRoster school, matched by the school's sourcedId "
    "exactly as the provider gives it (` SCH-1 ` and `SCH-1` are two schools). Two buildings with one building_sis "
    "would let students land in either."))
def building_sis_unique(con, policy, pulls) -> dg.AssetCheckResult:
    repeats = repeated_building_sis(con)
    return dg.AssetCheckResult(
        passed=not repeats, severity=ERROR,
        description=(f"{len(repeats)} building_sis value(s) held by more than one building: "
                     + ", ".join(f"{r['building_sis']!r} (building_id {', '.join(map(str, r['building_ids']))})"
                                 for r in repeats[:10]) if repeats else "every building_sis is held by one building"),
        metadata={"repeated_building_sis": len(repeats),
                  "repeated_values": [r["building_sis"] for r in repeats[:LISTED]],
                  "repeats": dg.MetadataValue.md(markdown_table(repeats, LISTED))},
    )


@_check("students", "students_ids_unique", description=(
    "sourced_id and student_id are each unique in students (compared exactly, as stored: ` TWIN-1 ` and `TWIN-1` "
    "are two sourced_ids)."))
def students_ids_unique(con, policy, pulls) -> dg.AssetCheckResult:
    repeats = repeated_student_ids(con)
    return dg.AssetCheckResult(
        passed=not repeats, severity=ERROR,
        metadata={"repeated_ids": len(repeats), "repeats": dg.MetadataValue.md(markdown_table(repeats, LISTED))},
    )


@_check("students", "students_buildings_exist", description="Every student's building_id exists in buildings.")
def students_buildings_exist(con, policy, pulls) -> dg.AssetCheckResult:
    orphans = students_without_building(con)
    return dg.AssetCheckResult(
        passed=not orphans, severity=ERROR,
        metadata={"orphans": len(orphans), "orphan_list": dg.MetadataValue.md(markdown_table(orphans, LISTED))},
    )


@_check("students", "one_student_per_person", additional_deps=["oneroster_users"], description=(
    "No person is several active students: active student records sharing a person key (userMasterIdentifier, "
    "else identifier) are one person sent once per school (Ed-Fi's OneRoster API does this). WARN when they are "
    "not merged; with ONEROSTER_PERSON_KEY (or ONEROSTER_PROVIDER=edfi) they are merged into one student and this "
    "passes."))
def one_student_per_person(con, policy, pulls) -> dg.AssetCheckResult:
    merged_by = current_person_key(con)
    people, records, sample = shared_person_keys(con, LISTED)
    if merged_by:
        description = (f"{people} person(s) sent as {records} student records were merged into one student each by "
                       f"{merged_by} (ONEROSTER_PERSON_KEY)")
    else:
        description = (f"{people} person(s) are {records} active student records sharing a person key (one record "
                       "per school?): each is a separate student. If the provider sends a person once per school, "
                       "set ONEROSTER_PERSON_KEY=identifier (or ONEROSTER_PROVIDER=edfi)" if people else
                       "every person key is held by one active student record")
    return dg.AssetCheckResult(
        passed=not people or bool(merged_by), severity=dg.AssetCheckSeverity.WARN, description=description,
        metadata={"people_in_several_records": people, "their_records": records, "merged_by": merged_by or "-",
                  "people": dg.MetadataValue.md(markdown_table(sample, LISTED))},
    )


# the pull_reports columns each check reads (and shows as metadata)
COUNT_COLUMNS = ("reported_total", "received", "kept", "duplicates", "rejected", "skipped", "complete",
                 "incomplete_reason", "endpoint")
COMPLETENESS_COLUMNS = ("run_id", "mode", "complete", "incomplete_reason", "reported_total", "received", "duplicates",
                        "pages", "endpoint")
REJECTION_COLUMNS = ("run_id", "mode", "reported_total", "received", "kept", "duplicates", "rejected",
                     "rejected_unidentified", "rejected_kept", "skipped", "received_by_file", "rejected_by_file",
                     "complete", "fetched_at")


@_check("oneroster_users", "fetched_count_matches_provider_total", description=(
    "REST: the number of students received equals the total the provider reported (X-Total-Count). "
    "CSV export: every row of users.csv was read (rows read, rejected) from a full (bulk) export."))
def fetched_count_matches_provider_total(con, policy, pulls) -> dg.AssetCheckResult:
    pull = pulls.row("students", COUNT_COLUMNS)
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


def _pull_complete_check(asset: str, collection: str) -> SyncCheck:
    @_check(asset, "pull_complete", description=(
        f"The latest {collection} pull saw the whole collection: the pager reached the end as the server said, "
        "X-Total-Count stayed the same and matches the records received, and no sourcedId repeated. An "
        "incomplete pull deactivates nothing by absence."))
    def pull_complete(con, policy, pulls) -> dg.AssetCheckResult:
        pull = pulls.row(collection, COMPLETENESS_COLUMNS)
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


def _rejections_check(asset: str, collection: str) -> SyncCheck:
    @_check(asset, "rejections_within_tolerance", description=(
        f"At most ONEROSTER_MAX_REJECTED_PCT (default 1) % of the latest {collection} pull's records were rejected "
        "(could not be used: no sourcedId, a bad status, role or type, a broken CSV line), overall and in "
        "each CSV file. Rejected records keep their existing rows, so a high share means the district's data "
        "is not being synced. The rejected records are in rejected_records."))
    def rejections_within_tolerance(con, policy: SyncPolicy, pulls) -> dg.AssetCheckResult:
        pull = pulls.row(collection, REJECTION_COLUMNS)
        if pull is None:
            return dg.AssetCheckResult(passed=False, severity=ERROR, description=f"no {collection} pull recorded yet")
        sample = pulls.rejected_sample(collection)
        received_by_file = json.loads(pull["received_by_file"] or "{}")
        rejected_by_file = json.loads(pull["rejected_by_file"] or "{}")
        max_pct = policy.max_rejected_pct
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


@_check("students", "students_landed", additional_deps=["oneroster_users"], description=(
    "The latest student pull landed students when the provider sent (or reported) any: zero students kept "
    "from a pull of records means every one was rejected or lacked the student role (e.g. a roles.csv that "
    "could not be read), never an empty district."))
def students_landed(con, policy, pulls) -> dg.AssetCheckResult:
    pull = pulls.row("students", REJECTION_COLUMNS)
    if pull is None:
        return dg.AssetCheckResult(passed=False, severity=ERROR, description="no student pull recorded yet")
    sample = pulls.rejected_sample("students")
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


def _evaluate_checks(checks: list[SyncCheck]):
    """The body of a step evaluating the selected ones of `checks` on one connection (per district)."""
    def evaluate_checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                        sync_policy: dg.ResourceParam[SyncPolicy]):
        selected = [check for check in checks if check.spec.key in context.selected_asset_check_keys]
        with warehouse.connect() as con:
            pulls = LatestPulls(con)
            results = [check.evaluate(con, sync_policy, pulls) for check in selected]
        yield from results  # after the connection closed: the event log writes do not hold the file

    return evaluate_checks


# the two check steps: (name, checks, description)
CHECK_STEPS = [
    ("org_and_building_checks",
     [orgs_pull_complete, orgs_rejections_within_tolerance, building_sis_matches_schools, building_sis_unique],
     ("The checks on oneroster_orgs and buildings: whether the org pull was complete and readable, whether "
      "buildings and active schools match, and whether each building_sis is one building's.")),
    ("student_checks",
     [fetched_count_matches_provider_total, students_pull_complete, users_rejections_within_tolerance,
      students_ids_unique, students_buildings_exist, students_landed, one_student_per_person],
     ("The checks on oneroster_users and students: the student pull's count, completeness and rejections, and "
      "the students table's ids, buildings, whether anything landed and whether a person is several students.")),
]


def build_checks(layout: DistrictLayout) -> list[dg.AssetChecksDefinition]:
    """The two check steps over `layout`'s districts, each subsettable (every check can run alone)."""
    return [dg.multi_asset_check(specs=[check.spec_over(layout.partitions) for check in checks], name=name,
                                 description=description, can_subset=True)(
                layout.per_district(_evaluate_checks(checks)))
            for name, checks, description in CHECK_STEPS]
