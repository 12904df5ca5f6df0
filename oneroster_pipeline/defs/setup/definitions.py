"""The setup domain's Definitions: the connection test asset and its job."""

import dagster as dg

from .assets import provider_connection_test
from .jobs import test_connection

defs = dg.Definitions(assets=[provider_connection_test], jobs=[test_connection])
