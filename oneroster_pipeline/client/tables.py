"""A page of OneRoster org or user objects -> one Arrow table, column by column (the client's hot path).

Each field is gathered once per page, enumerations are converted once per distinct value by the rules of
normalize.py, and dates are parsed by Arrow; a record this fast path cannot vouch for is normalised on its own by
normalize.py's per-record path, which decides its row (and the values it drops) or its `Rejection` exactly as the
rules say. `timestamps` is the date rule over an Arrow string column (the CSV source uses it too).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from .normalize import (
    _ROLES,
    USER_TEXT_FIELDS,
    Rejection,
    _columns,
    _enabled,
    _grades,
    _is_primary,
    _legacy,
    _org_row,
    _org_type,
    _ref,
    _Reject,
    _role,
    _rows,
    _status,
    _timestamp,
    _unique,
    _user_row,
)
from .schemas import ORG_SCHEMA, USER_SCHEMA, UTC_TIMESTAMP


def orgs_table(records: Iterable[object], location: str, rejections: list[Rejection]) -> pa.Table:
    """Org objects -> an ORG_SCHEMA table; unusable records are appended to `rejections`."""
    records = records if records.__class__ is list else list(records)
    fast, positions, slow = _org_columns(records)
    table = pa.Table.from_arrays(fast, schema=ORG_SCHEMA)
    if not slow:
        return table
    rows = _rows(slow, _org_row, "org", location, rejections)
    return _in_page_order(table, positions, ORG_SCHEMA, rows, None, None)


def users_table(records: Iterable[object], location: str, rejections: list[Rejection],
                role: str | None = None) -> tuple[pa.Table, int]:
    """User objects -> (USER_SCHEMA table, count left out because none of their (known) roles is `role`);
    rejections as for orgs. Every record is exactly one of: a row, a rejection, a skipped one."""
    records = records if records.__class__ is list else list(records)
    fast, positions, slow = _user_columns(records)
    table = pa.Table.from_arrays(fast, schema=USER_SCHEMA)
    # a vouched record has exactly one role: the one of its `role` (1.1) or its only roles[] entry (1.2)
    keep = None if role is None else pc.equal(table.column(_ROLES).combine_chunks().flatten(), role)
    if not slow:
        if keep is None:
            return table, 0
        kept = table.filter(keep)
        return kept, table.num_rows - kept.num_rows
    rows = _rows(slow, _user_row, "user", location, rejections, _holding(role))
    kept = _in_page_order(table, positions, USER_SCHEMA, rows, keep, role)
    return kept, table.num_rows + len(rows) - kept.num_rows


def _users_per_record(records: Iterable[object], location: str, rejections: list[Rejection],
                      role: str | None = None) -> tuple[pa.Table, int]:
    """`users_table` one record at a time, without the columnar fast path (the reference its tests compare to)."""
    rows = [r for _, r in _rows(enumerate(records), _user_row, "user", location, rejections, _holding(role))]
    kept = rows if role is None else [r for r in rows if role in r[_ROLES]]
    return pa.Table.from_pydict(_columns(USER_SCHEMA, kept), schema=USER_SCHEMA), len(rows) - len(kept)


def _holding(role: str | None):
    """Whether a row is kept by the role filter (its dropped values are reported only then); None: every row."""
    return None if role is None else lambda row: role in row[_ROLES]


def _orgs_per_record(records: Iterable[object], location: str, rejections: list[Rejection]) -> pa.Table:
    """`orgs_table` one record at a time, without the columnar fast path."""
    rows = [r for _, r in _rows(enumerate(records), _org_row, "org", location, rejections)]
    return pa.Table.from_pydict(_columns(ORG_SCHEMA, rows), schema=ORG_SCHEMA)


def _in_page_order(fast: pa.Table, positions: list[int], schema: pa.Schema, rows: list[tuple[int, tuple]],
                   keep: pa.Array | None, role: str | None) -> pa.Table:
    """The fast path's rows (at `positions` of the page) and the per-record path's (position, row) pairs, as one
    table in page order; when `keep` (the fast rows holding `role`) is given, only rows holding `role`."""
    slow = pa.Table.from_pydict(_columns(schema, [r for _, r in rows]), schema=schema)
    where = positions + [p for p, _ in rows]
    order = sorted(range(len(where)), key=where.__getitem__)
    if keep is not None:
        held = keep.to_pylist() + [role in r[_ROLES] for _, r in rows]
        order = [i for i in order if held[i]]
    return pa.concat_tables([fast, slow]).take(pa.array(order, pa.int64()))


# ------------------------------------------------------------------------------------------ the columnar fast path
# A page is normalised column by column: each field gathered once, enumerations converted once per distinct value
# (by the functions above, so the rule is the same), dates parsed by Arrow. A record the fast path cannot vouch for
# (not a plain dict, a value that is not a string or null where one is expected, an uncommon shape of roles/orgs, a
# value the rules refuse or drop, a date `_timestamp` refuses) is left to the per-record path (`_rows`), which
# decides its row (and its dropped values) or its rejection exactly as before; the fast path never rejects or drops
# anything itself.

_BAD = object()  # a value the fast path does not vouch for: its record takes the per-record path
_EMPTY: dict = {}
# the dates Arrow's cast parses exactly as `_timestamp` does (datetime.fromisoformat, then UTC): a 'T', seconds,
# 1-6 fraction digits, an offset or Z, years 1900-2099 (far from datetime's bounds); others go through `_timestamp`
_ISO_DATE = (r"^(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
             r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")


def _attempt(convert, value: object) -> object:
    try:
        return convert(value)
    except _Reject:
        return _BAD


def _enum_column(values: list, convert, booleans: bool = False) -> list:
    """`convert` of each string or null (once per distinct value), _BAD where it refuses or the value is of another
    JSON type (JSON booleans pass as themselves when `booleans`)."""
    memo = {v: _attempt(convert, v) for v in {v for v in values if v.__class__ is str}}
    memo[None] = _attempt(convert, None)
    if booleans:
        memo[True], memo[False] = True, False  # only looked up for real booleans: 1 == True is never asked
        return [memo[v] if v.__class__ is str or v is None or v.__class__ is bool else _BAD for v in values]
    return [memo[v] if v.__class__ is str or v is None else _BAD for v in values]


def _text_column(values: list) -> list:
    """`_text` of strings and nulls; _BAD for other JSON types (their str() is left to the per-record path)."""
    return [v.strip() or None if v.__class__ is str else None if v is None else _BAD for v in values]


def _id_column(values: list) -> list:
    """Record sourcedIds as given (opaque, `_id`); _BAD for a missing, blank or non-string one (its rejection)."""
    return [v if v.__class__ is str and v.strip() else _BAD for v in values]


def _timestamp_column(values: list) -> tuple[pa.Array, list[int]]:
    """`_timestamp` of each value as a UTC_TIMESTAMP array, and the positions it refuses (null in the array)."""
    try:
        strings = pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):  # a non-string; a lone surrogate
        strings = None
    if strings is not None:
        return timestamps(strings)
    parsed = [_attempt(_timestamp, v) for v in values]
    bad = [i for i, v in enumerate(parsed) if v is _BAD]
    for i in bad:
        parsed[i] = None
    return pa.array(parsed, UTC_TIMESTAMP), bad


def timestamps(strings: pa.Array) -> tuple[pa.Array, list[int]]:
    """normalize's date rule (`_timestamp`) over a string array, for REST pages and CSV batches alike: a
    UTC_TIMESTAMP array and the positions whose value it refuses (null there). The strict ISO form is cast by Arrow
    (exactly what `_timestamp` gives); any other value goes through `_timestamp`, once per distinct value."""
    strings = pc.if_else(pc.equal(strings, ""), None, strings)
    iso = pc.fill_null(pc.match_substring_regex(strings, _ISO_DATE), False)
    others = pc.and_(pc.invert(iso), pc.is_valid(strings))
    try:
        cast = pc.if_else(iso, strings, None).cast(UTC_TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. 31 February: every value the per-value way
        cast, others = pa.nulls(len(strings), UTC_TIMESTAMP), pc.is_valid(strings)
    if not pc.any(others).as_py():
        return cast, []
    rest = pc.filter(strings, others)
    distinct = pc.unique(rest)
    parsed = [_attempt(_timestamp, v) for v in distinct.to_pylist()]
    index = pc.index_in(rest, value_set=distinct)
    values = pa.array([None if v is _BAD else v for v in parsed], UTC_TIMESTAMP).take(index)
    refused = pa.array([v is _BAD for v in parsed], pa.bool_()).take(index)
    where = pc.indices_nonzero(others)
    return pc.replace_with_mask(cast, others, values), pc.filter(where, refused).to_pylist()


def _vouched(columns: list[list], n: int, extra_bad: list[int]) -> tuple[list[int], list[int]]:
    """(positions every column vouches for, the others)."""
    bad = set(extra_bad)
    for column in columns:
        if _BAD in column:
            bad.update(i for i, v in enumerate(column) if v is _BAD)
    if not bad:
        return list(range(n)), []
    return [i for i in range(n) if i not in bad], sorted(bad)


def _pick(column: list, positions: list[int], n: int) -> list:
    return column if len(positions) == n else [column[i] for i in positions]


@lru_cache(maxsize=8)
def _offsets(n: int) -> pa.Array:
    """0, 1, ..., n: the offsets of n one-element lists (a page size repeats: kept)."""
    return pa.array(range(n + 1), pa.int32())


def _org_list(listed: object) -> list[str]:
    """A 1.1 user's org list, as `_user_row` makes it."""
    return _unique(_ref(o) for o in listed) if listed.__class__ is list else []


def _legacy_column(dicts: list[dict]) -> list:
    """`_legacy` of each record's metadata (a metadata object without `ic` is the common case: None); _BAD where it
    refuses the value (a metadata that is not an object, an unreadable legacysourceId)."""
    return [(_attempt(_legacy, m) if "ic" in m else None) if m.__class__ is dict else None if m is None else _BAD
            for m in (r.get("metadata") for r in dicts)]


def _org_columns(records: list) -> tuple[list[pa.Array], list[int], list[tuple[int, object]]]:
    """(ORG_SCHEMA arrays of the vouched records, their positions, the other (position, record) pairs)."""
    n = len(records)
    dicts = [r if r.__class__ is dict else _EMPTY for r in records]
    ids = _id_column([r.get("sourcedId") for r in dicts])
    status = _enum_column([r.get("status") for r in dicts], _status)
    kind = _enum_column([r.get("type") for r in dicts], _org_type)
    dates, bad_dates = _timestamp_column([r.get("dateLastModified") for r in dicts])
    name = _text_column([r.get("name") for r in dicts])
    identifier = _text_column([r.get("identifier") for r in dicts])
    parent = [_ref(r.get("parent")) for r in dicts]
    legacy = _legacy_column(dicts)
    good, bad = _vouched([ids, status, kind, name, identifier, legacy], n, bad_dates)
    arrays = [pa.array(_pick(c, good, n), f.type) for c, f in
              zip((ids, status), ORG_SCHEMA)]
    arrays.append(dates if not bad else dates.take(pa.array(good, pa.int64())))
    arrays += [pa.array(_pick(c, good, n), f.type) for c, f in
               zip((name, kind, identifier, parent, legacy), list(ORG_SCHEMA)[3:])]
    return arrays, good, [(i, records[i]) for i in bad]


def _user_columns(records: list) -> tuple[list[pa.Array], list[int], list[tuple[int, object]]]:
    """(USER_SCHEMA arrays of the vouched records, their positions, the other (position, record) pairs). Vouched
    shapes: 1.1 (no `roles`, a `role`, `orgs` a list or absent) and the common 1.2 one (one roles[] entry, no
    `orgs`): both give exactly one role."""
    n = len(records)
    dicts = [r if r.__class__ is dict else _EMPTY for r in records]
    ids = _id_column([r.get("sourcedId") for r in dicts])
    status = _enum_column([r.get("status") for r in dicts], _status)
    dates, bad_dates = _timestamp_column([r.get("dateLastModified") for r in dicts])
    texts = [_text_column([r.get(key) for r in dicts]) for key in USER_TEXT_FIELDS]
    enabled = _enum_column([r.get("enabledUser") for r in dicts], _enabled, booleans=True)
    every_11 = [r.get("roles") for r in dicts].count(None) == n
    role_primary = None  # per record: the org of its one roles[] entry when that entry's roleType is primary
    if every_11:  # a 1.1 page (as `_user_row`: role_names = [role], orgs = orgs[] when it is a list)
        named = [r.get("role") for r in dicts]
        orgs = [([org] if (org := only.get("sourcedId")).strip() else [])
                if listed.__class__ is list and len(listed) == 1 and (only := listed[0]).__class__ is dict
                and only.get("sourcedId").__class__ is str else _org_list(listed)
                for listed in (r.get("orgs") for r in dicts)]
    else:
        named, orgs, role_primary = [], [], []
        for r in dicts:
            roles, listed = r.get("roles"), r.get("orgs")
            org = None
            if roles is None:
                named.append(r.get("role"))
                orgs.append(_org_list(listed))
            elif roles.__class__ is list and len(roles) == 1 and (only := roles[0]).__class__ is dict \
                    and listed is None:  # the common 1.2 shape, as in `_user_row`
                named.append(only.get("role"))
                org = _ref(only.get("org"))
                orgs.append([org] if org else [])
                org = org if _is_primary(only.get("roleType")) else None
            else:
                named.append(_BAD)
                orgs.append(None)
            role_primary.append(org)
    roles = _enum_column(named, _role)
    grades = [([grade] if (grade := value[0].strip()) else [])
              if value.__class__ is list and len(value) == 1 and value[0].__class__ is str
              else _attempt(_grades, value) for value in (r.get("grades") for r in dicts)]
    legacy = _legacy_column(dicts)
    good, bad = _vouched([ids, status, enabled, roles, *texts, grades, legacy], n, bad_dates)
    # primaryOrg, else the org of a student role whose roleType is primary (as `_user_row`)
    primary = [None if v is None else _ref(v) for v in (r.get("primaryOrg") for r in dicts)]
    if role_primary is not None:
        primary = [p or (o if o and role == "student" else None)
                   for p, o, role in zip(primary, role_primary, roles)]
    fields = list(USER_SCHEMA)
    arrays = [pa.array(_pick(c, good, n), f.type) for c, f in zip((ids, status), fields)]
    arrays.append(dates if not bad else dates.take(pa.array(good, pa.int64())))
    arrays += [pa.array(_pick(c, good, n), f.type) for c, f in zip((*texts, enabled), fields[3:_ROLES])]
    role_values = pa.array(_pick(roles, good, n), pa.string())
    arrays.append(pa.ListArray.from_arrays(_offsets(len(good)), role_values))
    arrays += [pa.array(_pick(c, good, n), f.type) for c, f in
               zip((orgs, primary, grades, legacy), fields[_ROLES + 1:])]
    return arrays, good, [(i, records[i]) for i in bad]
