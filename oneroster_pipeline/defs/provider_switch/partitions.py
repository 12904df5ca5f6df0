"""The per-connection partitions of the student tables' rebuild (the backfill), and adding one."""

# Why per connection, not per day: a OneRoster API returns only today's roster, so daily partitions over API pulls
# would stamp today's data with past dates. What changes the derived tables' ids is the connection, so a partition is
# a connection (`provider_connections.connection_id`, e.g. `classlink-v1p2-3fa2b1c0`). A partition is added when a
# connection becomes active (its first applied sync, or an applied provider switch). Rebuilding a partition recomputes
# `students`, `student_buildings` and `ignored_students` from the stored raw `oneroster_users` / `oneroster_orgs`,
# which always hold the active connection's snapshot: only the active connection's partition can be rebuilt, and a
# retired one fails saying which partition to pick.

import dagster as dg

PROVIDER_CONNECTIONS = dg.DynamicPartitionsDefinition(name="provider_connection")


def add_connection_partition(instance: dg.DagsterInstance, connection_id: str) -> None:
    """The connection's partition, added once (a connection gets one when it becomes active)."""
    if not instance.has_dynamic_partition(PROVIDER_CONNECTIONS.name, connection_id):
        instance.add_dynamic_partitions(PROVIDER_CONNECTIONS.name, [connection_id])
