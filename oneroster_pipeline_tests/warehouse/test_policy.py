"""`SyncPolicy.from_env`: its defaults, every variable it reads, and errors that name the variable."""

from datetime import date

import pytest

from oneroster_pipeline.warehouse.policy import (
    DEFAULT_SCHOOL_RULES,
    STUDENT_RULES,
    HoldPolicy,
    SwitchPolicy,
    SyncPolicy,
    blackout_containing,
    parse_blackout_dates,
    parse_rules,
)


def test_defaults_when_nothing_is_set():
    policy = SyncPolicy.from_env({})
    assert policy == SyncPolicy.from_env({name: " " for name in EVERY_VARIABLE}) == SyncPolicy()
    assert policy.hold == HoldPolicy(max_deactivate_pct=10.0, max_deactivate=500, building_max_deactivate_pct=25.0,
                                     building_max_deactivate=200, max_update_pct=75.0, approval_hours=24.0)
    assert policy.switch == SwitchPolicy(school_rules=("sourced_id", "identifier", "name"),
                                         student_rules=STUDENT_RULES, max_unmatched_pct=5.0, max_ambiguous=0)
    assert (policy.full_sync_every_days, policy.delta_overlap_minutes, policy.max_rejected_pct) == (7, 60, 1.0)
    assert (policy.blackout_dates, policy.buildings_csv) == (None, None)


EVERY_VARIABLE = {
    "ONEROSTER_MAX_DEACTIVATE_PCT": ("2.5", lambda p: p.hold.max_deactivate_pct, 2.5),
    "ONEROSTER_MAX_DEACTIVATE": ("7", lambda p: p.hold.max_deactivate, 7),
    "ONEROSTER_BUILDING_MAX_DEACTIVATE_PCT": ("40", lambda p: p.hold.building_max_deactivate_pct, 40.0),
    "ONEROSTER_BUILDING_MAX_DEACTIVATE": ("9", lambda p: p.hold.building_max_deactivate, 9),
    "ONEROSTER_MAX_UPDATE_PCT": ("90", lambda p: p.hold.max_update_pct, 90.0),
    "ONEROSTER_APPROVAL_HOURS": ("1.5", lambda p: p.hold.approval_hours, 1.5),
    "ONEROSTER_SWITCH_SCHOOL_MATCH": (" Name , identifier", lambda p: p.switch.school_rules, ("name", "identifier")),
    "ONEROSTER_SWITCH_STUDENT_MATCH": ("email", lambda p: p.switch.student_rules, ("email",)),
    "ONEROSTER_SWITCH_MAX_UNMATCHED_PCT": ("12", lambda p: p.switch.max_unmatched_pct, 12.0),
    "ONEROSTER_SWITCH_MAX_AMBIGUOUS": ("3", lambda p: p.switch.max_ambiguous, 3),
    "ONEROSTER_FULL_SYNC_EVERY_DAYS": ("2", lambda p: p.full_sync_every_days, 2),
    "ONEROSTER_DELTA_OVERLAP_MINUTES": ("5", lambda p: p.delta_overlap_minutes, 5),
    "ONEROSTER_MAX_REJECTED_PCT": ("0.5", lambda p: p.max_rejected_pct, 0.5),
    "ONEROSTER_BLACKOUT_DATES": (" 2026-06-15..2026-08-20 ", lambda p: p.blackout_dates, "2026-06-15..2026-08-20"),
    "ONEROSTER_BUILDINGS_CSV": ("/srv/buildings.csv", lambda p: p.buildings_csv, "/srv/buildings.csv"),
}


@pytest.mark.parametrize("name", sorted(EVERY_VARIABLE))
def test_each_variable_sets_its_field_alone(name):
    text, read, expected = EVERY_VARIABLE[name]
    policy = SyncPolicy.from_env({name: text})
    assert read(policy) == expected and type(read(policy)) is type(expected)
    others = [n for n in EVERY_VARIABLE if n != name]
    assert [EVERY_VARIABLE[n][1](policy) for n in others] == [EVERY_VARIABLE[n][1](SyncPolicy()) for n in others]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("ONEROSTER_MAX_DEACTIVATE", "5.5", "ONEROSTER_MAX_DEACTIVATE must be a whole number, got '5.5'"),
    ("ONEROSTER_MAX_DEACTIVATE_PCT", "ten", "ONEROSTER_MAX_DEACTIVATE_PCT must be a number, got 'ten'"),
    ("ONEROSTER_SWITCH_MAX_AMBIGUOUS", "many", "ONEROSTER_SWITCH_MAX_AMBIGUOUS must be a whole number"),
    ("ONEROSTER_FULL_SYNC_EVERY_DAYS", "weekly", "ONEROSTER_FULL_SYNC_EVERY_DAYS must be a whole number"),
    ("ONEROSTER_MAX_REJECTED_PCT", "1%", "ONEROSTER_MAX_REJECTED_PCT must be a number"),
    ("ONEROSTER_SWITCH_SCHOOL_MATCH", "name,zip", "ONEROSTER_SWITCH_SCHOOL_MATCH must list distinct rules"),
    ("ONEROSTER_SWITCH_STUDENT_MATCH", "email,email", "ONEROSTER_SWITCH_STUDENT_MATCH must list distinct rules"),
    ("ONEROSTER_SWITCH_SCHOOL_MATCH", "username", "ONEROSTER_SWITCH_SCHOOL_MATCH"),  # a student-only rule
    ("ONEROSTER_BLACKOUT_DATES", "2026-13-01", "ONEROSTER_BLACKOUT_DATES: '2026-13-01' is not a date"),
    ("ONEROSTER_BLACKOUT_DATES", "2026-08-20..2026-06-15", "ends before it starts"),
])
def test_a_bad_value_is_an_error_naming_the_variable(name, text, message):
    with pytest.raises(ValueError) as raised:
        SyncPolicy.from_env({name: text})
    assert message in str(raised.value)


def test_blackout_dates_and_ranges():
    text = "2026-06-15..2026-08-20, 2026-12-24"
    assert parse_blackout_dates(text) == [(date(2026, 6, 15), date(2026, 8, 20)), (date(2026, 12, 24),) * 2]
    assert parse_blackout_dates(None) == [] and parse_blackout_dates(" , ") == []
    assert blackout_containing(date(2026, 8, 20), text) == (date(2026, 6, 15), date(2026, 8, 20))
    assert blackout_containing(date(2026, 8, 21), text) is None
    assert SyncPolicy(blackout_dates=text).blackout_containing(date(2026, 12, 24)) == (date(2026, 12, 24),) * 2


def test_parse_rules_keeps_the_order_and_the_default_only_when_unset():
    assert parse_rules(None, STUDENT_RULES, "X", DEFAULT_SCHOOL_RULES) == DEFAULT_SCHOOL_RULES
    assert parse_rules("EMAIL,username", STUDENT_RULES, "X") == ("email", "username")
    with pytest.raises(ValueError, match="^X must list"):
        parse_rules("", STUDENT_RULES, "X")
