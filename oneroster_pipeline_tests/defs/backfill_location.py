"""A code location built from the environment when it is loaded, as `dagster dev` loads the real one.

test_provider_switch.py sets the ONEROSTER_* variables, then lets Dagster's backfill daemon load this file.
"""

import dagster as dg

from oneroster_pipeline.definitions import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
