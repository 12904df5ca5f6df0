"""The warehouse: the DuckDB store and the sync logic over it (building and student sync SQL, hold
policy, provider switch, alert delivery). Framework-free: nothing here imports dagster.
"""
