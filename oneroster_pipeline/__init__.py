"""oneroster_pipeline: sync school buildings and students from a OneRoster provider into DuckDB.

The `client` and `demo` packages and the `store` module are framework-free (no dagster import); the Dagster code
location lives in `definitions.py` and the modules named after Dagster concepts.
"""

__version__ = "0.1.0"
