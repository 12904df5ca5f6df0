"""The sync domain's Definitions: building and student sync assets, their checks, jobs and the daily schedule."""

import dagster as dg

from .assets import buildings, oneroster_orgs, student_sync_assets, student_sync_preview
from .checks import SYNC_CHECKS
from .jobs import SYNC_JOBS
from .schedules import daily_student_sync_schedule

defs = dg.Definitions(
    assets=[oneroster_orgs, buildings, student_sync_assets, student_sync_preview],
    asset_checks=SYNC_CHECKS,
    jobs=SYNC_JOBS,
    schedules=[daily_student_sync_schedule()],
)
