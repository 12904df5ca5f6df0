"""The hold policy on an in-memory store: each threshold, what still applies, the approval hash bound to the held
diff, and its expiry."""

import pytest

from oneroster_pipeline.warehouse.policy import HoldPolicy
from oneroster_pipeline.warehouse.pulls import SyncHeld

from .staging import LENIENT, later, memory_store, org, rows, student, sync_orgs, sync_students

# 10 students in s1, 10 in s2
CLASS = [student(f"a{i:02d}", "s1") for i in range(10)] + [student(f"b{i:02d}", "s2") for i in range(10)]


def policy(**kw) -> HoldPolicy:
    return HoldPolicy(**{**LENIENT.__dict__, **kw})


@pytest.fixture
def con(tmp_path):
    with memory_store() as con:
        sync_orgs(con, tmp_path, [org("s1"), org("s2")])
        sync_students(con, tmp_path, CLASS)
        yield con


def active(con) -> int:
    return rows(con, "SELECT count(*) FROM students WHERE deactivated_at IS NULL")[0][0]


def without(*prefixes_and_counts) -> list[dict]:
    """CLASS minus the first n students of each prefix: ("a", 3) drops a00..a02."""
    drop = {f"{p}{i:02d}" for p, n in prefixes_and_counts for i in range(n)}
    return [s for s in CLASS if s["sourced_id"] not in drop]


@pytest.mark.parametrize(("limits", "held"), [
    ({"max_deactivate": 2}, True),  # 3 > 2 students
    ({"max_deactivate": 3}, False),
    ({"max_deactivate_pct": 10.0}, True),  # 15% > 10% of 20 active
    ({"max_deactivate_pct": 15.0}, False),
    ({"building_max_deactivate": 2}, True),  # 3 in s1 > 2
    ({"building_max_deactivate_pct": 25.0}, True),  # 30% of s1's 10 > 25%
    ({"building_max_deactivate_pct": 30.0}, False),
])
def test_deactivations_above_a_threshold_are_held_and_the_rest_applies(con, tmp_path, limits, held):
    new = student("c00", "s2")
    changed = {**CLASS[15], "given_name": "Renamed"}
    users = [changed if u["sourced_id"] == changed["sourced_id"] else u for u in without(("a", 3))] + [new]
    outcome = sync_students(con, tmp_path, users, now=later(1), policy=policy(**limits))
    assert outcome.outcome == ("partially_held" if held else "applied")
    assert active(con) == (21 if held else 18)  # 20 + 1 added, minus the 3 deactivations unless held
    assert rows(con, "SELECT given_name FROM students WHERE sourced_id = 'b05'") == [("Renamed",)]
    held_rows = rows(con, "SELECT sourced_id, change FROM sync_diffs WHERE disposition = 'held' ORDER BY 1")
    assert held_rows == ([("a00", "deactivate"), ("a01", "deactivate"), ("a02", "deactivate")] if held else [])
    if held:
        assert rows(con, "SELECT scope, held_changes, diff_hash FROM sync_holds") == [
            ("deactivations", 3, outcome.decision.diff_hash)]


def test_updates_above_max_update_pct_hold_everything(con, tmp_path):
    users = [{**u, "email": u["email"].upper()} for u in CLASS[:16]] + CLASS[16:]  # 16 of 20 updated: 80%
    with pytest.raises(SyncHeld, match="16 of 20 active students .* would be updated") as raised:
        sync_students(con, tmp_path, users + [student("c00", "s1")], now=later(1), policy=policy(max_update_pct=75.0))
    assert raised.value.diff_hash
    assert active(con) == 20 and rows(con, "SELECT count(*) FROM students WHERE email LIKE 'A%'") == [(0,)]
    assert rows(con, "SELECT scope FROM sync_holds") == [("all",)]
    assert rows(con, "SELECT count(*) FROM sync_diffs WHERE disposition = 'held' AND change = 'insert'") == [(1,)]


def test_a_full_pull_of_zero_students_holds_everything(con, tmp_path):
    with pytest.raises(SyncHeld, match="zero students while 20 are active"):
        sync_students(con, tmp_path, [], now=later(1))
    assert active(con) == 20


def test_the_approval_applies_exactly_the_held_diff(con, tmp_path):
    strict = policy(max_deactivate=2)
    first = sync_students(con, tmp_path, without(("a", 3)), now=later(1), policy=strict)
    digest = first.decision.diff_hash
    assert first.outcome == "partially_held" and active(con) == 20
    # a wrong hash does not approve
    assert sync_students(con, tmp_path, without(("a", 3)), now=later(2), policy=strict,
                         approved_hash="0" * 16).outcome == "partially_held"
    # the provider's data moved since: a fourth absence is another diff, held again under a new hash
    moved = sync_students(con, tmp_path, without(("a", 4)), now=later(3), policy=strict, approved_hash=digest)
    assert moved.outcome == "partially_held" and moved.decision.diff_hash != digest and active(con) == 20
    # the same diff again, with its hash: applied
    approved = sync_students(con, tmp_path, without(("a", 3)), now=later(4), policy=strict, approved_hash=digest)
    assert approved.outcome == "applied" and approved.decision.approved and active(con) == 17


def test_an_approval_expires_after_approval_hours(con, tmp_path):
    strict = policy(max_deactivate=2, approval_hours=24.0)
    digest = sync_students(con, tmp_path, without(("a", 3)), now=later(1), policy=strict).decision.diff_hash
    late = sync_students(con, tmp_path, without(("a", 3)), now=later(1 + 24.5), policy=strict,
                         approved_hash=f" {digest} ")
    # the late run holds again (recording a fresh hold of the same diff), so the hash is valid once more
    assert late.outcome == "partially_held" and active(con) == 20
    retry = sync_students(con, tmp_path, without(("a", 3)), now=later(1 + 25), policy=strict, approved_hash=digest)
    assert retry.outcome == "applied" and active(con) == 17
