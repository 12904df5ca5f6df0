"""The sync policy: every threshold, cadence and date that decides what a sync applies, holds or skips."""

# `SyncPolicy.from_env(os.environ)` reads the policy's `ONEROSTER_*` variables (docs/reference.md, "Variables");
# a bad value is a ValueError naming the variable. Framework-free: the Dagster layer passes the object as
# it is to the assets, checks and schedule.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date

# provider switch: the rules that may match a new record to an existing one, strongest first
SCHOOL_RULES = ("sourced_id", "legacy_sourced_id", "identifier", "name")
STUDENT_RULES = ("sourced_id", "legacy_sourced_id", "identifier", "username", "email")
DEFAULT_SCHOOL_RULES = ("sourced_id", "identifier", "name")
DEFAULT_STUDENT_RULES = STUDENT_RULES


@dataclass(frozen=True)
class HoldPolicy:
    """When a student sync holds deactivations (counts or percentages, district-wide or per building) or all of
    its changes (updates above `max_update_pct`), and how long an approval of a held diff stays valid."""

    max_deactivate_pct: float = 10.0
    max_deactivate: int = 500
    building_max_deactivate_pct: float = 25.0
    building_max_deactivate: int = 200
    max_update_pct: float = 75.0
    approval_hours: float = 24.0


@dataclass(frozen=True)
class SwitchPolicy:
    """How a provider switch matches records (rule order) and when it waits for a person."""

    school_rules: tuple[str, ...] = DEFAULT_SCHOOL_RULES
    student_rules: tuple[str, ...] = DEFAULT_STUDENT_RULES
    max_unmatched_pct: float = 5.0  # of existing buildings, and of existing students, left without a new id
    max_ambiguous: int = 0  # ambiguous buildings or students tolerated without review


@dataclass(frozen=True)
class SyncPolicy:
    """Everything a sync run decides by, besides the connection: holds, the switch, the full/delta cadence, the
    share of rejected records a check tolerates, blackout dates and the pre-existing buildings file."""

    hold: HoldPolicy = field(default_factory=HoldPolicy)
    switch: SwitchPolicy = field(default_factory=SwitchPolicy)
    full_sync_every_days: int = 7
    delta_overlap_minutes: int = 60
    max_rejected_pct: float = 1.0  # rejected records above this share of a pull (or of one CSV file) fail a check
    blackout_dates: str | None = None  # e.g. "2026-06-15..2026-08-20, 2026-12-24"
    buildings_csv: str | None = None  # pre-existing buildings (name,building_sis), loaded before the first sync

    def __post_init__(self) -> None:
        parse_blackout_dates(self.blackout_dates)  # a malformed range fails when the policy is made

    def blackout_containing(self, day: date) -> tuple[date, date] | None:
        """The blackout range that contains `day`, if any."""
        return next(((s, e) for s, e in parse_blackout_dates(self.blackout_dates) if s <= day <= e), None)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SyncPolicy:
        """The policy from the `ONEROSTER_*` variables (unset or empty: the default)."""
        def read(name: str, kind: type, default):
            text = (env.get(name) or "").strip()
            if not text:
                return default
            try:
                return kind(text)
            except ValueError:
                raise ValueError(f"{name} must be {'a whole number' if kind is int else 'a number'}, "
                                 f"got {text!r}") from None

        hold = HoldPolicy(**{f.name: read(var, int if f.type == "int" else float, f.default)
                             for f, var in zip(fields(HoldPolicy), HOLD_VARS)})
        switch = SwitchPolicy(
            school_rules=parse_rules(env.get(SWITCH_VARS[0]), SCHOOL_RULES, SWITCH_VARS[0], DEFAULT_SCHOOL_RULES),
            student_rules=parse_rules(env.get(SWITCH_VARS[1]), STUDENT_RULES, SWITCH_VARS[1], DEFAULT_STUDENT_RULES),
            max_unmatched_pct=read(SWITCH_VARS[2], float, SwitchPolicy.max_unmatched_pct),
            max_ambiguous=read(SWITCH_VARS[3], int, SwitchPolicy.max_ambiguous))
        return cls(
            hold=hold, switch=switch,
            full_sync_every_days=read(SYNC_VARS["full_sync_every_days"], int, cls.full_sync_every_days),
            delta_overlap_minutes=read(SYNC_VARS["delta_overlap_minutes"], int, cls.delta_overlap_minutes),
            max_rejected_pct=read(SYNC_VARS["max_rejected_pct"], float, cls.max_rejected_pct),
            blackout_dates=(env.get(SYNC_VARS["blackout_dates"]) or "").strip() or None,
            buildings_csv=(env.get(SYNC_VARS["buildings_csv"]) or "").strip() or None)


# the variables of HoldPolicy's fields, in field order
HOLD_VARS = ("ONEROSTER_MAX_DEACTIVATE_PCT", "ONEROSTER_MAX_DEACTIVATE", "ONEROSTER_BUILDING_MAX_DEACTIVATE_PCT",
             "ONEROSTER_BUILDING_MAX_DEACTIVATE", "ONEROSTER_MAX_UPDATE_PCT", "ONEROSTER_APPROVAL_HOURS")
SWITCH_VARS = ("ONEROSTER_SWITCH_SCHOOL_MATCH", "ONEROSTER_SWITCH_STUDENT_MATCH", "ONEROSTER_SWITCH_MAX_UNMATCHED_PCT",
               "ONEROSTER_SWITCH_MAX_AMBIGUOUS")
# SyncPolicy's own fields -> their variables
SYNC_VARS = {"full_sync_every_days": "ONEROSTER_FULL_SYNC_EVERY_DAYS",
             "delta_overlap_minutes": "ONEROSTER_DELTA_OVERLAP_MINUTES",
             "max_rejected_pct": "ONEROSTER_MAX_REJECTED_PCT", "blackout_dates": "ONEROSTER_BLACKOUT_DATES",
             "buildings_csv": "ONEROSTER_BUILDINGS_CSV"}
# the daily schedule's variables (read by the Dagster layer, defs/sync/schedules.py; blackout dates are the policy's)
SCHEDULE_VARS = ("ONEROSTER_STUDENT_SYNC_CRON", "ONEROSTER_STUDENT_SYNC_ENABLED", "ONEROSTER_TIMEZONE")
# every variable the policy reads, and the schedule's
POLICY_VARS = (*HOLD_VARS, *SWITCH_VARS, *SYNC_VARS.values(), *SCHEDULE_VARS)


def parse_rules(text: str | None, allowed: tuple[str, ...], variable: str,
                default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """A comma-separated rule order (e.g. "identifier,name"); unset gives `default`; ValueError naming the
    variable."""
    if default is not None and not (text or "").strip():
        return default
    rules = tuple(r.strip().lower() for r in (text or "").split(",") if r.strip())
    unknown = [r for r in rules if r not in allowed]
    if not rules or unknown or len(set(rules)) != len(rules):
        raise ValueError(f"{variable} must list distinct rules from {', '.join(allowed)} (comma-separated), "
                         f"got {text!r}")
    return rules


def parse_blackout_dates(text: str | None) -> list[tuple[date, date]]:
    """`ONEROSTER_BLACKOUT_DATES`: comma-separated dates or inclusive ranges (`2026-06-15..2026-08-20, 2027-02-16`)
    -> (first, last) pairs; a malformed entry is a ValueError naming the variable and the entry."""
    ranges = []
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        first, _, last = entry.partition("..")
        try:
            start, end = date.fromisoformat(first.strip()), date.fromisoformat((last or first).strip())
        except ValueError:
            raise ValueError(f"ONEROSTER_BLACKOUT_DATES: {entry!r} is not a date (YYYY-MM-DD) or a range "
                             "(YYYY-MM-DD..YYYY-MM-DD)") from None
        if end < start:
            raise ValueError(f"ONEROSTER_BLACKOUT_DATES: {entry!r} ends before it starts")
        ranges.append((start, end))
    return ranges


def blackout_containing(day: date, text: str | None) -> tuple[date, date] | None:
    """The blackout range of `text` that contains `day`, if any."""
    return next(((start, end) for start, end in parse_blackout_dates(text) if start <= day <= end), None)
