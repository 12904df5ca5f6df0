"""The connection guard every sync asset calls first: only the active provider connection may sync, and a first
sync that applies makes its connection the active one (see warehouse/provider_switch.py)."""

import dagster as dg

from oneroster_pipeline.warehouse.provider_switch import (
    Connection,
    ConnectionChanged,
    activate_connection,
    require_active_connection,
)

from .partitions import offer_only


def guard_connection(context, oneroster, warehouse, con) -> Connection:
    """Refuse a connection that is not the active one (a dg.Failure saying to run provider_switch); `con` is open on
    the district's `warehouse`.

    With no active connection yet the configured one is a `candidate`: call `activate_after_sync` once the sync
    applied, so a failed first sync never pins its connection.
    """
    try:
        connection, active = require_active_connection(con, oneroster.settings())
    except ConnectionChanged as changed:
        raise dg.Failure(description=str(changed)) from None
    if active:  # the rebuild offers this connection only (an instance that listed a retired one loses it)
        offer_only(context.instance, connection.connection_id, warehouse.district_id)
    return connection


def activate_after_sync(context, warehouse, con, connection: Connection) -> None:
    """The sync against `connection` applied: it becomes the active connection (and the rebuild's partition)."""
    try:
        activated = activate_connection(con, connection)
    except ConnectionChanged as changed:
        raise dg.Failure(description=str(changed)) from None
    if activated:
        context.log.info(f"{connection.label} [{connection.connection_id}] is now the active connection")
    offer_only(context.instance, connection.connection_id, warehouse.district_id)
