"""The Dagster layer, one folder per domain (sync, provider_switch, alerts, setup), each with its `definitions.py`;
`oneroster_pipeline/definitions.py` merges them and binds the resources."""
