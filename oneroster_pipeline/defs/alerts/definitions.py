"""The alerts domain's Definitions: the alert sensors (the hooks ride on the jobs that use them)."""

import dagster as dg

from .sensors import failed_check_alert, sync_canceled_alert, sync_failure_alert

defs = dg.Definitions(sensors=[sync_failure_alert, sync_canceled_alert, failed_check_alert])
