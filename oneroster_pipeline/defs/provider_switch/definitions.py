"""The provider change domain's Definitions: crosswalk, switch and rebuild assets with their jobs."""

import dagster as dg

from .assets import id_crosswalk, provider_connections, student_tables_by_connection
from .jobs import PROVIDER_SWITCH_JOBS

defs = dg.Definitions(assets=[id_crosswalk, provider_connections, student_tables_by_connection],
                      jobs=PROVIDER_SWITCH_JOBS)
