"""The Dagster layer, one folder per domain (assets, checks, jobs, schedules, sensors); `definitions.py`
at the package root merges them.
"""
