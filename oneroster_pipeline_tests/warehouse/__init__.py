"""Tests of the warehouse: DuckDB store, building and student sync, holds, pulls, policy, provider switch."""
