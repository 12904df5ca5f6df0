"""Provider change without losing identity (issue 6), run through Dagster against two demo providers over HTTP.

The district moves from a OneRoster 1.1 OAuth2 "Infinite Campus" connection (role-prefixed student ids) to a 1.2
OAuth1 "ClassLink" connection whose sourcedIds are all different (`DemoSettings(id_namespace=...)`): schools
match by `identifier`, students by `identifier`, `username` or `email`, and what cannot be matched is reported.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oneroster_pipeline.definitions import build_definitions
from oneroster_pipeline.defs.provider_switch import partitions
from oneroster_pipeline.defs.provider_switch.partitions import PROVIDER_CONNECTIONS
from oneroster_pipeline.defs.resources import OneRosterResource, default_resources
from oneroster_pipeline.defs.runs import APPROVE_SWITCH_TAG
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings
from oneroster_pipeline.warehouse.policy import SwitchPolicy
from oneroster_pipeline.warehouse.provider_switch import COUNTS

from .sync_harness import CLIENT_ID, CLIENT_SECRET, SyncHarness, check_evaluation, oneroster_for

SHAPE = DistrictShape(schools=4, students=300, seed=23)
CONTENT = "sourced_id, building_sis, given_name, family_name, username, email, identifier, grade, enabled_user, status"


def _serve(**settings) -> DemoProvider:
    return DemoProvider(SHAPE, DemoSettings(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **settings))


@pytest.fixture
def infinite_campus():
    with _serve(persona="infinite_campus", auth="oauth2") as provider:
        yield provider


@pytest.fixture
def classlink():
    with _serve(persona="classlink", auth="oauth1", id_namespace="classlink-district") as provider:
        yield provider


def _connection(demo: DemoProvider, version: str, provider: str, **overrides) -> OneRosterResource:
    fields = oneroster_for(demo, version, **overrides).model_dump()
    return OneRosterResource(**{**fields, "provider": provider})


def ic_connection(demo: DemoProvider, version: str = "1.1") -> OneRosterResource:
    return _connection(demo, version, "infinite_campus", token_url=demo.token_url + "?appName=demo")


def classlink_connection(demo: DemoProvider) -> OneRosterResource:
    return _connection(demo, "1.2", "classlink", auth="oauth1", token_url=None)


def reconnect(harness: SyncHarness, oneroster, **switch_policy) -> None:
    """The data engineer changes the ONEROSTER_* variables (same DuckDB file, same Dagster instance)."""
    harness.resources["oneroster"] = oneroster
    if switch_policy:
        harness.resources["sync_policy"] = dataclasses.replace(harness.resources["sync_policy"],
                                                               switch=SwitchPolicy(**switch_policy))
    harness.defs = build_definitions(harness.resources)


def failure_message(result) -> str:
    return " ".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


def log_messages(harness: SyncHarness, run_id: str) -> list[str]:
    """The run's log lines (context.log), as the UI's run page and the command line show them."""
    return [entry.user_message for entry in harness.instance.all_logs(run_id) if not entry.is_dagster_event]


def snapshot(harness: SyncHarness) -> tuple:
    return (harness.rows("SELECT * FROM buildings ORDER BY building_id"),
            harness.rows("SELECT * FROM students ORDER BY student_id"),
            harness.rows("SELECT * FROM student_buildings ORDER BY ALL"),
            harness.rows("SELECT * FROM ignored_students ORDER BY ALL"))


def test_daily_sync_refuses_a_connection_that_was_not_switched(infinite_campus, classlink, tmp_path):
    harness = SyncHarness(tmp_path, ic_connection(infinite_campus))
    assert harness.run("full_sync").success
    old_id, status = harness.rows("SELECT connection_id, status FROM provider_connections")[0]
    assert status == "active" and old_id.startswith("infinite_campus-v1p1-")
    assert old_id in harness.instance.get_dynamic_partitions(PROVIDER_CONNECTIONS.name)
    before = snapshot(harness)

    reconnect(harness, classlink_connection(classlink))
    for job in ("student_sync", "building_sync"):
        result = harness.run(job, raise_on_error=False)
        assert not result.success
        message = failure_message(result)
        assert old_id in message and "classlink-v1p2-" in message and "provider_switch" in message, message
        assert "Changing provider" in message
    assert snapshot(harness) == before
    assert harness.rows("SELECT connection_id, status FROM provider_connections") == [(old_id, "active")]
    assert not classlink.request_log  # refused before any request to the new provider

    reconnect(harness, ic_connection(infinite_campus))  # going back to the configured connection works again
    assert harness.run("student_sync").success


def test_switch_infinite_campus_1_1_to_classlink_1_2_keeps_every_internal_id(infinite_campus, classlink, tmp_path):
    harness = SyncHarness(tmp_path, ic_connection(infinite_campus))
    assert harness.run("full_sync").success
    buildings_before = dict(harness.rows("SELECT building_id, name FROM buildings"))
    ids_before = dict(harness.rows("SELECT identifier, student_id FROM students"))
    ids_of = dict(harness.rows("SELECT sourced_id, student_id FROM students"))
    assert all(s.startswith("s") for (s,) in harness.rows("SELECT sourced_id FROM students"))  # IC 1.1 ids

    # the new provider knows some students differently: by username only, by email only, or not at all
    regular = classlink.district.students_in_category("regular", limit=4)
    by_username, by_email, unknown, gone = regular
    classlink.district.update_student(by_username, identifier="CL-1")
    classlink.district.update_student(by_email, identifier="CL-2", username="renamed.2")
    classlink.district.update_student(unknown, identifier="CL-3", username="renamed.3", email="new3@example.org")
    classlink.district.remove_student(gone)
    # person i of the district: "s" + its IC 1.2 id in IC 1.1, a different id at ClassLink
    same_person = {"s" + infinite_campus.district.guid("student", i): classlink.district.guid("student", i)
                   for i in range(SHAPE.students)}
    old_of = {new: old for old, new in same_person.items()}

    reconnect(harness, classlink_connection(classlink))
    result = harness.run("provider_switch")
    assert result.success
    for check in ("crosswalk_ambiguous", "crosswalk_unmatched"):
        assert check_evaluation(result, check).passed, check
    switch_id = result.run_id
    new_id = harness.scalar("SELECT connection_id FROM provider_connections WHERE status = 'active'")
    assert new_id.startswith("classlink-v1p2-")
    assert harness.rows("SELECT status FROM provider_connections ORDER BY first_seen_at") == [("retired",), ("active",)]

    # every building keeps its id and name, and now carries the ClassLink school id; the rule is named
    assert dict(harness.rows("SELECT building_id, name FROM buildings")) == buildings_before
    active_schools = {o["sourcedId"] for o in classlink.district.orgs() if o["type"] == "school" and o["status"] == "active"}
    assert {b for (b,) in harness.rows("SELECT building_sis FROM buildings")} == active_schools
    assert harness.rows("SELECT rule, status, count(*) FROM id_crosswalk WHERE entity = 'building' AND old_id "
                        "IS NOT NULL GROUP BY ALL") == [("identifier", "matched", len(buildings_before))]

    # every student keeps its id; the crosswalk names the rule of each
    rules = dict(harness.rows("""SELECT old_id, coalesce(rule, status) FROM id_crosswalk
                                 WHERE switch_id = ? AND entity = 'student' AND old_id IS NOT NULL""", [switch_id]))
    expected_rule = {old: {by_username: "username", by_email: "email", unknown: "unmatched",
                           gone: "unmatched"}.get(new, "identifier") for old, new in same_person.items()}
    assert rules == expected_rule
    assert dict(harness.rows("SELECT identifier, student_id FROM students WHERE identifier NOT LIKE 'CL-%'")) == \
        ids_before  # student fields are not rewritten by the switch: identifiers are still the old ones
    students = harness.rows("SELECT student_id, sourced_id FROM students")
    assert len(students) == len(ids_before) and len({s for _, s in students}) == len(students)
    moved = dict(harness.rows("SELECT old_id, new_id FROM id_history WHERE entity = 'student'"))
    assert moved == {old: new for old, new in same_person.items() if new not in (unknown, gone)}
    registered = dict(harness.rows("SELECT sourced_id, student_id FROM students"))
    assert {moved.get(old, old) for old in ids_of} == set(registered)
    assert all(registered[moved.get(old, old)] == student_id for old, student_id in ids_of.items())
    old_ids = dict(harness.rows("SELECT sourced_id, student_id FROM student_sourced_ids WHERE NOT is_current"))
    assert old_ids == {old: ids_of[old] for old in moved if old in ids_of}  # old ids still resolve to the student
    unmatched_new = harness.rows("SELECT new_id FROM id_crosswalk WHERE switch_id = ? AND entity = 'student' AND "
                                 "status = 'unmatched' AND old_id IS NULL", [switch_id])
    assert unmatched_new == [(unknown,)]  # reported, not merged onto anyone
    assert harness.scalar("SELECT count(*) FROM students WHERE sourced_id = ?", [unknown]) == 0

    # the backfill over the new connection's partition rebuilds the derived tables from the stored raw pull
    assert harness.instance.get_dynamic_partitions(PROVIDER_CONNECTIONS.name) == [new_id]  # the only one offered
    rebuild = harness.defs.resolve_job_def("rebuild_student_tables").execute_in_process(
        instance=harness.instance, partition_key=new_id)
    assert rebuild.success
    rows = dict(harness.rows("SELECT sourced_id, student_id FROM students"))
    assert rows[unknown] > max(ids_before.values())  # arrives as a new student: a new id, nobody duplicated
    assert len(rows) == len(ids_before) + 1
    inactive = {s for (s,) in harness.rows("SELECT sourced_id FROM students WHERE status = 'inactive'")}
    assert inactive == {old_of[unknown], old_of[gone]}  # kept, inactive; nothing deleted
    assert set(rows.values()) >= set(ids_before.values())

    # the rebuilt tables equal what a fresh sync against the new connection gives, for the new connection's records
    fresh = SyncHarness(tmp_path / "fresh", classlink_connection(classlink))
    assert fresh.run("full_sync").success
    where = "WHERE sourced_id IN (SELECT sourced_id FROM oneroster_users)"
    assert harness.rows(f"SELECT {CONTENT} FROM students {where} ORDER BY sourced_id") == \
        fresh.rows(f"SELECT {CONTENT} FROM students {where} ORDER BY sourced_id")
    assert harness.rows("SELECT sourced_id, reason FROM ignored_students ORDER BY ALL") == \
        fresh.rows("SELECT sourced_id, reason FROM ignored_students ORDER BY ALL")
    assert harness.rows("SELECT sourced_id, building_sis, is_primary FROM student_buildings "
                        f"{where} ORDER BY ALL") == \
        fresh.rows(f"SELECT sourced_id, building_sis, is_primary FROM student_buildings {where} ORDER BY ALL")

    # the daily sync then runs clean against the new connection
    after_rebuild = harness.rows(f"SELECT student_id, {CONTENT} FROM students ORDER BY student_id")
    daily = harness.run("student_sync")
    assert daily.success
    for check in ("mass_change_guard", "building_sis_matches_schools", "students_ids_unique"):
        assert check_evaluation(daily, check).passed, check
    assert harness.rows(f"SELECT student_id, {CONTENT} FROM students ORDER BY student_id") == after_rebuild
    outcome = harness.rows("SELECT outcome, students_created, students_updated, students_deactivated FROM sync_runs "
                           "WHERE run_id = ?", [daily.run_id])
    assert outcome == [("applied", 0, 0, 0)]
    assert harness.run("building_sync").success
    assert dict(harness.rows("SELECT building_id, name FROM buildings")) == buildings_before


def test_the_preview_counts_add_up_are_explained_and_are_in_the_log(infinite_campus, classlink, tmp_path):
    """Students match by three rules, and the ignored records (fetched, no school) by identifier: each count is its
    own group's (the ignored records' identifier count used to overwrite the students' in `student_rules`, and
    `students_matched` counted ignored records too, so it exceeded `students_total`)."""
    harness = SyncHarness(tmp_path, ic_connection(infinite_campus))
    assert harness.run("full_sync").success
    students = harness.scalar("SELECT count(*) FROM students")
    buildings = harness.scalar("SELECT count(*) FROM buildings")
    ignored = harness.scalar("SELECT count(*) FROM oneroster_users u ANTI JOIN students s USING (sourced_id)")
    schools = sum(1 for o in classlink.district.orgs() if o["type"] == "school")
    assert ignored > 0 and schools == buildings + 1  # a closed (tobedeleted) school has no building
    by_username, by_email, unknown = classlink.district.students_in_category("regular", limit=3)
    classlink.district.update_student(by_username, identifier="CL-1")
    classlink.district.update_student(by_email, identifier="CL-2", username="renamed.2")
    classlink.district.update_student(unknown, identifier="CL-3", username="renamed.3", email="new3@example.org")

    reconnect(harness, classlink_connection(classlink))
    preview = harness.run("provider_switch_preview")
    [event] = preview.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert {name: metadata[name].value for name in COUNTS} == {
        "buildings_total": buildings, "buildings_matched": buildings, "buildings_ambiguous": 0,
        "buildings_unmatched": 0, "schools_pulled": schools, "schools_ambiguous": 0, "schools_unmatched": 1,
        "students_total": students, "students_matched": students - 1, "students_ambiguous": 0,
        "students_unmatched_old": 1,
        "ignored_total": ignored, "ignored_matched": ignored, "ignored_ambiguous": 0, "ignored_unmatched_old": 0,
        "students_pulled": students + ignored, "students_ambiguous_new": 0, "students_unmatched_new": 1,
    }
    assert metadata["building_rules"].value == {"identifier": buildings}
    assert metadata["student_rules"].value == {"identifier": students - 3, "username": 1, "email": 1}
    assert metadata["ignored_rules"].value == {"identifier": ignored}
    table = metadata["counts"].value  # every count with what it counts, next to the numbers
    assert all(f"| {name} | {metadata[name].value} | {meaning} |" in table for name, meaning in COUNTS.items())
    description = harness.defs.resolve_assets_def("id_crosswalk").specs_by_key[dg.AssetKey("id_crosswalk")].description
    assert all(f"`{name}`: {meaning}" in description for name, meaning in COUNTS.items())
    # the same counts in one line of the run's log (what `dg launch --job provider_switch_preview` prints)
    [line] = [m for m in log_messages(harness, preview.run_id) if m.startswith("crosswalk ")]
    assert line == (
        f"crosswalk {preview.run_id} ready: buildings {buildings} = {buildings} matched (by identifier {buildings}) "
        f"+ 0 ambiguous + 0 unmatched; new schools {schools} = {buildings} matched + 0 ambiguous + 1 unmatched; "
        f"students {students} = {students - 1} matched (by identifier {students - 3}, email 1, username 1) "
        f"+ 0 ambiguous + 1 unmatched; ignored records {ignored} = {ignored} matched + 0 ambiguous + 0 unmatched; "
        f"new student records {students + ignored} = {students + ignored - 1} matched + 0 ambiguous + 1 unmatched")


def test_blocked_switch_waits_for_approval_infinite_campus_1_1_to_1_2(infinite_campus, tmp_path):
    """The IC upgrade: students match by metadata.ic.legacysourceId, schools keep their sourcedId."""
    harness = SyncHarness(tmp_path, ic_connection(infinite_campus, "1.1"))
    assert harness.run("full_sync").success
    gone = infinite_campus.district.students_in_category("regular", limit=1)[0]
    infinite_campus.district.remove_student(gone)
    before = snapshot(harness)

    reconnect(harness, ic_connection(infinite_campus, "1.2"), max_unmatched_pct=0.0)
    held = harness.run("provider_switch", raise_on_error=False)
    assert not held.success
    evaluation = check_evaluation(held, "crosswalk_unmatched")
    assert not evaluation.passed and evaluation.metadata["old_ids"].value == ["s" + gone]
    assert check_evaluation(held, "crosswalk_ambiguous").passed
    assert snapshot(harness) == before  # nothing applied
    assert harness.scalar("SELECT status FROM provider_switches") == "blocked"
    assert not harness.run("student_sync", raise_on_error=False).success  # still refused: not switched

    approved = harness.run("provider_switch", tags={APPROVE_SWITCH_TAG: "true"})
    assert approved.success
    rules = dict(harness.rows("""SELECT entity || ':' || coalesce(rule, status), count(*) FROM id_crosswalk
                                 WHERE switch_id = ? AND old_id IS NOT NULL GROUP BY 1""", [approved.run_id]))
    assert rules == {"building:sourced_id": 4, "student:legacy_sourced_id": rules["student:legacy_sourced_id"],
                     "student:unmatched": 1}
    assert harness.rows("SELECT sourced_id FROM students WHERE sourced_id LIKE 's%'") == [("s" + gone,)]
    assert harness.scalar("SELECT count(*) FROM students") == len(before[1])
    assert [r[0] for r in harness.rows("SELECT student_id FROM students ORDER BY 1")] == [r[0] for r in before[1]]
    assert harness.run("student_sync").success
    assert harness.scalar("SELECT status FROM students WHERE sourced_id = ?", ["s" + gone]) == "inactive"

    # the rebuild offers the active connection only: the switch removed the retired connection's partition
    old_id = harness.scalar("SELECT connection_id FROM provider_connections WHERE status = 'retired'")
    new_id = harness.scalar("SELECT connection_id FROM provider_connections WHERE status = 'active'")
    assert harness.instance.get_dynamic_partitions(PROVIDER_CONNECTIONS.name) == [new_id]
    # a run for the retired connection (a backfill requested before the switch) does nothing, without failing or
    # alerting, and names the partition to rebuild
    harness.instance.add_dynamic_partitions(PROVIDER_CONNECTIONS.name, [old_id])
    before = snapshot(harness)
    retired = harness.defs.resolve_job_def("rebuild_student_tables").execute_in_process(
        instance=harness.instance, partition_key=old_id)
    assert retired.success and not retired.get_asset_materialization_events()
    [warning] = [m for m in log_messages(harness, retired.run_id) if "Nothing rebuilt" in m]
    assert f"connection {old_id} was retired at" in warning and \
        f"dg launch --job rebuild_student_tables --partition {new_id}" in warning, warning
    assert snapshot(harness) == before
    assert harness.scalar("SELECT count(*) FROM sync_alerts WHERE run_id = ?", [retired.run_id]) == 0
    # the next sync in a new process (as after an upgrade from a version that kept retired partitions) removes it
    partitions._ONLY_PARTITION.clear()
    assert harness.run("student_sync").success
    assert harness.instance.get_dynamic_partitions(PROVIDER_CONNECTIONS.name) == [new_id]
    # the active connection's partition rebuilds, and its metadata names the connection
    rebuilt = harness.defs.resolve_job_def("rebuild_student_tables").execute_in_process(
        instance=harness.instance, partition_key=new_id)
    [event] = rebuilt.get_asset_materialization_events()
    label = harness.scalar("SELECT label FROM provider_connections WHERE status = 'active'")
    assert event.materialization.metadata["connection"].value == f"{label} [{new_id}]"


def test_rebuild_is_a_real_backfill_run_by_the_backfill_daemon(infinite_campus, classlink, tmp_path, monkeypatch):
    """The UI's 'Launch backfill': a PartitionBackfill on the instance, executed by the daemon's backfill loop."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.utils import make_new_backfill_id
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    launcher = {"module": "dagster._core.launcher.sync_in_memory_run_launcher", "class": "SyncInMemoryRunLauncher"}
    coordinator = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}  # launch at once
    with dg.instance_for_test(overrides={"run_launcher": launcher, "run_coordinator": coordinator}) as instance:
        harness = SyncHarness(tmp_path, ic_connection(infinite_campus))
        harness.instance = instance
        assert harness.run("full_sync").success
        reconnect(harness, classlink_connection(classlink))
        assert harness.run("provider_switch").success
        new_id = harness.scalar("SELECT connection_id FROM provider_connections WHERE status = 'active'")
        expected = snapshot(harness)[1:]
        with duckdb.connect(harness.database) as con:  # lose the derived tables' links: the backfill restores them
            con.execute("DELETE FROM student_buildings; DELETE FROM ignored_students")

        # the code location the daemon loads reads the same variables a deployment sets
        settings = harness.resources["oneroster"]
        for variable, value in {
            "ONEROSTER_PROVIDER": "classlink", "ONEROSTER_BASE_URL": settings.base_url, "ONEROSTER_AUTH": "oauth1",
            "ONEROSTER_CLIENT_ID": CLIENT_ID, "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET,
            "ONEROSTER_DUCKDB_PATH": harness.database,
        }.items():
            monkeypatch.setenv(variable, value)
        backfill_id = make_new_backfill_id()
        instance.add_backfill(PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id, asset_graph=harness.defs.resolve_asset_graph(), partition_names=[new_id],
            asset_selection=[dg.AssetKey("student_tables_by_connection")], backfill_timestamp=time.time(), tags={},
            dynamic_partitions_store=instance, all_partitions=False, title="rebuild after provider switch",
            description=None, run_config=None))
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(python_file=str(Path(__file__).with_name("backfill_location.py")), attribute="defs",
                                 working_directory=str(Path(__file__).parents[2])),
            location_name="oneroster_pipeline")
        with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as workspace:
            for _ in range(6):
                errors = [e for e in execute_backfill_iteration(workspace, _backfill_logger()) if e]
                assert not errors, errors
                if instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED:
                    break
        assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert [(r.tags["dagster/partition"], r.status) for r in runs] == [(new_id, dg.DagsterRunStatus.SUCCESS)]
        students, links, ignored = snapshot(harness)[1:]
        assert students == expected[0]  # the switch left nothing for the rebuild to change in students
        assert links == expected[1] and links  # the lost links are back
        assert [(r[0], r[4]) for r in ignored] == [(r[0], r[4]) for r in expected[2]] and ignored
        new_orgs = {o["sourcedId"] for o in classlink.district.orgs()}
        assert all(set(r[3]) <= new_orgs for r in ignored)  # recomputed from the new connection's raw pull


def _backfill_logger() -> logging.Logger:
    logger = logging.getLogger("oneroster_backfill_test")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.setLevel(logging.DEBUG)
    return logger


def test_connection_identity_is_stable_and_never_holds_a_credential(tmp_path):
    from oneroster_pipeline.client.settings import ConnectionSettings
    from oneroster_pipeline.warehouse.provider_switch import connection_of

    demo = connection_of(ConnectionSettings.from_env({}))
    assert demo == connection_of(ConnectionSettings.from_env({})) and demo.label == "demo (built-in demo district)"
    rest = connection_of(ConnectionSettings.from_env({
        "ONEROSTER_PROVIDER": "classlink", "ONEROSTER_BASE_URL": "https://cl.example/ims/oneroster/v1p1",
        "ONEROSTER_CLIENT_ID": "key", "ONEROSTER_CLIENT_SECRET": "top-secret"}))
    assert rest.connection_id.startswith("classlink-v1p1-") and rest.version == "1.1"
    assert "top-secret" not in repr(rest) and "key" not in rest.label and "cl.example" in rest.label
    (tmp_path / "2026-11-28").mkdir()
    (tmp_path / "2026-11-29").mkdir()
    dated = [connection_of(ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "csv",
                                                        "ONEROSTER_CSV_PATH": str(tmp_path / day)}))
             for day in ("2026-11-28", "2026-11-29")]
    assert dated[0] == dated[1]  # dated exports dropped into one folder are one connection


def test_switch_policy_settings_fail_at_load_naming_the_variable(monkeypatch):
    monkeypatch.setenv("ONEROSTER_SWITCH_STUDENT_MATCH", "identifier,ssn")
    with pytest.raises(ValueError, match="ONEROSTER_SWITCH_STUDENT_MATCH"):
        default_resources()
    monkeypatch.setenv("ONEROSTER_SWITCH_STUDENT_MATCH", "email, identifier")
    monkeypatch.setenv("ONEROSTER_SWITCH_MAX_UNMATCHED_PCT", "lots")
    with pytest.raises(ValueError, match="ONEROSTER_SWITCH_MAX_UNMATCHED_PCT"):
        default_resources()
    monkeypatch.setenv("ONEROSTER_SWITCH_MAX_UNMATCHED_PCT", "2.5")
    policy = default_resources()["sync_policy"].switch
    assert policy.student_rules == ("email", "identifier") and policy.max_unmatched_pct == 2.5


def test_a_crosswalk_older_than_the_last_sync_is_not_applied(infinite_campus, classlink, tmp_path):
    harness = SyncHarness(tmp_path, ic_connection(infinite_campus))
    assert harness.run("full_sync").success
    reconnect(harness, classlink_connection(classlink))
    assert harness.run("provider_switch_preview").success  # review only: nothing applied
    assert harness.scalar("SELECT status FROM provider_connections WHERE connection_id LIKE 'classlink%'") == \
        "candidate"
    reconnect(harness, ic_connection(infinite_campus))
    assert harness.run("student_sync").success  # the old connection still syncs; the crosswalk is now stale
    before = snapshot(harness)
    reconnect(harness, classlink_connection(classlink))
    stale = harness.defs.resolve_job_def("__ASSET_JOB").get_subset(
        asset_selection={dg.AssetKey("provider_connections")}).execute_in_process(
        instance=harness.instance, raise_on_error=False)
    assert not stale.success and "build it again" in failure_message(stale)
    assert snapshot(harness) == before


def test_ambiguous_matches_block_the_switch_and_are_listed(infinite_campus, classlink, tmp_path):
    harness = SyncHarness(tmp_path, ic_connection(infinite_campus, "1.2"))
    assert harness.run("full_sync").success
    first, second = classlink.district.students_in_category("regular", limit=2)
    shared = classlink.district.find_user(first)["identifier"]
    classlink.district.update_student(second, identifier=shared)  # two new records claim one SIS id
    before = snapshot(harness)

    reconnect(harness, classlink_connection(classlink), max_unmatched_pct=50.0)
    result = harness.run("provider_switch", raise_on_error=False)
    assert not result.success and snapshot(harness) == before
    evaluation = check_evaluation(result, "crosswalk_ambiguous")
    old_first = infinite_campus.district.guid("student", classlink.district.student_index(first))
    assert not evaluation.passed and evaluation.metadata["old_ids"].value == [old_first]
    rows = harness.rows("SELECT new_id, rule, detail FROM id_crosswalk WHERE status = 'ambiguous' ORDER BY new_id")
    assert sorted(r[0] for r in rows) == sorted([first, second])
    assert all(r[1] == "identifier" and r[2] == "2 new records share this identifier" for r in rows)
    # the second person's own record was claimed ambiguously, so no weaker rule (username) pairs it
    old_second = infinite_campus.district.guid("student", classlink.district.student_index(second))
    assert harness.rows("SELECT status FROM id_crosswalk WHERE old_id = ?", [old_second]) == [("unmatched",)]
