"""The provider change domain's Definitions: crosswalk, switch and rebuild assets with their jobs."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout

from .assets import build_assets
from .jobs import build_jobs


def build(layout: DistrictLayout, hooks) -> dg.Definitions:
    """The domain's definitions over `layout`'s districts, `hooks` on every asset and job."""
    return dg.Definitions(assets=build_assets(layout, hooks), jobs=build_jobs(layout, hooks))
