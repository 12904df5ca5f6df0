"""The daily student sync schedule; its UI toggle is the district's "Automation Settings" switch."""


import os

import dagster as dg

from .jobs import student_sync

TRUE_WORDS = {"1", "true", "yes", "on"}


def daily_student_sync_schedule(env=os.environ) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_student_sync",
        job=student_sync,
        cron_schedule=env.get("ONEROSTER_STUDENT_SYNC_CRON") or "0 5 * * *",
        execution_timezone=env.get("ONEROSTER_TIMEZONE") or "UTC",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if (env.get("ONEROSTER_STUDENT_SYNC_ENABLED") or "").strip().lower() in TRUE_WORDS
            else dg.DefaultScheduleStatus.STOPPED
        ),
        description="Student sync every day (ONEROSTER_STUDENT_SYNC_CRON in ONEROSTER_TIMEZONE).",
    )
