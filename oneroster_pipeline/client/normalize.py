"""OneRoster 1.1 / 1.2 org and user objects -> the flat rows of schemas.py, one `pa.Table` per page.

Parsing is lenient where providers differ in form (enabledUser as a JSON boolean or a string in any case, JSON nulls
vs empty strings, 1.1 `role` + `orgs[]` vs 1.2 `roles[]` + `primaryOrg`), so the same district yields the same rows
from any provider. Enumerations follow one rule, on every source (csv/source.py applies these same functions):
`status`, `role`, org `type` and `enabledUser` are trimmed and matched case-insensitively against the OneRoster
1.1 + 1.2 vocabularies below (role and type also accept `ext:` extension values); the legacy `inactive` is
`tobedeleted`; a missing or blank status is `active`, a missing enabledUser is null (not stated), and a user without
any role or an org without a type is rejected ("missing or empty"). A value outside the vocabulary is never
reclassified: the record becomes a `Rejection` naming the field and the value (enumeration values are not personal
data; cut to 40 characters). Any other record that cannot be normalised (no sourcedId, an unparseable
dateLastModified) is a `Rejection` too, with no payload value beyond its id; the rest of the page goes on.
`password` is never read.

A page is normalised column by column (the fast path at the end of this module); a record it cannot vouch for is
normalised on its own by `_rows` (`_user_row` / `_org_row`), the reference the fast path is tested against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from .schemas import ORG_SCHEMA, USER_SCHEMA, UTC_TIMESTAMP

_ROLES = USER_SCHEMA.get_field_index("roles")

# The OneRoster vocabularies (lower-cased: matching is case-insensitive). Status: active | tobedeleted (1.1, 1.2),
# and the legacy `inactive`, which means tobedeleted.
STATUSES = {"active": "active", "tobedeleted": "tobedeleted", "inactive": "tobedeleted"}
# Roles: 1.1 (administrator, aide, guardian, parent, proctor, relative, student, teacher) + 1.2 RoleDType.role
# (adds counselor, districtAdministrator, principal, siteAdministrator, systemAdministrator; drops administrator).
ROLES = frozenset({"administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher",
                   "counselor", "districtadministrator", "principal", "siteadministrator", "systemadministrator"})
# Org types: 1.1 = 1.2 OrgDType.type.
ORG_TYPES = frozenset({"department", "district", "local", "national", "school", "state"})
# an extension value of role or type: the spec's pattern `(ext:)[a-zA-Z0-9\.\-_]+`, matched lower-cased
EXT_PATTERN = r"ext:[a-z0-9._-]+"
ENABLED = {"true": True, "false": False}
MISSING = "missing or empty"
_EXT = re.compile(EXT_PATTERN)
_SHOWN = 40  # characters of an unknown enumeration value named in a rejection


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
    rows = _rows(slow, _user_row, "user", location, rejections)
    kept = _in_page_order(table, positions, USER_SCHEMA, rows, keep, role)
    return kept, table.num_rows + len(rows) - kept.num_rows


def _users_per_record(records: Iterable[object], location: str, rejections: list[Rejection],
                      role: str | None = None) -> tuple[pa.Table, int]:
    """`users_table` one record at a time, without the columnar fast path (the reference its tests compare to)."""
    rows = [r for _, r in _rows(enumerate(records), _user_row, "user", location, rejections)]
    kept = rows if role is None else [r for r in rows if role in r[_ROLES]]
    return pa.Table.from_pydict(_columns(USER_SCHEMA, kept), schema=USER_SCHEMA), len(rows) - len(kept)


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


def _rows(records, make_row, entity: str, location: str, rejections: list[Rejection]) -> list[tuple[int, tuple]]:
    """The per-record path: (position, record) pairs -> (position, row) pairs; the others become rejections."""
    rows = []
    for position, record in records:
        sourced_id = record.get("sourcedId") if isinstance(record, dict) else None
        sourced_id = sourced_id.strip() or None if isinstance(sourced_id, str) else None
        try:
            if not isinstance(record, dict):
                raise _Reject("(record)", "not a JSON object")
            if sourced_id is None:
                raw = record.get("sourcedId")
                raise _Reject("sourcedId", MISSING if raw is None or isinstance(raw, str) else
                              f"not a string ({_json_type(raw)})")
            rows.append((position, make_row(record, sourced_id)))
        except _Reject as reject:
            rejections.append(Rejection(entity, sourced_id, f"{location}, item {position}", reject.field,
                                        reject.reason))
    return rows


def _columns(schema: pa.Schema, rows: list[tuple]) -> dict[str, list]:
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return {field.name: list(values) for field, values in zip(schema, columns)}


def _org_row(o: dict, sourced_id: str) -> tuple:
    status, modified = _status(o.get("status")), _timestamp(o.get("dateLastModified"))
    return (sourced_id, status, modified, _text(o.get("name")), _org_type(o.get("type")),
            _text(o.get("identifier")), _ref(o.get("parent")), _legacy(o.get("metadata")))


def _user_row(u: dict, sourced_id: str) -> tuple:
    get = u.get
    status, modified = _status(get("status")), _timestamp(get("dateLastModified"))
    roles = get("roles")
    listed = get("orgs")
    if roles.__class__ is list and len(roles) == 1 and roles[0].__class__ is dict and listed is None:
        only = roles[0]  # the common 1.2 shape: one role in one org
        role, org = _role(only.get("role")), _ref(only.get("org"))
        role_list, org_list = [role], [org] if org else []
    else:
        if roles.__class__ is list and roles:
            for i, r in enumerate(roles):
                if not isinstance(r, dict):
                    raise _Reject("role", f"roles[{i}] is not a JSON object ({_json_type(r)})")
            role_names = [r.get("role") for r in roles]
            orgs = [r.get("org") for r in roles]
        elif roles is not None and roles.__class__ is not list:
            raise _Reject("role", f"roles is not a JSON array ({_json_type(roles)})")
        else:
            role_names, orgs = [get("role")], []
        if listed.__class__ is list:
            orgs += listed
        role_list, org_list = _unique(_role(r) for r in role_names), _unique(_ref(o) for o in orgs)
    enabled = get("enabledUser")
    text = _text
    return (sourced_id, status, modified, text(get("username")),
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


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "JSON boolean"
    if isinstance(value, (int, float)):
        return "JSON number"
    if isinstance(value, dict):
        return "JSON object"
    if isinstance(value, list):
        return "JSON array"
    return "JSON string" if isinstance(value, str) else type(value).__name__


def _enum_text(value: object, field: str) -> str | None:
    """An enumeration value trimmed and lower-cased, None when missing or blank; an object or array is refused."""
    if value.__class__ is str:
        return value.strip().lower() or None
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise _Reject(field, f"not a string ({_json_type(value)})")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower() or None


def _unknown(field: str, kind: str, value: str) -> _Reject:
    """The rejection of a value outside the vocabulary, naming it as matched (trimmed, lower-cased: so the REST and
    CSV sources word it alike), cut to 40 characters."""
    shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "..."
    return _Reject(field, f"unknown value {shown!r} (not a OneRoster {kind})")


def _status(value: object) -> str:
    """active | tobedeleted (`inactive` is tobedeleted); missing or blank is active; anything else is refused."""
    known = STATUSES.get(value) if value.__class__ is str else None
    if known:
        return known
    status = _enum_text(value, "status")
    if status is None:
        return "active"
    known = STATUSES.get(status)
    if known is None:
        raise _unknown("status", "status: active or tobedeleted", status)
    return known


def _role(value: object) -> str:
    """A role of the vocabulary or an ext: role, lower-cased; missing or unknown is refused."""
    if value.__class__ is str and value in ROLES:
        return value
    role = _enum_text(value, "role")
    if role is None:
        raise _Reject("role", MISSING)
    if role in ROLES or _EXT.fullmatch(role):
        return role
    raise _unknown("role", "1.1/1.2 role", role)


def _org_type(value: object) -> str:
    """An org type of the vocabulary or an ext: type, lower-cased; missing or unknown is refused."""
    if value.__class__ is str and value in ORG_TYPES:
        return value
    kind = _enum_text(value, "type")
    if kind is None:
        raise _Reject("type", MISSING)
    if kind in ORG_TYPES or _EXT.fullmatch(kind):
        return kind
    raise _unknown("type", "org type", kind)


def _timestamp(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)  # type: ignore[arg-type]
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed if parsed.tzinfo is timezone.utc else parsed.astimezone(timezone.utc)
    except (TypeError, ValueError, OverflowError):
        raise _Reject("dateLastModified", "not an ISO 8601 date-time") from None


def _enabled(value: object) -> bool | None:
    """true | false (a JSON boolean or a string in any case); missing or blank is None (not stated)."""
    if value is None or isinstance(value, bool):
        return value
    text = _enum_text(value, "enabledUser")
    if text is None:
        return None
    known = ENABLED.get(text)
    if known is None:
        raise _unknown("enabledUser", "enabledUser: true or false", text)
    return known


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


# ------------------------------------------------------------------------------------------ the columnar fast path
# A page is normalised column by column: each field gathered once, enumerations converted once per distinct value
# (by the functions above, so the rule is the same), dates parsed by Arrow. A record the fast path cannot vouch for
# (not a plain dict, a value that is not a string or null where one is expected, an uncommon shape of roles/orgs, a
# value the rules refuse, a date outside the strict ISO form below) is left to the per-record path (`_rows`), which
# decides its row or its rejection exactly as before; the fast path never rejects anything itself.

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
    return [v.strip() or _BAD if v.__class__ is str else _BAD for v in values]


def _timestamp_column(values: list) -> tuple[pa.Array, list[int]]:
    """`_timestamp` of each value as a UTC_TIMESTAMP array, and the positions it refuses (null in the array)."""
    try:
        strings = pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):  # a non-string; a lone surrogate
        strings = None
    if strings is not None:
        strings = pc.if_else(pc.equal(strings, ""), None, strings)
        if pc.all(pc.match_substring_regex(strings, _ISO_DATE)).as_py() is not False:
            try:
                return strings.cast(UTC_TIMESTAMP), []
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. 31 February: the per-value way names who
                pass
    parsed = [_attempt(_timestamp, v) for v in values]
    bad = [i for i, v in enumerate(parsed) if v is _BAD]
    for i in bad:
        parsed[i] = None
    return pa.array(parsed, UTC_TIMESTAMP), bad


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
    """`_legacy` of each record's metadata (a metadata object without `ic` is the common case: None)."""
    return [_legacy(m) if m.__class__ is dict and "ic" in m else None for m in (r.get("metadata") for r in dicts)]


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
    good, bad = _vouched([ids, status, kind, name, identifier], n, bad_dates)
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
    texts = [_text_column([r.get(key) for r in dicts])
             for key in ("username", "givenName", "familyName", "middleName", "email", "identifier")]
    enabled = _enum_column([r.get("enabledUser") for r in dicts], _enabled, booleans=True)
    every_11 = [r.get("roles") for r in dicts].count(None) == n
    if every_11:  # a 1.1 page (as `_user_row`: role_names = [role], orgs = orgs[] when it is a list)
        named = [r.get("role") for r in dicts]
        orgs = [([org] if (org := only.get("sourcedId").strip()) else [])
                if listed.__class__ is list and len(listed) == 1 and (only := listed[0]).__class__ is dict
                and only.get("sourcedId").__class__ is str else _org_list(listed)
                for listed in (r.get("orgs") for r in dicts)]
    else:
        named, orgs = [], []
        for r in dicts:
            roles, listed = r.get("roles"), r.get("orgs")
            if roles is None:
                named.append(r.get("role"))
                orgs.append(_org_list(listed))
            elif roles.__class__ is list and len(roles) == 1 and (only := roles[0]).__class__ is dict \
                    and listed is None:  # the common 1.2 shape, as in `_user_row`
                named.append(only.get("role"))
                org = _ref(only.get("org"))
                orgs.append([org] if org else [])
            else:
                named.append(_BAD)
                orgs.append(None)
    roles = _enum_column(named, _role)
    good, bad = _vouched([ids, status, enabled, roles, *texts], n, bad_dates)
    primary = [None if v is None else _ref(v) for v in (r.get("primaryOrg") for r in dicts)]
    grades = [([grade] if (grade := value[0].strip()) else [])
              if value.__class__ is list and len(value) == 1 and value[0].__class__ is str else _grades(value)
              for value in (r.get("grades") for r in dicts)]
    legacy = _legacy_column(dicts)
    fields = list(USER_SCHEMA)
    arrays = [pa.array(_pick(c, good, n), f.type) for c, f in zip((ids, status), fields)]
    arrays.append(dates if not bad else dates.take(pa.array(good, pa.int64())))
    arrays += [pa.array(_pick(c, good, n), f.type) for c, f in zip((*texts, enabled), fields[3:10])]
    role_values = pa.array(_pick(roles, good, n), pa.string())
    arrays.append(pa.ListArray.from_arrays(_offsets(len(good)), role_values))
    arrays += [pa.array(_pick(c, good, n), f.type) for c, f in zip((orgs, primary, grades, legacy), fields[11:])]
    return arrays, good, [(i, records[i]) for i in bad]
