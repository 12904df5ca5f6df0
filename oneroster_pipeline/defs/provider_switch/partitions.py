"""The partitions of the student tables' rebuild: only the active provider connection is offered."""

# Why per connection, not per day: a OneRoster API returns only today's roster, so daily partitions over API pulls
# would stamp today's data with past dates. What changes the derived tables' ids is the connection, and the stored
# raw `oneroster_users` / `oneroster_orgs` always hold the active connection's snapshot: only the active connection
# can be rebuilt. So a person never has to guess:
# - one district: a dynamic partition per connection (`provider_connection`, the key is its `connection_id`, e.g.
#   `classlink-v1p2-3fa2b1c0`), holding the active connection only. It is added when a connection becomes active
#   (its first applied sync, or an applied provider switch) and the retired one is removed when a switch is applied
#   (an instance that still lists one loses it at the next sync), so "All" in the UI is the active connection;
# - many districts (ONEROSTER_DISTRICTS_FILE): the district partitions, as every other asset; a district's rebuild
#   is its active connection's (the run's metadata names it).
# A run for a key that is no longer the active connection (a backfill requested before a switch) does nothing and
# says which partition to rebuild instead.

import weakref

import dagster as dg

# the rebuild's partitions with one district (with many, the district partitions: `DistrictLayout.partitions`)
PROVIDER_CONNECTIONS = dg.DynamicPartitionsDefinition(name="provider_connection")
REBUILD_JOB = "rebuild_student_tables"


def rebuild_partition(district_id: str | None, connection_id: str) -> str:
    """The rebuild's partition key for a district's active connection: the district, or the connection's id."""
    return district_id or connection_id


def rebuild_command(district_id: str | None, connection_id: str) -> str:
    """The command line that rebuilds the student tables of the active connection."""
    return f"dg launch --job {REBUILD_JOB} --partition {rebuild_partition(district_id, connection_id)}"


def rebuild_partitions(district_partitions: dg.PartitionsDefinition | None) -> dg.PartitionsDefinition:
    """The rebuild's partitions: the districts' (a district's partition rebuilds its active connection), else one
    per provider connection (the active one only)."""
    return district_partitions or PROVIDER_CONNECTIONS


def requested_connection(context, district_id: str | None) -> str | None:
    """The connection a rebuild step was asked for: its partition key with one district; None for a district of the
    districts file (`district_id`: its partition means its active connection) or when the run names no partition."""
    if district_id or not context.has_partition_key:
        return None
    return context.partition_key


# the connection this process last made the only partition, by instance (a sync asks once per process, not at every
# step; a switch always updates it)
_ONLY_PARTITION: "weakref.WeakKeyDictionary[dg.DagsterInstance, str]" = weakref.WeakKeyDictionary()


def offer_only(instance: dg.DagsterInstance, connection_id: str, district_id: str | None,
               force: bool = False) -> None:
    """Make the active connection the rebuild's only partition: add it, remove every other (one district; nothing
    for a district of the districts file, `district_id`, whose rebuild partitions are the districts)."""
    if district_id or (not force and _ONLY_PARTITION.get(instance) == connection_id):
        return
    keys = instance.get_dynamic_partitions(PROVIDER_CONNECTIONS.name)
    if connection_id not in keys:
        instance.add_dynamic_partitions(PROVIDER_CONNECTIONS.name, [connection_id])
    for key in keys:
        if key != connection_id:
            instance.delete_dynamic_partition(PROVIDER_CONNECTIONS.name, key)
    _ONLY_PARTITION[instance] = connection_id
