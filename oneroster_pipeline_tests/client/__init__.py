"""Tests of the framework-free OneRoster client (`oneroster_pipeline/client/`), laid out like the package."""
