"""The Dagster code location: each domain's Definitions merged, with the resources bound from the environment
(`dagster job execute -m oneroster_pipeline.definitions -j full_sync`)."""

import gc

import dagster as dg

from oneroster_pipeline.defs.alerts import definitions as alerts
from oneroster_pipeline.defs.provider_switch import definitions as provider_switch
from oneroster_pipeline.defs.resources import default_resources
from oneroster_pipeline.defs.setup import definitions as setup
from oneroster_pipeline.defs.sync import definitions as sync

# each domain's module (Dagster loads the one Definitions object at module scope here: `defs`)
DOMAINS = (sync, provider_switch, alerts, setup)


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """Every domain's definitions with `resources` bound (default: `default_resources()`, from the environment)."""
    resources = resources if resources is not None else default_resources()
    # in-process for every job, the implicit asset job of a backfill or a UI materialization included: one process
    # holds a district's DuckDB file, and a run pays one process start, not one per step
    return dg.Definitions.merge(*(domain.defs for domain in DOMAINS),
                                dg.Definitions(resources=resources, executor=dg.in_process_executor))


defs = build_definitions()

# Everything built while importing the code location (dagster, pyarrow, duckdb, these definitions: most of a run
# worker's objects) lives as long as the process: leave it out of the cyclic garbage collector's full collections,
# which would otherwise rescan all of it again and again (a batched many-district run: about 7% less CPU).
gc.freeze()
