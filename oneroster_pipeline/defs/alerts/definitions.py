"""The alerts domain's Definitions: the alert sensors, watching the jobs they are given (the hooks, `build_hooks`,
ride on the jobs and assets of the other domains)."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout

from .hooks import build_hooks
from .sensors import build_sensors

__all__ = ["build", "build_hooks"]


def build(layout: DistrictLayout, watched_jobs) -> dg.Definitions:
    """The alert sensors over `layout`'s districts, alerting on the runs of `watched_jobs`."""
    return dg.Definitions(sensors=build_sensors(layout, watched_jobs))
