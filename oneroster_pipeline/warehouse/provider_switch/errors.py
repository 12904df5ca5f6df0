"""Why a provider switch or a sync stops: the configured connection changed, a switch cannot be built or applied,
or the crosswalk waits for a person."""

from __future__ import annotations

PROCEDURE = "README, section 'Changing provider'"


class ConnectionChanged(RuntimeError):
    """The configured connection is not the active one: syncs refuse until the switch is applied."""


class SwitchError(RuntimeError):
    """A switch cannot be built or applied (nothing was changed); the message says why and what to do."""


class NotActiveConnection(SwitchError):
    """A rebuild asked for a connection that is not the active one (retired, never active, or none is active): there
    is nothing of it to rebuild from, so the rebuild does nothing."""


class SwitchBlocked(SwitchError):
    """The crosswalk exceeds a threshold: a person reviews `id_crosswalk` and approves with the run tag."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons
