"""The normalised record shapes every source (REST 1.1, REST 1.2, CSV) yields.

One flat row per org and per user, as Arrow schemas. Batches of these rows are what flows from an HTTP page
(or a CSV chunk) into DuckDB; nothing downstream knows which OneRoster version or provider produced them.
"""

from __future__ import annotations

import pyarrow as pa

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

ORG_SCHEMA = pa.schema(
    [
        pa.field("sourced_id", pa.string(), nullable=False),
        # 'active' | 'tobedeleted' (the legacy value 'inactive' is normalised to 'tobedeleted')
        pa.field("status", pa.string()),
        pa.field("date_last_modified", UTC_TIMESTAMP),
        pa.field("name", pa.string()),
        # 'school' | 'district' | 'department' | 'local' | 'state' | 'national' (lower-cased)
        pa.field("type", pa.string()),
        pa.field("identifier", pa.string()),
        pa.field("parent_sourced_id", pa.string()),
        # a previous sourcedId the provider still tells us about (Infinite Campus 1.2 metadata.ic.legacysourceId)
        pa.field("legacy_sourced_id", pa.string()),
    ]
)

USER_SCHEMA = pa.schema(
    [
        pa.field("sourced_id", pa.string(), nullable=False),
        pa.field("status", pa.string()),
        pa.field("date_last_modified", UTC_TIMESTAMP),
        pa.field("username", pa.string()),
        pa.field("given_name", pa.string()),
        pa.field("family_name", pa.string()),
        pa.field("middle_name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("identifier", pa.string()),
        # 1.2 `userMasterIdentifier` (CSV: users.csv's column of that name); for 1.1 null
        pa.field("user_master_identifier", pa.string()),
        pa.field("enabled_user", pa.bool_()),
        # every role the user holds, lower-cased, deduplicated, in provider order (1.1: the single `role`)
        pa.field("roles", pa.list_(pa.string())),
        # sourcedIds of the user's orgs, deduplicated, in provider order (1.1 `orgs[]`, 1.2 `roles[].org`)
        pa.field("org_sourced_ids", pa.list_(pa.string())),
        # 1.2 `primaryOrg`; for 1.1 null
        pa.field("primary_org_sourced_id", pa.string()),
        pa.field("grades", pa.list_(pa.string())),
        pa.field("legacy_sourced_id", pa.string()),
    ]
)
