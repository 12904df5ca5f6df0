"""Which provider connection a sync runs against: `connection_of(settings)`, the active-connection guard and
activation after a first successful sync (table `provider_connections`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from oneroster_pipeline.client.errors import redact_url

from .. import store
from .errors import PROCEDURE, ConnectionChanged, NotActiveConnection


@dataclass(frozen=True)
class Connection:
    """A provider connection as the district configured it (never a credential)."""

    connection_id: str  # short, stable, safe as a Dagster partition key: provider-version-hash
    label: str
    provider: str
    base_url: str | None
    version: str | None


def connection_of(settings) -> Connection:
    """The connection a `ConnectionSettings` points at.

    The built-in demo district is one connection whatever port it starts on; a CSV connection is the folder its
    exports are dropped into (dated exports in one folder are one connection).
    """
    if settings.needs_demo_provider:
        label, base_url = "demo (built-in demo district)", None
    elif not settings.is_rest:
        base_url = str(Path(settings.csv_path).expanduser().resolve().parent)
        label = f"csv {base_url}"
    else:
        base_url = redact_url(settings.base_url)
        label = settings.connection_label()
    version = settings.version
    digest = hashlib.sha1(label.encode()).hexdigest()[:8]
    connection_id = f"{settings.provider}-v{(version or 'x').replace('.', 'p')}-{digest}"
    return Connection(connection_id, label, settings.provider, base_url, version)


def active_connection(con: duckdb.DuckDBPyConnection) -> dict | None:
    rows = store.query_dicts(con, "SELECT * FROM provider_connections WHERE status = 'active'")
    return rows[0] if rows else None


def rebuildable_connection(con: duckdb.DuckDBPyConnection, connection_id: str | None = None) -> dict:
    """The active connection, which a rebuild recomputes the student tables of (the raw tables hold its snapshot).

    Raises NotActiveConnection when `connection_id` names another connection (a retired one, or one never active),
    or when no connection is active yet; None asks for the active one, whichever it is.
    """
    active = active_connection(con)
    if active is not None and connection_id in (None, active["connection_id"]):
        return active
    reasons = []
    if connection_id:
        rows = store.query_dicts(con, "SELECT status, retired_at FROM provider_connections WHERE connection_id = ?",
                                 [connection_id])
        if not rows:
            reasons.append(f"connection {connection_id} is not known here")
        elif rows[0]["retired_at"] is not None:
            reasons.append(f"connection {connection_id} was retired at {rows[0]['retired_at']:%Y-%m-%d %H:%M %Z}")
        else:
            reasons.append(f"connection {connection_id} is a {rows[0]['status']}, never active")
    if active is None:
        reasons.append("no connection is active yet (a sync that applies makes its connection active)")
    else:
        reasons.append("the raw tables hold the active connection's snapshot only: "
                       f"{active['label']} [{active['connection_id']}]")
    raise NotActiveConnection("; ".join(reasons))


def register(con: duckdb.DuckDBPyConnection, connection: Connection, status: str, now: datetime) -> None:
    """Insert the connection if it is new (an existing row keeps its status). Not INSERT ... ON CONFLICT: a DuckLake
    table has no key to conflict on (the callers' transaction, guarded there, keeps connection_id unique)."""
    con.execute(
        """INSERT INTO provider_connections SELECT ?, ?, ?, ?, ?, ?, ?, ?, NULL
           WHERE NOT EXISTS (SELECT 1 FROM provider_connections WHERE connection_id = ?)""",
        [connection.connection_id, connection.label, connection.provider, connection.base_url, connection.version,
         status, now, now if status == "active" else None, connection.connection_id])
    store.KEYED_INSERTS.setdefault(con, set()).add("provider_connections")


def require_active_connection(con: duckdb.DuckDBPyConnection, settings,
                              now: datetime | None = None) -> tuple[Connection, bool]:
    """The sync guard: returns (the configured connection, whether it is the active one already).

    `con` is open on the warehouse (used in a transaction of its own). While no connection is active (a district's
    first sync, or first syncs that all failed), the configured connection is registered as a `candidate` and the
    sync may run: `activate_connection` makes it active once the sync applied. When a
    connection is active, a sync whose configured connection is another one raises ConnectionChanged naming both
    connections and the procedure; a candidate left by a failed sync never blocks a different connection.
    """
    connection = connection_of(settings)
    active = _active_or_registered(con, connection, "candidate", now or datetime.now().astimezone())
    if active is None:
        return connection, False
    if active["connection_id"] == connection.connection_id:
        return connection, True
    raise _changed(connection, active)


def activate_connection(con: duckdb.DuckDBPyConnection, connection: Connection,
                        now: datetime | None = None) -> bool:
    """After a sync against `connection` applied: make it active when none is; True when this call activated it.

    Raises ConnectionChanged when another connection became active meanwhile (a concurrent first sync).
    """
    active = _active_or_registered(con, connection, "active", now or datetime.now().astimezone())
    if active is None:
        return True
    if active["connection_id"] != connection.connection_id:
        raise _changed(connection, active)
    return False


def _active_or_registered(con: duckdb.DuckDBPyConnection, connection: Connection, status: str,
                          now: datetime) -> dict | None:
    """The active connection; or, when none is, None after registering `connection` with `status` (`candidate`, or
    `active`: made the active one) in one transaction. Read first: while a connection is active nothing is written
    (on a lake: no snapshot, no writer guard for a transaction that would change nothing)."""
    active = active_connection(con)
    if active is not None:
        return active
    with store.transaction(con):
        active = active_connection(con)  # again, inside the transaction
        if active is None:
            register(con, connection, status, now)
            if status == "active":
                con.execute("UPDATE provider_connections SET status = 'active', activated_at = ?, retired_at = NULL "
                            "WHERE connection_id = ?", [now, connection.connection_id])
    return active


def _changed(connection: Connection, active: dict) -> ConnectionChanged:
    return ConnectionChanged(
        f"The configured OneRoster connection changed: configured {connection.label} "
        f"[{connection.connection_id}], active {active['label']} [{active['connection_id']}] since "
        f"{active['activated_at']:%Y-%m-%d %H:%M %Z}. Building and student syncs refuse to run against a new "
        "connection until the provider switch is done: run the job provider_switch (it builds id_crosswalk from "
        "the configured connection and applies it), then run rebuild_student_tables for the partition that run "
        f"names ({PROCEDURE}). If the change was not intended, restore the previous connection's environment "
        "variables. If this is another district, not a new provider for this one, give it its own DuckDB file: "
        "set ONEROSTER_DUCKDB_PATH to a new file.")
