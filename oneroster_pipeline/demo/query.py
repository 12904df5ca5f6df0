"""OneRoster collection query parameters: `filter`, `sort`/`orderBy`, `fields`, `limit`/`offset`."""

# Filters are evaluated on the district's logical records (see district.py). Which field names a request may use
# depends on the entity and the OneRoster version (1.1 `role`; 1.2 `role` or `roles.role`). Any problem raises
# `QueryError`, which the server turns into a 400 imsx payload with the error's codeMinor.

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from oneroster_pipeline.demo.records import format_timestamp, parse_timestamp

Accessor = Callable[[dict], object]


def _plain(*names: str) -> dict[str, Accessor]:
    return {name: operator.itemgetter(name) for name in names}


ORG_FIELDS: dict[str, Accessor] = {
    **_plain("sourcedId", "status", "dateLastModified", "name", "type", "identifier"),
    "parent.sourcedId": lambda r: r["parent"] or "",
}
_USER_FIELDS: dict[str, Accessor] = {
    **_plain("sourcedId", "status", "dateLastModified", "username", "givenName", "familyName", "middleName",
             "identifier", "email", "role", "grades"),
    "enabledUser": lambda r: "true" if r["enabledUser"] else "false",
}
USER_FIELDS = {
    "1.1": _USER_FIELDS,
    "1.2": {**_USER_FIELDS, "roles.role": operator.itemgetter("role"),
            **_plain("userMasterIdentifier", "preferredFirstName")},
}

_CLAUSE = re.compile(r"^\s*([A-Za-z][\w.]*)\s*(!=|>=|<=|=|>|<|~)\s*'(.*)'\s*$", re.DOTALL)
_JOINS = (" AND ", " OR ")
_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "=": operator.eq, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "~": lambda actual, expected: expected.lower() in actual.lower(),  # contains, case-insensitive
}


class QueryError(ValueError):
    """A bad query parameter; `code_minor` is the imsx codeMinor value to report."""

    def __init__(self, message: str, code_minor: str = "invalid_selection_field") -> None:
        super().__init__(message)
        self.code_minor = code_minor


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str
    accessor: Accessor

    def matches(self, record: dict) -> bool:
        actual = self.accessor(record)
        values = actual if isinstance(actual, list) else [actual]
        if self.op == "!=":
            return all(v != self.value for v in values)
        compare = _OPERATORS[self.op]
        return any(compare(str(v), self.value) for v in values)


@dataclass(frozen=True)
class Filter:
    """One clause, or two joined by AND / OR."""

    clauses: tuple[Clause, ...]
    join: str = "AND"

    def __call__(self, record: dict) -> bool:
        results = (c.matches(record) for c in self.clauses)
        return all(results) if self.join == "AND" else any(results)


def parse_filter(text: str, fields: dict[str, Accessor]) -> Filter:
    """Parse `field op 'value'` optionally joined once by ` AND ` / ` OR `; values may contain quotes (O'Brien)."""
    for join in _JOINS:
        start = text.find(join)
        while start != -1:
            left, right = _match(text[:start]), _match(text[start + len(join):])
            if left and right:
                return Filter((_clause(left, fields), _clause(right, fields)), join.strip())
            start = text.find(join, start + 1)
    single = _match(text)
    if not single:
        raise QueryError(f"cannot parse filter {text!r}; expected field op 'value' [AND|OR field op 'value']",
                         "invalid_filter_field")
    return Filter((_clause(single, fields),))


def _match(text: str) -> tuple[str, str, str] | None:
    m = _CLAUSE.match(text)
    return (m.group(1), m.group(2), m.group(3).replace("''", "'")) if m else None


def _clause(parts: tuple[str, str, str], fields: dict[str, Accessor]) -> Clause:
    field, op, value = parts
    if field not in fields:
        raise QueryError(f"unknown filter field {field!r}; supported: {', '.join(sorted(fields))}",
                         "invalid_filter_field")
    if field == "dateLastModified":
        try:
            value = format_timestamp(parse_timestamp(value))  # compare as instants: our strings sort like them
        except ValueError:
            raise QueryError(f"dateLastModified needs an ISO 8601 date-time, not {value!r}",
                             "invalid_filter_field") from None
    return Clause(field, op, value, fields[field])


def parse_sort(field: str | None, order: str | None, fields: dict[str, Accessor]) -> tuple[str | None, bool]:
    """(sort field or None, descending?) after validating `sort` and `orderBy`."""
    if order not in (None, "asc", "desc"):
        raise QueryError(f"orderBy must be asc or desc, not {order!r}")
    if field is None:
        return None, False
    if field not in fields or field == "grades":
        raise QueryError(f"cannot sort on {field!r}")
    return field, order == "desc"


def parse_fields(text: str | None, allowed: frozenset[str]) -> tuple[str, ...] | None:
    """The requested `fields=` names (comma separated) or None for all; unknown names are an error."""
    if text is None:
        return None
    requested = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in requested if f not in allowed]
    if unknown or not requested:
        raise QueryError(f"unknown fields {unknown}; available: {', '.join(sorted(allowed))}")
    return requested


def parse_paging(limit: str | None, offset: str | None, default_limit: int = 100) -> tuple[int, int]:
    """(limit, offset) as non-negative ints (limit at least 1)."""
    try:
        result = (int(limit) if limit is not None else default_limit, int(offset) if offset is not None else 0)
    except ValueError:
        raise QueryError(f"limit/offset must be integers, got limit={limit!r} offset={offset!r}") from None
    if result[0] < 1 or result[1] < 0:
        raise QueryError(f"limit must be >= 1 and offset >= 0, got limit={limit!r} offset={offset!r}")
    return result
