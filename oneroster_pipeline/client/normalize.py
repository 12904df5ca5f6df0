"""OneRoster 1.1 / 1.2 org and user objects -> the flat rows of schemas.py, one `pa.Table` per page.

Parsing is lenient where providers differ in form (enabledUser as a JSON boolean or a string in any case, JSON nulls
vs empty strings, 1.1 `role` + `orgs[]` vs 1.2 `roles[]` + `primaryOrg`), so the same district yields the same rows
from any provider. Enumerations follow one rule, on every source (csv/source.py applies these same functions):
`status`, `role`, org `type` and `enabledUser` are trimmed and matched case-insensitively against the OneRoster
1.1 + 1.2 vocabularies below (role and type also accept `ext:` extension values); the legacy `inactive` is
`tobedeleted`; a missing or blank status is `active`, a missing enabledUser is null (not stated), and a user without
any role or an org without a type is rejected ("missing or empty"). A value outside the vocabulary is never
reclassified: the record becomes a `Rejection` naming the field and the value (enumeration values are not personal
data; cut to 40 characters). Any other record that cannot be normalised (no sourcedId) is a `Rejection` too, with no
payload value beyond its id; the rest of the page goes on.

Only identity and placement decide whether a record can be used: `sourcedId`, `status`, the role(s) and (for orgs)
`type`. A value we cannot read in a field we only carry (dateLastModified, username, givenName, familyName,
middleName, email, identifier, userMasterIdentifier (1.2), enabledUser, grades, metadata; an org's name and
identifier) becomes NULL and the record is kept: a `Rejection` of kind `value_dropped` names the field and why (as
Microsoft SDS keeps a record with a warning when an optional value is invalid). Carried text is a JSON string
(trimmed) or number (its text); an object, array or boolean cannot be read. Dates: see `_timestamp` (one rule for
REST and CSV).

The primary org (`primary_org_sourced_id`): 1.2 `primaryOrg`, else the org of the `roles[]` entry whose roleType is
`primary` for the student role (the lowest such org sourcedId if a record names several), else none: the warehouse
then takes the lowest sourcedId among the student's orgs that are buildings (warehouse/students.py), never the
provider's order. 1.1 names no primary. The CSV source applies the same rule to users.csv primaryOrgSourcedId and
roles.csv roleType.
A sourcedId is opaque, the record's own and every reference to another record's (orgs[], roles[].org, primaryOrg,
parent): kept byte for byte (` TWIN-1 ` and `TWIN-1` are two records), and only an empty or whitespace-only one is
missing (`_id`); only enumerations and text values are trimmed. `password` is never read.

A page is normalised column by column by tables.py (the fast path); a record it cannot vouch for is normalised on
its own here by `_rows` (`_user_row` / `_org_row`), the reference the fast path is tested against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from .schemas import USER_SCHEMA

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
REJECTED, VALUE_DROPPED = "rejected", "value_dropped"  # Rejection.kind: the record left out | one value set NULL
# why a dateLastModified is dropped (REST and CSV alike)
UNREADABLE_DATE = "not a date-time we can read (ISO 8601, or a US M/D/YYYY date); set to NULL, record kept"
_EXT = re.compile(EXT_PATTERN)
_SHOWN = 40  # characters of an unknown enumeration value named in a rejection


@dataclass(frozen=True)
class Rejection:
    """A record left out of a pull (kind `rejected`), or one value of a kept record set to NULL because it cannot
    be read (kind `value_dropped`: the record lands as usual). `location` says where it was (endpoint, offset,
    position in the page)."""

    entity: str  # "org" | "user"
    sourced_id: str | None
    location: str
    field: str
    reason: str
    kind: str = REJECTED  # REJECTED | VALUE_DROPPED


class _Reject(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def _rows(records, make_row, entity: str, location: str, rejections: list[Rejection],
          kept=None) -> list[tuple[int, tuple]]:
    """The per-record path: (position, record) pairs -> (position, row) pairs; the others become rejections. A row's
    dropped values become `value_dropped` rejections after it, when `kept(row)` (default: always) says it is kept."""
    rows = []
    for position, record in records:
        sourced_id = record.get("sourcedId") if isinstance(record, dict) else None
        sourced_id = sourced_id if isinstance(sourced_id, str) and sourced_id.strip() else None
        dropped: list[tuple[str, str]] = []
        try:
            if not isinstance(record, dict):
                raise _Reject("(record)", "not a JSON object")
            if sourced_id is None:
                raw = record.get("sourcedId")
                raise _Reject("sourcedId", MISSING if raw is None or isinstance(raw, str) else
                              f"not a string ({_json_type(raw)})")
            row = make_row(record, sourced_id, dropped)
            rows.append((position, row))
            if dropped and (kept is None or kept(row)):
                rejections += [Rejection(entity, sourced_id, f"{location}, item {position}", field, reason,
                                         VALUE_DROPPED) for field, reason in dropped]
        except _Reject as reject:
            rejections.append(Rejection(entity, sourced_id, f"{location}, item {position}", reject.field,
                                        reject.reason))
    return rows


def _columns(schema: pa.Schema, rows: list[tuple]) -> dict[str, list]:
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return {field.name: list(values) for field, values in zip(schema, columns)}


def _kept(read, value: object, dropped: list[tuple[str, str]]) -> object:
    """`read(value)`, or None when it refuses the value: (field, reason) is then added to `dropped`."""
    try:
        return read(value)
    except _Reject as reject:
        dropped.append((reject.field, reject.reason))
        return None


def _org_row(o: dict, sourced_id: str, dropped: list[tuple[str, str]]) -> tuple:
    status, kind = _status(o.get("status")), _org_type(o.get("type"))
    get = o.get
    return (sourced_id, status, _kept(_timestamp, get("dateLastModified"), dropped),
            _kept(_NAME, get("name"), dropped), kind, _kept(_IDENTIFIER, get("identifier"), dropped),
            _ref(get("parent")), _kept(_legacy, get("metadata"), dropped))


def _user_row(u: dict, sourced_id: str, dropped: list[tuple[str, str]]) -> tuple:
    get = u.get
    status = _status(get("status"))
    roles = get("roles")
    listed = get("orgs")
    if roles.__class__ is list and len(roles) == 1 and roles[0].__class__ is dict and listed is None:
        only = roles[0]  # the common 1.2 shape: one role in one org
        role, org = _role(only.get("role")), _ref(only.get("org"))
        role_list, org_list = [role], [org] if org else []
        primary = org if role == "student" and _is_primary(only.get("roleType")) else None
    else:
        primary = None
        if roles.__class__ is list and roles:
            for i, r in enumerate(roles):
                if not isinstance(r, dict):
                    raise _Reject("role", f"roles[{i}] is not a JSON object ({_json_type(r)})")
            role_names = [_role(r.get("role")) for r in roles]
            orgs = [r.get("org") for r in roles]
            primary = min((o for o, r, entry in zip(map(_ref, orgs), role_names, roles)
                           if o and r == "student" and _is_primary(entry.get("roleType"))), default=None)
        elif roles is not None and roles.__class__ is not list:
            raise _Reject("role", f"roles is not a JSON array ({_json_type(roles)})")
        else:
            role_names, orgs = [_role(get("role"))], []
        if listed.__class__ is list:
            orgs += listed
        role_list, org_list = _unique(role_names), _unique(_ref(o) for o in orgs)
    enabled = get("enabledUser")
    if not (enabled is None or enabled is True or enabled is False):
        enabled = _kept(_enabled, enabled, dropped)
    return (sourced_id, status, _kept(_timestamp, get("dateLastModified"), dropped),
            *(_kept(read, get(read.field), dropped) for read in _USER_TEXTS), enabled,
            role_list, org_list, _ref(get("primaryOrg")) or primary, _kept(_grades, get("grades"), dropped),
            _kept(_legacy, get("metadata"), dropped))


def _is_primary(role_type: object) -> bool:
    """A 1.2 roles[] entry's roleType is `primary` (trimmed, any case)."""
    return role_type.__class__ is str and role_type.strip().lower() == "primary"


class _Carried:
    """The reader of one carried text field: a JSON string trimmed (None when blank), a JSON number as its text;
    an object, array or boolean is refused (the record keeps NULL there)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, value: object) -> str | None:
        if value.__class__ is str:
            return value.strip() or None
        if value is None:
            return None
        if isinstance(value, (bool, dict, list)):
            raise _Reject(self.field, f"not a string ({_json_type(value)})")
        return str(value).strip() or None


# the carried text fields of a user, in USER_SCHEMA order (username ... user_master_identifier)
USER_TEXT_FIELDS = ("username", "givenName", "familyName", "middleName", "email", "identifier",
                    "userMasterIdentifier")
_USER_TEXTS = tuple(_Carried(f) for f in USER_TEXT_FIELDS)
_NAME, _IDENTIFIER = _Carried("name"), _Carried("identifier")


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


def _extensible(value: object, field: str, known: frozenset[str], kind: str) -> str:
    """A value of the `known` vocabulary or an ext: value, lower-cased; missing or unknown is refused."""
    if value.__class__ is str and value in known:
        return value
    text = _enum_text(value, field)
    if text is None:
        raise _Reject(field, MISSING)
    if text in known or _EXT.fullmatch(text):
        return text
    raise _unknown(field, kind, text)


def _role(value: object) -> str:
    """A role of the 1.1/1.2 vocabulary or an ext: role, lower-cased; missing or unknown is refused."""
    return _extensible(value, "role", ROLES, "1.1/1.2 role")


def _org_type(value: object) -> str:
    """An org type of the vocabulary or an ext: type, lower-cased; missing or unknown is refused."""
    return _extensible(value, "type", ORG_TYPES, "org type")


def _timestamp(value: object) -> datetime | None:
    """A dateLastModified as a UTC datetime; None when missing or blank. The one date rule of every source (the CSV
    source and tables.py's Arrow fast path give exactly what this gives). Read, after trimming:
    - ISO 8601, as `datetime.fromisoformat` reads it: a date alone (`2023-01-05`), a date-time with or without
      seconds, a fraction, `T` or a space, an offset (`+01:00`, `+0100`) or `Z`;
    - a US date `M/D/YYYY` (Microsoft SDS exports, the `1/05/2023` of a moodle 1.2 fixture), optionally with a time
      `H:MM[:SS]` and AM/PM. A slash date is always month first: `1/05/2023` is 5 January 2023, never 1 May, and a
      day-first date that cannot be a US one (`15/06/2023`) is not guessed but unreadable, as is a 2-digit year.
    A date-time without an offset is UTC. Anything else (another form, a date that does not exist, a JSON number) is
    refused; the caller drops the value (NULL) and keeps the record."""
    if value is None or value == "":
        return None
    try:
        text = value.strip()  # type: ignore[union-attr]
        if not text:
            return None
        us = _US_DATE.fullmatch(text)
        parsed = _us_date(us) if us else datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed if parsed.tzinfo is timezone.utc else parsed.astimezone(timezone.utc)
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise _Reject("dateLastModified", UNREADABLE_DATE) from None


_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?")


def _us_date(match: re.Match) -> datetime:
    month, day, year, hour, minute, second, half = match.groups()
    hour = int(hour or 0)
    if half:
        if not 1 <= hour <= 12:
            raise ValueError("hour out of range for AM/PM")
        hour = hour % 12 + (12 if half.lower() == "pm" else 0)
    return datetime(int(year), int(month), int(day), hour, int(minute or 0), int(second or 0))


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


def _id(value: object) -> str | None:
    """A sourcedId as given (opaque: never trimmed, so two distinct ids stay two); None when missing, empty or only
    whitespace. A JSON number is read as its text (as carried text is)."""
    if value.__class__ is not str:
        if value is None:
            return None
        value = str(value)
    return value if value.strip() else None


def _ref(value: object) -> str | None:
    """The sourcedId of a GUID ref (`{"href", "sourcedId", "type"}`), as given (`_id`); a bare id string is accepted
    too."""
    return _id(value.get("sourcedId")) if isinstance(value, dict) else _id(value)


def _unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


_GRADE = _Carried("grades")


def _grades(value: object) -> list[str]:
    """Grades: a JSON array of strings (or numbers), or one comma-separated string; missing is []. Another value,
    or an array holding an object, array or boolean, is refused (dropped: NULL)."""
    if value.__class__ is list and len(value) == 1 and value[0].__class__ is str:
        grade = value[0].strip()
        return [grade] if grade else []
    if isinstance(value, str):
        value = value.split(",")
    elif value is None:
        return []
    elif not isinstance(value, list):
        raise _Reject("grades", f"not a JSON array ({_json_type(value)})")
    return _unique(_GRADE(g) for g in value)


_LEGACY = _Carried("metadata")


def _legacy(metadata: object) -> str | None:
    """metadata.ic.legacysourceId (Infinite Campus); metadata that is not a JSON object, or a legacysourceId that
    is an object, array or boolean, is refused (dropped: NULL)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _Reject("metadata", f"not a JSON object ({_json_type(metadata)})")
    ic = metadata.get("ic")
    return _LEGACY(ic.get("legacysourceId")) if isinstance(ic, dict) else None
