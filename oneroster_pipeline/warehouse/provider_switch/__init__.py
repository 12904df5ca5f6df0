"""Provider change without losing identity: connection tracking, the crosswalk, applying a switch, rebuilding."""

# Framework-free (no dagster import); `defs/provider_switch/` is the Dagster layer. This package's face: import from
# `oneroster_pipeline.warehouse.provider_switch`; `connections`, `crosswalk`, `report`, `apply` and `errors` hold
# the parts.
#
# - **Connections.** Every sync names the configured connection (`connection_of(settings)`: provider, base URL
#   without credentials, OneRoster version). While no connection is active, `require_active_connection` registers
#   the configured one as a `candidate` and lets the sync run; `activate_connection` makes it `active` once its
#   org pull or student sync applied (a failed first sync pins nothing, and a candidate never blocks another
#   connection). Once a connection is active, `require_active_connection` refuses any sync whose configured
#   connection is not that one (`ConnectionChanged`), so a changed environment never half-switches a district.
# - **Crosswalk.** `build_crosswalk` stages the new connection's orgs and students (`switch_orgs`, `switch_users`),
#   matches schools to buildings and students to students rule by rule (configurable order), and writes every
#   record with the rule that matched it, or `ambiguous` / `unmatched`, to `id_crosswalk`. A rule matches only
#   one-to-one pairs among the records still unmatched; a key shared by several records makes them all ambiguous
#   (a later, weaker rule is not tried for them). Thresholds block the switch for a person to review.
#   `report.COUNTS` defines every count of the crosswalk (each existing and each new record is counted once, as
#   matched, ambiguous or unmatched); `summary_line` gives them in one line for the run's log.
# - **Apply.** `apply_switch` (one transaction) keeps every `building_id` and `student_id`, rewrites `building_sis`,
#   `students.sourced_id`, `student_buildings` and `ignored_students` to the new ids, records each old -> new id in
#   `id_history`, replaces the raw tables with the new connection's pull, retires the old connection and activates
#   the new one. Nothing is deleted: an unmatched old student keeps its id (the next sync marks it inactive), an
#   unmatched new one arrives as a new student on the next sync.
# - **Rebuild.** `rebuild_student_tables` recomputes `students`, `student_buildings` and `ignored_students` from
#   the stored raw tables for the active connection (the backfill's unit of work); `rebuildable_connection`
#   says whether a requested connection is that one (NotActiveConnection: nothing to rebuild).

from .apply import RebuildResult, SwitchResult, apply_switch, latest_switch, rebuild_student_tables, switch_to_apply
from .connections import (
    Connection,
    activate_connection,
    active_connection,
    connection_of,
    rebuildable_connection,
    require_active_connection,
)
from .crosswalk import build_crosswalk
from .errors import PROCEDURE, ConnectionChanged, NotActiveConnection, SwitchBlocked, SwitchError
from .report import COUNTS, CrosswalkReport, connections_by_first_seen, crosswalk_query, summary_line

__all__ = [
    "COUNTS", "PROCEDURE", "Connection", "ConnectionChanged", "CrosswalkReport", "NotActiveConnection",
    "RebuildResult", "SwitchBlocked", "SwitchError", "SwitchResult", "activate_connection", "active_connection",
    "apply_switch", "build_crosswalk", "connection_of", "connections_by_first_seen", "crosswalk_query",
    "latest_switch", "rebuild_student_tables", "rebuildable_connection", "require_active_connection",
    "summary_line", "switch_to_apply",
]
