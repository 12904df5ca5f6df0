"""The setup domain's Definitions: the connection test asset and its job."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout

from .assets import build_assets
from .jobs import build_jobs


def build(layout: DistrictLayout) -> dg.Definitions:
    """The domain's definitions over `layout`'s districts."""
    return dg.Definitions(assets=build_assets(layout), jobs=build_jobs(layout))
