"""Alerts: run-failure and failed-check sensors, and the in-run hooks that record failures."""
