"""Tests of the Dagster layer (`oneroster_pipeline/defs/`, `definitions.py`): jobs run in process against demo
providers over HTTP and a temporary DuckDB file."""
