"""The connection test's command line: the options, the table and the summary printed, the exit code (0 when the
connection works). The command is `python -m oneroster_pipeline.connection_test`, which reads the package's
configuration and gives this the built-in demo district to start when no provider is configured (`start_demo`):
the client itself never starts the demo."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack

from ..settings import ConnectionSettings, SettingsError
from .buildings import known_buildings
from .probe import connection_test

__all__ = ["main"]

# settings that need the demo provider -> a context manager yielding them pointed at a started one, and a line to print
StartDemo = Callable[[ConnectionSettings], AbstractContextManager[tuple[ConnectionSettings, str]]]


def main(argv: list[str] | None, env: Mapping[str, str], start_demo: StartDemo | None = None,
         prog: str = "python -m oneroster_pipeline.connection_test") -> int:
    """Test the connection `env`'s ONEROSTER_* variables configure. Without `start_demo`, settings that need the
    built-in demo provider are refused (as by every source: no demo is started here)."""
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Check a OneRoster connection (settings from ONEROSTER_* variables).")
    parser.add_argument("--building-sis", nargs="+", default=None, metavar="ID",
                        help="known building SIS ids (also comma separated) to compare with the schools visible")
    parser.add_argument("--buildings-csv", default=None, metavar="FILE",
                        help="a buildings CSV (name,building_sis); default ONEROSTER_BUILDINGS_CSV when set")
    args = parser.parse_args(argv or [])
    try:
        settings = ConnectionSettings.from_env(env)
        demo = start_demo(settings) if settings.needs_demo_provider and start_demo is not None else None
        buildings = None
        csv_path = args.buildings_csv or (env.get("ONEROSTER_BUILDINGS_CSV") or "").strip() or None
        if csv_path:
            buildings = known_buildings(csv_path)
        if args.building_sis:
            buildings = (buildings or []) + [b for arg in args.building_sis for b in re.split(r"[,\s]+", arg) if b]
    except (SettingsError, OSError) as error:
        print(f"connection test failed: {error}", file=sys.stderr)
        return 1
    with ExitStack() as stack:
        if demo is not None:  # the same district the sync starts (ONEROSTER_DEMO_* shape)
            settings, started = stack.enter_context(demo)
            print(started)
        report = connection_test(settings, buildings)
    print(f"connection: {report.connection}")
    # a failure's error is printed once: on stderr, at the end
    print(report.as_table(failure_detail="failed: the error is below"))
    # the summary below the table, without what the table already said (warnings, a failure)
    print("\n".join(line for line in report.as_lines()[1:]
                    if not line.startswith("warning: ") and (report.ok or not line.startswith("result:"))))
    if not report.ok:
        print(f"connection test failed: {report.error}", file=sys.stderr)
    return 0 if report.ok else 1
