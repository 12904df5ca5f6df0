"""Freshness policies (Dagster's `FreshnessPolicy`: the UI shows each asset as fresh, warning or failing) that say
how each table is kept up to date.

- `students`: the daily schedule syncs it (`daily_student_sync`: ONEROSTER_STUDENT_SYNC_CRON in ONEROSTER_TIMEZONE),
  so it is due `STUDENT_SYNC_TOLERANCE` after each tick (a sync, and a wait in the run queue, take less): a cron
  policy whose deadline is the schedule's cron moved by the tolerance, in the schedule's timezone. A day the
  schedule skips (ONEROSTER_BLACKOUT_DATES) or a schedule that is off leaves it stale, which is what it is.
  With a districts file the policy follows the districts' schedules: their one cron and timezone when they share
  it; with several (or a cron whose deadline is no cron, e.g. a sync late in the evening on some weekdays only), a
  daily sync's window, a day and the tolerance since the latest sync. Dagster 1.13 evaluates a freshness policy per
  asset, not per partition, so with many districts it says that the districts' syncs land, not which did (each
  district's partition has its own materializations).
- `buildings`: synced by hand (`building_sync`) when a district connects and when its schools change (a new school,
  a renamed or closed one: student sync's `building_sis_matches_schools` check says so). Schools change at term
  boundaries, so it warns after `BUILDINGS_WARN` (a month without checking the registry against the provider) and
  fails after `BUILDINGS_FAIL` (a whole term).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout

from .schedules import sync_times

STUDENT_SYNC_TOLERANCE = timedelta(hours=2)
BUILDINGS_WARN = timedelta(days=30)
BUILDINGS_FAIL = timedelta(days=90)
BUILDINGS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=BUILDINGS_FAIL, warn_window=BUILDINGS_WARN)
BUILDINGS_FRESHNESS_NOTE = (
    f"Fresh while building_sync ran in the last {BUILDINGS_WARN.days} days; warns after that and fails after "
    f"{BUILDINGS_FAIL.days} (a term): it is run by hand when schools change (a new, renamed or closed school; "
    "student sync's building_sis_matches_schools check says so), so a month without it is worth a look.")


def shifted_cron(cron: str, by: timedelta) -> str | None:
    """`cron` with its one daily time moved `by` later (`0 5 * * 1-5` by 2 h: `0 7 * * 1-5`), or None when that is
    not a cron of the same days: a minute or hour field that is not one number, or a time moved past midnight on a
    cron that runs on some days only."""
    fields = cron.split()
    if len(fields) != 5 or not (fields[0].isdigit() and fields[1].isdigit()) or by % timedelta(minutes=1):
        return None
    minute, hour, days = int(fields[0]), int(fields[1]), fields[2:]
    minutes = hour * 60 + minute + int(by.total_seconds()) // 60
    if minutes >= 24 * 60 and days != ["*", "*", "*"]:
        return None
    minutes %= 24 * 60
    return " ".join([str(minutes % 60), str(minutes // 60), *days])


def student_freshness(layout: DistrictLayout) -> tuple[dg.FreshnessPolicy, str]:
    """The `students` policy for `layout`'s schedules, and the sentence of its description saying it."""
    tolerance = f"{STUDENT_SYNC_TOLERANCE.total_seconds() / 3600:g} h"
    times = sync_times(layout)
    if len(times) == 1:
        cron, timezone = times[0]
        deadline = shifted_cron(cron, STUDENT_SYNC_TOLERANCE)
        if deadline is not None:
            return (dg.FreshnessPolicy.cron(deadline_cron=deadline, lower_bound_delta=STUDENT_SYNC_TOLERANCE,
                                            timezone=timezone),
                    f"Fresh when the daily student sync ({cron} {timezone}, ONEROSTER_STUDENT_SYNC_CRON) has landed "
                    f"within {tolerance} of its time; stale after a skipped day (ONEROSTER_BLACKOUT_DATES) or while "
                    "the schedule is off.")
    window = timedelta(days=1) + STUDENT_SYNC_TOLERANCE
    return (dg.FreshnessPolicy.time_window(fail_window=window),
            f"Fresh when a student sync landed in the last day and {tolerance} (daily student sync: "
            + ", ".join(f"{cron} {timezone}" for cron, timezone in times)
            + "); stale after a skipped day (ONEROSTER_BLACKOUT_DATES) or while the schedule is off.")
