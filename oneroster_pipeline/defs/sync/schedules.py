"""The daily student sync schedule; its UI toggle is the district's "Automation Settings" switch. With many districts
(ONEROSTER_DISTRICTS_FILE), one schedule per cron and timezone, each requesting a run per district of its group."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout, tags_of
from oneroster_pipeline.districts import District
from oneroster_pipeline.warehouse.policy import SyncPolicy

from .jobs import STUDENT_SYNC

TRUE_WORDS = {"1", "true", "yes", "on"}
DEFAULT_CRON = "0 5 * * *"


def _enabled(env) -> bool:
    return (env.get("ONEROSTER_STUDENT_SYNC_ENABLED") or "").strip().lower() in TRUE_WORDS


def _day(context: dg.ScheduleEvaluationContext, timezone: str):
    """The tick's day in `timezone` (a context built by hand, a test or the UI's "test schedule", may have no time)."""
    try:
        when = context.scheduled_execution_time
    except Exception:  # dagster raises a CheckError there
        when = None
    when = when or datetime.now(ZoneInfo(timezone))
    return when.astimezone(ZoneInfo(timezone)).date()


def _blackout_reason(policy: SyncPolicy, day) -> str | None:
    blackout = policy.blackout_containing(day)
    if blackout:
        return f"{day} is in the blackout range {blackout[0]}..{blackout[1]} (ONEROSTER_BLACKOUT_DATES)"
    return None


def sync_time(env: Mapping[str, str]) -> tuple[str, str]:
    """When the one district's daily student sync runs: (ONEROSTER_STUDENT_SYNC_CRON, ONEROSTER_TIMEZONE)."""
    return env.get("ONEROSTER_STUDENT_SYNC_CRON") or DEFAULT_CRON, env.get("ONEROSTER_TIMEZONE") or "UTC"


def district_sync_time(district: District, env: Mapping[str, str]) -> tuple[str, str]:
    """When a district's daily student sync runs: its cron and timezone, from the districts file or `env`."""
    return district.env(env).get("ONEROSTER_STUDENT_SYNC_CRON") or DEFAULT_CRON, district.timezone_or(env)


def sync_times(layout: DistrictLayout) -> list[tuple[str, str]]:
    """The (cron, timezone) of each daily student sync schedule `build_schedules` makes for `layout`, in order."""
    if layout.districts:
        return list(dict.fromkeys(district_sync_time(d, layout.config.env) for d in layout.districts))
    return [sync_time(layout.config.env)]


def build_schedules(layout: DistrictLayout) -> list[dg.ScheduleDefinition]:
    """The daily student sync: one schedule for the environment's district, or one per cron and timezone of the
    districts file."""
    if layout.districts:
        return district_schedules(layout.config.env, layout.districts)
    return [daily_student_sync_schedule(layout.config.env)]


def daily_student_sync_schedule(env: Mapping[str, str]) -> dg.ScheduleDefinition:
    """The one district's schedule, from `env`'s ONEROSTER_STUDENT_SYNC_* and ONEROSTER_TIMEZONE."""
    cron, timezone = sync_time(env)

    @dg.schedule(
        name="daily_student_sync",
        job_name=STUDENT_SYNC,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING if _enabled(env) else dg.DefaultScheduleStatus.STOPPED,
        description=("Student sync every day (ONEROSTER_STUDENT_SYNC_CRON in ONEROSTER_TIMEZONE), skipped on "
                     "ONEROSTER_BLACKOUT_DATES; manual runs are never blocked."),
    )
    def daily_student_sync(context: dg.ScheduleEvaluationContext, sync_policy: dg.ResourceParam[SyncPolicy]):
        reason = _blackout_reason(sync_policy, _day(context, timezone))
        if reason:
            context.log.info(f"daily student sync skipped: {reason}")
            return dg.SkipReason(reason)
        return dg.RunRequest()

    return daily_student_sync


def district_schedules(env: Mapping[str, str], districts: Sequence[District]) -> list[dg.ScheduleDefinition]:
    """One schedule per (cron, timezone) of the districts file: a tick requests one run per district of its group
    whose sync is enabled and not in a blackout (each district's own ONEROSTER_STUDENT_SYNC_*, ONEROSTER_TIMEZONE
    and ONEROSTER_BLACKOUT_DATES, from the file or the environment)."""
    groups: dict[tuple[str, str], list] = {}
    for district in districts:
        groups.setdefault(district_sync_time(district, env), []).append((district, district.env(env)))
    return [_group_schedule(cron, timezone, members, len(groups) == 1) for (cron, timezone), members in groups.items()]


def _group_schedule(cron: str, timezone: str, members: list, only: bool) -> dg.ScheduleDefinition:
    slug = "".join(c if c.isalnum() else "_" for c in f"{timezone}_{cron}").strip("_").lower()
    names = ", ".join(district.id for district, _ in members)

    @dg.schedule(
        name="daily_student_sync" if only else f"daily_student_sync_{slug}",
        job_name=STUDENT_SYNC, cron_schedule=cron, execution_timezone=timezone,
        default_status=(dg.DefaultScheduleStatus.RUNNING if any(_enabled(e) for _, e in members)
                        else dg.DefaultScheduleStatus.STOPPED),
        description=(f"Student sync at {cron} {timezone} for {names}: one run per district whose "
                     "ONEROSTER_STUDENT_SYNC_ENABLED is on, skipped on its ONEROSTER_BLACKOUT_DATES."),
    )
    def daily_district_student_sync(context: dg.ScheduleEvaluationContext):
        day = _day(context, timezone)
        requests, skipped = [], []
        for district, district_env in members:
            reason = (_blackout_reason(SyncPolicy.from_env(district_env), day) if _enabled(district_env)
                      else "ONEROSTER_STUDENT_SYNC_ENABLED is off")
            if reason:
                skipped.append(f"{district.id}: {reason}")
                continue
            requests.append(dg.RunRequest(partition_key=district.id, run_key=district.id,
                                          tags=tags_of(district)))
        if skipped:
            context.log.info("daily student sync skipped for " + "; ".join(skipped))
        return requests or dg.SkipReason("; ".join(skipped))

    return daily_district_student_sync
