"""OneRoster 1.1 / 1.2 org and user objects -> the flat rows of records.py, one `pa.Table` per page.

Parsing is lenient where providers differ (enabledUser spellings, `inactive`, JSON nulls vs empty strings, 1.1
`role` + `orgs[]` vs 1.2 `roles[]` + `primaryOrg`), so the same district yields the same rows from any provider.
A record that cannot be normalised (no sourcedId, an unparseable dateLastModified, an enabledUser that is not a
boolean) becomes a `Rejection` naming the field and reason (no payload values beyond its id) and the rest of the
page goes on. `password` is never read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from .records import ORG_SCHEMA, USER_SCHEMA

_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})
_ROLES = USER_SCHEMA.get_field_index("roles")


@dataclass(frozen=True)
class Rejection:
    """A record left out of a pull. `location` says where it was (endpoint, offset, position in the page)."""

    entity: str  # "org" | "user"
    sourced_id: str | None
    location: str
    field: str
    reason: str


class _Reject(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def orgs_table(records: Iterable[object], location: str, rejections: list[Rejection]) -> pa.Table:
    """Org objects -> an ORG_SCHEMA table; unusable records are appended to `rejections`."""
    rows = _rows(records, _org_row, "org", location, rejections)
    return pa.Table.from_pydict(_columns(ORG_SCHEMA, rows), schema=ORG_SCHEMA)


def users_table(records: Iterable[object], location: str, rejections: list[Rejection],
                role: str | None = None) -> tuple[pa.Table, int]:
    """User objects -> (USER_SCHEMA table, count left out because they lack `role`); rejections as for orgs."""
    rows = _rows(records, _user_row, "user", location, rejections)
    kept = rows if role is None else [r for r in rows if role in r[_ROLES]]
    return pa.Table.from_pydict(_columns(USER_SCHEMA, kept), schema=USER_SCHEMA), len(rows) - len(kept)


def _rows(records, make_row, entity: str, location: str, rejections: list[Rejection]) -> list[tuple]:
    rows = []
    for position, record in enumerate(records):
        sourced_id = record.get("sourcedId") if isinstance(record, dict) else None
        sourced_id = sourced_id if isinstance(sourced_id, str) and sourced_id.strip() else None
        try:
            if not isinstance(record, dict):
                raise _Reject("(record)", "not a JSON object")
            if sourced_id is None:
                raise _Reject("sourcedId", "missing or empty")
            rows.append(make_row(record, sourced_id.strip()))
        except _Reject as reject:
            rejections.append(Rejection(entity, sourced_id, f"{location}, item {position}", reject.field,
                                        reject.reason))
    return rows


def _columns(schema: pa.Schema, rows: list[tuple]) -> dict[str, list]:
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return {field.name: list(values) for field, values in zip(schema, columns)}


def _org_row(o: dict, sourced_id: str) -> tuple:
    return (sourced_id, _status(o.get("status")), _timestamp(o.get("dateLastModified")), _text(o.get("name")),
            _lower(o.get("type")), _text(o.get("identifier")), _ref(o.get("parent")), _legacy(o.get("metadata")))


def _user_row(u: dict, sourced_id: str) -> tuple:
    get = u.get
    roles = get("roles")
    listed = get("orgs")
    if roles.__class__ is list and len(roles) == 1 and roles[0].__class__ is dict and listed is None:
        only = roles[0]  # the common 1.2 shape: one role in one org
        role, org = _lower(only.get("role")), _ref(only.get("org"))
        role_list, org_list = [role] if role else [], [org] if org else []
    else:
        if roles.__class__ is list and roles:
            role_names = [r.get("role") for r in roles if isinstance(r, dict)]
            orgs = [r.get("org") for r in roles if isinstance(r, dict)]
        else:
            role_names, orgs = [get("role")], []
        if listed.__class__ is list:
            orgs += listed
        role_list, org_list = _unique(_lower(r) for r in role_names), _unique(_ref(o) for o in orgs)
    enabled = get("enabledUser")
    text = _text
    return (sourced_id, _status(get("status")), _timestamp(get("dateLastModified")), text(get("username")),
            text(get("givenName")), text(get("familyName")), text(get("middleName")),
            text(get("email")), text(get("identifier")),
            enabled if enabled is None or enabled is True or enabled is False else _enabled(enabled),
            role_list, org_list, _ref(get("primaryOrg")), _grades(get("grades")), _legacy(get("metadata")))


def _text(value: object) -> str | None:
    if value.__class__ is str:
        return value.strip() or None
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _lower(value: object) -> str | None:
    text = _text(value)
    return text.lower() if text else None


def _status(value: object) -> str | None:
    if value == "active":
        return value
    status = _lower(value)
    return "tobedeleted" if status == "inactive" else status


def _timestamp(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Reject("dateLastModified", "not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed if parsed.tzinfo is timezone.utc else parsed.astimezone(timezone.utc)


def _enabled(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Reject("enabledUser", "not a boolean (expected true/false)")


def _ref(value: object) -> str | None:
    """The sourcedId of a GUID ref (`{"href", "sourcedId", "type"}`); a bare id string is accepted too."""
    return _text(value.get("sourcedId")) if isinstance(value, dict) else _text(value)


def _unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _grades(value: object) -> list[str]:
    if value.__class__ is list and len(value) == 1 and value[0].__class__ is str:
        grade = value[0].strip()
        return [grade] if grade else []
    if isinstance(value, str):
        value = value.split(",")
    return _unique(_text(g) for g in value) if isinstance(value, list) else []


def _legacy(metadata: object) -> str | None:
    if metadata is None:
        return None
    ic = metadata.get("ic") if isinstance(metadata, dict) else None
    return _text(ic.get("legacysourceId")) if isinstance(ic, dict) else None
