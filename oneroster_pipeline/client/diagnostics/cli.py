"""The connection test command: `python -m oneroster_pipeline.client.connection_test [--building-sis ID ...]
[--buildings-csv FILE]` (also `-m oneroster_pipeline.client.diagnostics`); exits 0 when the connection works."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from contextlib import ExitStack

from ..builtin_demo import DemoShape, start_demo_district
from ..settings import ConnectionSettings, SettingsError
from .buildings import known_buildings
from .probe import connection_test

__all__ = ["main"]


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`env`: the variables to test with; default the configuration every command reads (the environment, then
    the project folder's .env over it, as a run reads them)."""
    if env is None:
        from oneroster_pipeline.config import Config  # noqa: PLC0415  (the package's configuration, not the client's)

        config = Config.load()
        print(config.describe())
        env = config.env
    parser = argparse.ArgumentParser(prog="python -m oneroster_pipeline.client.connection_test",
                                     description="Check a OneRoster connection (settings from ONEROSTER_* variables).")
    parser.add_argument("--building-sis", nargs="+", default=None, metavar="ID",
                        help="known building SIS ids (also comma separated) to compare with the schools visible")
    parser.add_argument("--buildings-csv", default=None, metavar="FILE",
                        help="a buildings CSV (name,building_sis); default ONEROSTER_BUILDINGS_CSV when set")
    args = parser.parse_args(argv or [])
    try:
        settings = ConnectionSettings.from_env(env)
        shape = DemoShape.from_env(env) if settings.needs_demo_provider else None
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
        if settings.needs_demo_provider:  # the same district the sync starts (ONEROSTER_DEMO_* shape)
            settings, _ = stack.enter_context(start_demo_district(settings, shape))
            print(f"(no provider configured: started the built-in demo provider with the sync's demo district "
                  f"({shape.describe()}) at {settings.base_url})")
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
