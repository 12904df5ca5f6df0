"""The DuckDB table an asset is, as Dagster shows it: its `dagster/column_schema` (a `TableSchema`: every column's
name, DuckDB type and whether it may be NULL), built from the warehouse's own table definitions
(`warehouse/columns.py`, which reads `store.TABLES_DDL`), so the UI's columns are always the table's."""

import dagster as dg

from oneroster_pipeline.warehouse.columns import columns_of

COLUMN_SCHEMA = "dagster/column_schema"


def column_schema(table: str) -> dg.TableSchema:
    """The columns of the DuckDB table `table`, as Dagster's table schema."""
    return dg.TableSchema(columns=[
        dg.TableColumn(column.name, column.type, constraints=dg.TableColumnConstraints(nullable=column.nullable))
        for column in columns_of(table)])


def table_metadata(table: str) -> dict:
    """The definition metadata of an asset that is the DuckDB table `table`."""
    return {COLUMN_SCHEMA: column_schema(table)}


def as_table(spec: dg.AssetSpec) -> dg.AssetSpec:
    """`spec` with the column schema of the DuckDB table its key names."""
    return spec.merge_attributes(metadata=table_metadata(spec.key.to_user_string()))
