"""The daily student sync schedule; its UI toggle is the district's "Automation Settings" switch."""


import os
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from oneroster_pipeline.warehouse.policy import SyncPolicy

from .jobs import student_sync

TRUE_WORDS = {"1", "true", "yes", "on"}


def daily_student_sync_schedule(env=os.environ) -> dg.ScheduleDefinition:
    timezone = env.get("ONEROSTER_TIMEZONE") or "UTC"

    @dg.schedule(
        name="daily_student_sync",
        job=student_sync,
        cron_schedule=env.get("ONEROSTER_STUDENT_SYNC_CRON") or "0 5 * * *",
        execution_timezone=timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if (env.get("ONEROSTER_STUDENT_SYNC_ENABLED") or "").strip().lower() in TRUE_WORDS
            else dg.DefaultScheduleStatus.STOPPED
        ),
        description=("Student sync every day (ONEROSTER_STUDENT_SYNC_CRON in ONEROSTER_TIMEZONE), skipped on "
                     "ONEROSTER_BLACKOUT_DATES; manual runs are never blocked."),
    )
    def daily_student_sync(context: dg.ScheduleEvaluationContext, sync_policy: dg.ResourceParam[SyncPolicy]):
        # a tick always has its scheduled time; a context built by hand (a test, the UI's "test schedule") may not
        try:
            when = context.scheduled_execution_time
        except Exception:  # dagster raises a CheckError there
            when = None
        when = when or datetime.now(ZoneInfo(timezone))
        day = when.astimezone(ZoneInfo(timezone)).date()
        blackout = sync_policy.blackout_containing(day)
        if blackout:
            reason = f"{day} is in the blackout range {blackout[0]}..{blackout[1]} (ONEROSTER_BLACKOUT_DATES)"
            context.log.info(f"daily student sync skipped: {reason}")
            return dg.SkipReason(reason)
        return dg.RunRequest()

    return daily_student_sync
