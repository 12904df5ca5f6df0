"""The Dagster layer, one folder per domain (sync, provider_switch, alerts, setup), each with its `definitions.py`
whose `build(layout, ...)` makes the domain's definitions from one `DistrictLayout` (`districts.py`);
`oneroster_pipeline/definitions.py` builds them all from the configuration and binds the resources."""
