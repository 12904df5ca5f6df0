"""The Dagster code location, built from the configuration by one function, `build_definitions`: the districts
(`DistrictLayout`) give every domain's assets, checks, jobs, schedules, sensors and hooks, and the resources are
bound from the same configuration (`dagster job execute -m oneroster_pipeline.definitions -j full_sync`,
`dg launch`, `dg dev`). Nothing is read when this module is imported: Dagster calls `defs` when it loads the code
location, and tests call `build_definitions(resources, config=Config.of({...}))`."""

import gc

import dagster as dg

from oneroster_pipeline.config import Config
from oneroster_pipeline.defs.alerts import definitions as alerts
from oneroster_pipeline.defs.districts import DistrictLayout
from oneroster_pipeline.defs.lake import definitions as lake
from oneroster_pipeline.defs.provider_switch import definitions as provider_switch
from oneroster_pipeline.defs.resources import default_resources
from oneroster_pipeline.defs.setup import definitions as setup
from oneroster_pipeline.defs.sync import definitions as sync


def build_definitions(resources: dict | None = None, config: Config | None = None) -> dg.Definitions:
    """Every domain's definitions over `config`'s districts (default: `Config.load()`, the environment then .env
    then the districts file), with `resources` bound (default: `default_resources(config)`)."""
    config = config if config is not None else Config.load()
    resources = resources if resources is not None else default_resources(config)
    layout = DistrictLayout.of(config)
    hooks = alerts.build_hooks(layout)  # every run records its failure and failed checks itself
    domains = [sync.build(layout, hooks), provider_switch.build(layout, hooks)]
    watched = [job for domain in domains for job in domain.jobs or ()]  # what the alert sensors watch
    # in-process for every job, the implicit asset job of a backfill or a UI materialization included: one process
    # holds a district's DuckDB file, and a run pays one process start, not one per step
    return dg.Definitions.merge(*domains, alerts.build(layout, watched), setup.build(layout),
                                lake.build(layout),
                                dg.Definitions(resources=resources, executor=dg.in_process_executor))


@dg.definitions
def defs() -> dg.Definitions:
    """The code location Dagster loads: `build_definitions()`."""
    built = build_definitions()
    # Everything built while loading the code location (dagster, pyarrow, duckdb, these definitions: most of a run
    # worker's objects) lives as long as the process: leave it out of the cyclic garbage collector's full
    # collections, which would otherwise rescan all of it again and again (a batched many-district run: less CPU).
    gc.freeze()
    return built
