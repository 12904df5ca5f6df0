"""oneroster_pipeline: sync school buildings and students from a OneRoster provider into DuckDB.

The `client` and `demo` packages and the `store` module are framework-free (no dagster import); the Dagster code
location lives in `definitions.py` and the modules named after Dagster concepts.
"""

from oneroster_pipeline.client.redaction import install_log_redaction

__version__ = "0.1.0"

# every `logging` record of a process that imports the project passes the one redactor (client/redaction.py)
install_log_redaction()
