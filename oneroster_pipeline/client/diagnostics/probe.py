"""`connection_test`: open the source (or take an open one), run the REST or the CSV export probes, never raise."""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import ExitStack

from ..errors import OneRosterError
from ..rest import RestSource
from ..settings import ConnectionSettings, SettingsError
from ..sources import open_source
from .export_probes import probe_export
from .report import ConnectionReport
from .rest_probes import probe_rest

__all__ = ["connection_test"]


def connection_test(source_or_settings, building_sis: Iterable[str] | None = None) -> ConnectionReport:
    """Test a connection (an open source, or settings to open one with); never raises for a provider problem.
    `building_sis`: the district's known buildings, to report schools without a building and vice versa."""
    started = time.monotonic()
    settings = getattr(source_or_settings, "settings", source_or_settings)
    report = ConnectionReport(False, settings.connection_label(), settings.version, settings.auth)
    buildings = None if building_sis is None else {b.strip() for b in building_sis if b and b.strip()}
    try:
        with ExitStack() as stack:
            source = source_or_settings
            if isinstance(source_or_settings, ConnectionSettings):
                source = stack.enter_context(open_source(source_or_settings))
            # what the source found out (a CSV export's version is its manifest's)
            report.version = getattr(source, "settings", settings).version or report.version
            if isinstance(source, RestSource):
                probe_rest(source, report, buildings)
            else:
                probe_export(source, report, buildings)
        report.ok = True
    except (OneRosterError, SettingsError, OSError, ValueError) as error:
        report.error = str(error)  # the final `result` row says it (once)
    report.elapsed_seconds = round(time.monotonic() - started, 3)
    return report
