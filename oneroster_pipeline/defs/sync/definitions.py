"""The sync domain's Definitions: building and student sync assets, their checks, jobs and the daily schedule."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout

from .assets import build_assets
from .checks import build_checks
from .jobs import build_jobs
from .schedules import build_schedules


def build(layout: DistrictLayout, hooks) -> dg.Definitions:
    """The domain's definitions over `layout`'s districts, `hooks` on every asset and job."""
    return dg.Definitions(assets=build_assets(layout, hooks), asset_checks=build_checks(layout),
                          jobs=build_jobs(layout, hooks), schedules=build_schedules(layout))
