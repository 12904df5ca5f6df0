"""Many districts as a value: `DistrictLayout`, built from the configuration (`Config`), is how the code location
covers the districts of ONEROSTER_DISTRICTS_FILE: their partitions, the backfill policy, the run tags of a district,
which districts a step or a run covers, and `per_district` (an asset's or a check's body run once per district of
its step, with that district's resources). Without a districts file the layout is inert: no partitions, every body
runs as it is, with the resources it is given. The domains' factories build every definition from one layout.
"""

# One district per run by default: a run's tags name the district and its provider host (the run queue limits runs
# per host, see dagster.yaml), and a district fails alone. ONEROSTER_DISTRICTS_PER_RUN=N lets a backfill sync N
# districts one after another in one run (Dagster's BackfillPolicy.multi_run): one process start per N districts;
# such a run has no per-district tags, and a district that fails makes its run fail after the others were synced
# (`batched.py`).

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import dagster as dg

from oneroster_pipeline.config import Config
from oneroster_pipeline.defs import batched
from oneroster_pipeline.defs.resources import for_district
from oneroster_pipeline.districts import District
from oneroster_pipeline.warehouse.snapshots import publish_snapshot, snapshot_root

DISTRICT_DIMENSION = "district"  # a district's dimension in a multi-partitioned run's tags
DISTRICT_TAG = "oneroster/district"  # run tags of a one-district run (schedules, job backfills, the launchpad)
PROVIDER_HOST_TAG = "oneroster/provider_host"  # what dagster.yaml's per-host run limit counts


def tags_of(district: District) -> dict[str, str]:
    """The run tags naming `district` and its provider host (what dagster.yaml's per-host limit counts)."""
    return {DISTRICT_TAG: district.id, PROVIDER_HOST_TAG: district.provider_host}


@dataclass(frozen=True, eq=False)
class DistrictLayout:
    """The districts a code location syncs, and how its definitions cover them (see the module's docstring).

    `districts` is empty without a districts file; then `partitions` and `backfill_policy` are None."""

    config: Config
    districts: tuple[District, ...] = ()
    partitions: dg.StaticPartitionsDefinition | None = None
    backfill_policy: dg.BackfillPolicy | None = None
    per_run: int = 1  # districts per run of a backfill (ONEROSTER_DISTRICTS_PER_RUN)
    # district-bound resources already built, by (resource type, district): a batched run binds every district at
    # every step (~3 ms each time), and a bound resource depends on nothing but the district's environment
    _bound: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, config: Config) -> DistrictLayout:
        """The layout of `config`'s districts (inert without a districts file)."""
        districts = tuple(config.districts or ())
        if not districts:
            return cls(config)
        return cls(config, districts, dg.StaticPartitionsDefinition([d.id for d in districts]),
                   dg.BackfillPolicy.multi_run(config.districts_per_run), config.districts_per_run)

    @property
    def by_id(self) -> dict[str, District]:
        return {district.id: district for district in self.districts}

    def label(self, key: str) -> str:
        """How logs and alerts name district `key`: `north (North Unified)`."""
        return self.by_id[key].label

    def district_tags(self, key: str) -> dict[str, str]:
        """The run tags naming district `key` and its provider host."""
        return tags_of(self.by_id[key])

    def secrets(self) -> list[str]:
        """Every secret value the configuration holds (the environment's and each district's): what an alert or a
        recorded error must never show."""
        return self.config.secret_values()

    def job_partitioning(self) -> dict:
        """`define_asset_job` keyword arguments: with one district per run, a partitioned config whose runs carry
        `district_tags` (schedules, job backfills and the launchpad use it). Dagster refuses such a config with a
        multi-district backfill policy, so batched runs go without."""
        if not self.districts or self.per_run != 1:
            return {}
        return {"config": dg.PartitionedConfig(
            partitions_def=self.partitions, run_config_for_partition_key_fn=lambda key: {},
            tags_for_partition_key_fn=self.district_tags)}

    def _district_of(self, key: str) -> str:
        """The district of a partition key: the key itself, or its district dimension (`north|<connection>`)."""
        return key if key in self.by_id else key.split("|")[0]

    def districts_of(self, context) -> list[str | None]:
        """The districts a step works on: `[None]` without a districts file, else the step's partition(s)."""
        if not self.districts:
            return [None]
        if not (context.has_partition_key or context.has_partition_key_range):
            raise dg.Failure(description=(
                f"This code location syncs {len(self.districts)} districts ({self.config.districts_file}): "
                "pick one, e.g. --tags '{\"dagster/partition\": \"" + self.districts[0].id + "\"}', or a backfill."))
        return [self._district_of(key) for key in context.partition_keys]

    def districts_of_run(self, run: dg.DagsterRun) -> list[str | None]:
        """The districts a run covers, from its tags (hooks and sensors): `[None]` without a districts file."""
        if not self.districts:
            return [None]
        by_id, tags = self.by_id, run.tags
        key = tags.get(f"dagster/partition/{DISTRICT_DIMENSION}") or tags.get("dagster/partition")
        if key:
            return [self._district_of(key)] if self._district_of(key) in by_id else [None]
        start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
        ids = [district.id for district in self.districts]
        if start in by_id and end in by_id:
            return ids[ids.index(start): ids.index(end) + 1]
        return [None]  # a run that names no district (e.g. launched without a partition): the environment's warehouse

    def bound(self, key: str | None, resources: dict) -> dict:
        """`resources` (by parameter name) bound to district `key`; unchanged for None (no districts file)."""
        if key is None:
            return resources
        return {name: self._bound_one(value, key) for name, value in resources.items()}

    def _bound_one(self, resource, key: str):
        cache_key = (type(resource), key)
        if cache_key not in self._bound:
            district = self.by_id[key]
            made = for_district(resource, district, self.config.district_env(district))
            if made is resource:  # not a district resource: nothing to keep
                return resource
            self._bound[cache_key] = made
        return self._bound[cache_key]

    def per_district(self, body):
        """`body(context, **resources)` run once per district of the step, each time with that district's resources
        (`batched.per_district`); the body itself without a districts file."""
        return batched.per_district(self, body) if self.districts else body


def publish_district_snapshot(warehouse, log, con=None) -> None:
    """After a district's sync applied: its final tables as Parquet snapshots for the cross-district view
    (`warehouse/snapshots.py`; ONEROSTER_SNAPSHOT_DIR of the district's environment), through `con` if the caller
    has the warehouse open (and nothing uncommitted on it). Nothing without a districts file, nor on a lake
    (ONEROSTER_WAREHOUSE=ducklake: a query across districts reads the lake itself, deploy/LAKE.md)."""
    if not warehouse.district_id or getattr(warehouse, "is_lake", False):
        return
    root = snapshot_root(warehouse.snapshot_dir)
    with nullcontext(con) if con is not None else warehouse.connect() as open_con:
        counts = publish_snapshot(open_con, warehouse.district_id, root)
    log.info(f"published the snapshot of district {warehouse.district_id} to {root}: "
             + ", ".join(f"{table} {rows}" for table, rows in counts.items()))
