"""The sync domain's Definitions: building and student sync assets, their checks, jobs and the daily schedule."""

import dagster as dg

from oneroster_pipeline.defs.districts import DISTRICTS

from .assets import buildings, oneroster_orgs, student_sync_assets, student_sync_preview
from .checks import SYNC_CHECKS
from .jobs import SYNC_JOBS
from .schedules import daily_student_sync_schedule, district_schedules

defs = dg.Definitions(
    assets=[oneroster_orgs, buildings, student_sync_assets, student_sync_preview],
    asset_checks=SYNC_CHECKS,
    jobs=SYNC_JOBS,
    schedules=district_schedules() if DISTRICTS else [daily_student_sync_schedule()],
)
