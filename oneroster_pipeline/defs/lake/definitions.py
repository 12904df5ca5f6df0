"""The lake domain's Definitions: the maintenance job and its weekly schedule (only when a district writes a lake)."""

import dagster as dg

from oneroster_pipeline.defs.districts import DistrictLayout

from . import maintenance


def build(layout: DistrictLayout) -> dg.Definitions:
    """The domain's definitions over `layout`'s districts."""
    return maintenance.build(layout)
