"""Applying staged pulls on an in-memory store: the completeness verdict, replace (keeping the rows of rejected but
identified records), merge, the org-pull guard and what is recorded."""

import pytest

from oneroster_pipeline.client.normalize import Rejection
from oneroster_pipeline.client.paging import PullReport
from oneroster_pipeline.warehouse.pulls import SyncHeld, apply_org_pull, completeness_verdict, last_org_pull_complete

from .staging import district_org, later, memory_store, org, rows, stage, student, sync_orgs, sync_students


@pytest.fixture
def con(tmp_path):
    with memory_store() as con:
        sync_orgs(con, tmp_path, [org("s1"), org("s2")])
        yield con


def report(**kw) -> PullReport:
    base = {"collection": "students", "endpoint": "/students", "page_size": 100, "reported_total": 3,
            "first_reported_total": 3, "received": 3, "complete": True, "incomplete_reason": None}
    return PullReport(**{**base, **kw})


def rejected(sourced_id, entity="user", location="users.csv line 4") -> Rejection:
    return Rejection(entity, sourced_id, location, "dateLastModified", "not a date: '15/06/2023'")


@pytest.mark.parametrize(("kw", "rejections", "reason"), [
    ({}, [], None),
    ({"reported_total": None, "first_reported_total": None}, [], None),  # a CSV export reports no total
    ({}, [rejected("u9")], None),  # identified: its row is kept, so the pull is still complete
    ({"complete": False, "incomplete_reason": "page 3 timed out"}, [], "page 3 timed out"),
    ({"complete": False, "incomplete_reason": None}, [], "the pull did not finish"),
    ({"first_reported_total": 2}, [], "X-Total-Count changed during the pull (2 -> 3)"),
    ({"duplicates": 1, "duplicate_sample": ["u1"]}, [], "1 sourcedId(s) repeated across pages (e.g. u1)"),
    ({"received": 2}, [], "received 2 records but the server reported 3"),
    ({}, [rejected(None)], "1 rejected record(s) could not be identified"),
    ({}, [rejected("role-1", entity="role", location="roles.csv line 2")], "1 rejected record(s) could not be identified"),
])
def test_the_completeness_verdict(kw, rejections, reason):
    verdict = completeness_verdict(report(**kw), rejections)
    assert verdict.complete is (reason is None)
    assert verdict.reason is None if reason is None else verdict.reason.startswith(reason)


def users(con) -> dict[str, str]:
    return dict(rows(con, "SELECT sourced_id, given_name FROM oneroster_users"))


def test_a_complete_full_pull_replaces_but_keeps_rows_of_rejected_identified_records(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1"), student("c", "s1")])
    outcome = sync_students(con, tmp_path, [student("a", "s1", given_name="Ann")], now=later(1),
                            rejections=[rejected("b")])
    assert users(con) == {"a": "Ann", "b": "Given b"}  # c is gone (absent); b's row kept as it was
    assert outcome.plan.deactivated == 1
    assert rows(con, "SELECT sourced_id, status FROM students ORDER BY 1") == [
        ("a", "active"), ("b", "active"), ("c", "inactive")]
    assert rows(con, "SELECT complete, rejected, rejected_kept, rejected_unidentified FROM pull_reports "
                     "ORDER BY fetched_at DESC LIMIT 1") == [(True, 1, 1, 0)]
    assert rows(con, "SELECT sourced_id, location, field FROM rejected_records") == [
        ("b", "users.csv line 4", "dateLastModified")]


def test_an_unidentified_rejection_turns_the_full_pull_into_a_merge(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1")])
    outcome = sync_students(con, tmp_path, [student("a", "s1", given_name="Ann")], now=later(1),
                            rejections=[rejected(None)])
    assert users(con) == {"a": "Ann", "b": "Given b"} and outcome.plan.deactivated == 0
    assert rows(con, "SELECT complete FROM pull_reports ORDER BY fetched_at DESC LIMIT 1") == [(False,)]


def test_a_delta_merges_by_sourced_id(con, tmp_path):
    sync_students(con, tmp_path, [student("a", "s1"), student("b", "s1")])
    sync_students(con, tmp_path, [student("b", "s2", given_name="Bea"), student("c", "s2")], now=later(1),
                  mode="delta")
    assert users(con) == {"a": "Given a", "b": "Bea", "c": "Given c"}
    assert rows(con, "SELECT mode, modified_since IS NOT NULL FROM pull_reports WHERE collection = 'students' "
                     "ORDER BY fetched_at") == [("full", False), ("delta", True)]


def test_an_org_pull_without_active_schools_is_held_unless_approved(con, tmp_path):
    pull = stage(tmp_path, "orgs", [district_org(), org("s1", status="tobedeleted")])
    with pytest.raises(SyncHeld, match="no active school while 2 buildings are active"):
        apply_org_pull(con, pull, "run", later(1))
    assert rows(con, "SELECT count(*) FROM oneroster_orgs WHERE type = 'school' AND status = 'active'") == [(2,)]
    assert apply_org_pull(con, pull, "run", later(2), approved=True) == 0
    assert rows(con, "SELECT count(*) FROM oneroster_orgs WHERE type = 'school'") == [(1,)]


def test_an_org_pull_commits_with_the_record_its_caller_writes_before_commit(con, tmp_path):
    pull = stage(tmp_path, "orgs", [district_org(), org("s1"), org("s3")])
    before = rows(con, "SELECT sourced_id FROM oneroster_orgs ORDER BY 1")

    def record_then_fail():
        con.execute("INSERT INTO sync_runs (run_id, job_name) VALUES ('run', 'full_sync')")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        apply_org_pull(con, pull, "run", later(1), before_commit=record_then_fail)
    assert rows(con, "SELECT sourced_id FROM oneroster_orgs ORDER BY 1") == before  # neither the pull nor its row
    assert rows(con, "SELECT count(*) FROM sync_runs") == [(0,)]
    apply_org_pull(con, pull, "run", later(2), before_commit=lambda: con.execute(
        "INSERT INTO sync_runs (run_id, job_name) VALUES ('run', 'full_sync')"))
    assert rows(con, "SELECT sourced_id FROM oneroster_orgs WHERE type = 'school' ORDER BY 1") == [("s1",), ("s3",)]
    assert rows(con, "SELECT run_id FROM sync_runs") == [("run",)]


def test_the_last_org_pull_decides_whether_vanished_schools_may_be_flagged(con, tmp_path):
    assert last_org_pull_complete(con)
    apply_org_pull(con, stage(tmp_path, "orgs", [district_org(), org("s1")], complete=False), "run", later(1))
    assert not last_org_pull_complete(con)
    assert rows(con, "SELECT count(*) FROM oneroster_orgs WHERE sourced_id = 's2'") == [(1,)]  # merged, kept
