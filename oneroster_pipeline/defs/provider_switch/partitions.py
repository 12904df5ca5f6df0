"""The per-connection partitions of the student tables' rebuild (the backfill), and adding one."""

# Why per connection, not per day: a OneRoster API returns only today's roster, so daily partitions over API pulls
# would stamp today's data with past dates. What changes the derived tables' ids is the connection, so a partition is
# a connection (`provider_connections.connection_id`, e.g. `classlink-v1p2-3fa2b1c0`). A partition is added when a
# connection becomes active (its first applied sync, or an applied provider switch). Rebuilding a partition recomputes
# `students`, `student_buildings` and `ignored_students` from the stored raw `oneroster_users` / `oneroster_orgs`,
# which always hold the active connection's snapshot: only the active connection's partition can be rebuilt, and a
# retired one fails saying which partition to pick.

import weakref

import dagster as dg

from oneroster_pipeline.defs.districts import DISTRICT_DIMENSION, DISTRICT_PARTITIONS

PROVIDER_CONNECTIONS = dg.DynamicPartitionsDefinition(name="provider_connection")
# with many districts (ONEROSTER_DISTRICTS_FILE) a rebuild partition is a district and a connection: `north|<id>`
STUDENT_REBUILD_PARTITIONS = (
    dg.MultiPartitionsDefinition({DISTRICT_DIMENSION: DISTRICT_PARTITIONS, "provider_connection": PROVIDER_CONNECTIONS})
    if DISTRICT_PARTITIONS else PROVIDER_CONNECTIONS)


def rebuild_partition(district_id: str | None, connection_id: str) -> str:
    """The rebuild's partition key for a connection (of a district, with many districts)."""
    return f"{district_id}|{connection_id}" if district_id else connection_id


def connection_of_partition(context) -> str:
    """The provider connection a rebuild step works on: its partition key, or the key's connection dimension."""
    key = context.partition_key
    return key.keys_by_dimension["provider_connection"] if isinstance(key, dg.MultiPartitionKey) else key


# connections whose partition this process has seen in an instance (a batched run asks once per district, not at
# every step; partitions are only ever added by the code)
_KNOWN_PARTITIONS: "weakref.WeakKeyDictionary[dg.DagsterInstance, set[str]]" = weakref.WeakKeyDictionary()


def add_connection_partition(instance: dg.DagsterInstance, connection_id: str) -> None:
    """The connection's partition, added once (a connection gets one when it becomes active)."""
    known = _KNOWN_PARTITIONS.setdefault(instance, set())
    if connection_id in known:
        return
    if not instance.has_dynamic_partition(PROVIDER_CONNECTIONS.name, connection_id):
        instance.add_dynamic_partitions(PROVIDER_CONNECTIONS.name, [connection_id])
    known.add(connection_id)
