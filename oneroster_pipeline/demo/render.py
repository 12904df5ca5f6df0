"""Logical district records -> OneRoster 1.1 or 1.2 JSON objects (never a `password`)."""

# 1.1 users carry a single `role`, `orgs[]` refs and `enabledUser` as the string "true"/"false". 1.2 users carry
# `roles[]` (the primary org's role is `primary`, the others `secondary`, as Infinite Campus reports them),
# `primaryOrg` and the 1.2 fields; the 1.2 schema also types `enabledUser` as a string, so booleans are only sent when
# asked for (`boolean_enabled_user`, as some servers do). A `Wire` carries the value-level persona quirks (see
# personas.py): enabledUser spelling, `inactive`, JSON nulls, Infinite Campus ids, the primary org listed last without
# primaryOrg; envelopes, hrefs, headers and errors are the server's business.

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from oneroster_pipeline.demo import personas as q

ORG_KEYS = frozenset(
    {"sourcedId", "status", "dateLastModified", "metadata", "name", "type", "identifier", "parent", "children"})
_USER_KEYS = {"sourcedId", "status", "dateLastModified", "metadata", "username", "userIds", "enabledUser",
              "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone", "agents", "grades"}
USER_KEYS = {
    "1.1": frozenset(_USER_KEYS | {"role", "orgs"}),
    "1.2": frozenset(_USER_KEYS | {"roles", "primaryOrg", "userMasterIdentifier", "preferredFirstName"}),
}


@dataclass(frozen=True)
class Wire:
    """How values are spelled on the wire (the defaults are the spec's)."""

    enabled_values: tuple[object, object] = ("true", "false")  # (enabled, disabled)
    inactive_status: bool = False  # tobedeleted -> "inactive"
    null_fields: bool = False  # absent / empty values -> JSON null
    ic_prefixed_ids: bool = False  # 1.1 user sourcedIds get the role prefix
    ic_legacy_id: bool = False  # 1.2 users get metadata.ic.legacysourceId
    primary_not_first: bool = False  # the primary org listed last; 1.2 without primaryOrg (roleType only)

    @classmethod
    def from_quirks(cls, quirks: Iterable[str]) -> Wire:
        quirks = frozenset(quirks)
        enabled: tuple[object, object] = ("true", "false")
        if q.ENABLED_USER_BOOLEAN in quirks:
            enabled = (True, False)
        elif q.ENABLED_USER_CAPITALISED in quirks:
            enabled = ("True", "False")
        return cls(enabled, q.INACTIVE_STATUS in quirks, q.NULL_FIELDS in quirks, q.IC_ROLE_PREFIXED_IDS in quirks,
                   q.IC_LEGACY_SOURCE_ID in quirks, q.PRIMARY_NOT_FIRST in quirks)

    @property
    def plain(self) -> bool:
        return not (self.inactive_status or self.null_fields or self.ic_prefixed_ids or self.ic_legacy_id
                    or self.primary_not_first)


SPEC_WIRE = Wire()
BOOLEAN_WIRE = Wire(enabled_values=(True, False))


def legacy_sourced_id(user: dict) -> str:
    """The Infinite Campus 1.1 sourcedId of a user record: its role prefix + its sourcedId."""
    return q.ROLE_PREFIXES.get(user["role"], "") + user["sourcedId"]


_REFS: dict[tuple[str, str], dict] = {}  # org refs are few and repeated on every user: build each once


def org_ref(base_url: str, sourced_id: str) -> dict:
    ref = _REFS.get((base_url, sourced_id))
    if ref is None:
        if len(_REFS) > 10_000:
            _REFS.clear()
        ref = _REFS[(base_url, sourced_id)] = {"href": f"{base_url}/orgs/{sourced_id}", "sourcedId": sourced_id,
                                               "type": "org"}
    return ref


def render_org(org: dict, base_url: str, wire: Wire = SPEC_WIRE) -> dict:
    """An org object (identical in 1.1 and 1.2)."""
    out = {k: org[k] for k in ("sourcedId", "status", "dateLastModified", "metadata", "name", "type", "identifier")}
    if org["parent"]:
        out["parent"] = org_ref(base_url, org["parent"])
    elif wire.null_fields:
        out["parent"] = None
    out["children"] = [org_ref(base_url, c) for c in org["children"]]
    if wire.inactive_status and out["status"] == "tobedeleted":
        out["status"] = "inactive"
    if wire.null_fields:
        out["metadata"] = None
        _empty_to_null(out)
    return out


def render_user(user: dict, version: str, base_url: str, boolean_enabled_user: bool = False,
                wire: Wire | None = None) -> dict:
    """A user object in the shape of `version` ("1.1" or "1.2"); `wire` (if given) overrides boolean_enabled_user."""
    if wire is None:
        wire = BOOLEAN_WIRE if boolean_enabled_user else SPEC_WIRE
    out = _user(user, version, base_url, wire.enabled_values[0] if user["enabledUser"] else wire.enabled_values[1])
    if not wire.plain:
        _apply_wire(out, user, version, wire)
    return out


def _apply_wire(out: dict, user: dict, version: str, wire: Wire) -> None:
    if wire.inactive_status and out["status"] == "tobedeleted":
        out["status"] = "inactive"
    legacy = version == "1.2" and wire.ic_legacy_id
    if legacy:
        out["metadata"] = {**(out["metadata"] or {}), "ic": {"legacysourceId": legacy_sourced_id(user)}}
    if version == "1.1" and wire.ic_prefixed_ids:
        out["sourcedId"] = legacy_sourced_id(user)
    if wire.primary_not_first:
        listed = "orgs" if version == "1.1" else "roles"
        out[listed] = out[listed][1:] + out[listed][:1]  # the primary (first) org last
        out.pop("primaryOrg", None)
    if wire.null_fields:
        if not legacy:
            out["metadata"] = None
        _empty_to_null(out)


def _empty_to_null(out: dict) -> None:
    for key, value in out.items():
        if value == "":
            out[key] = None


def _user(user: dict, version: str, base_url: str, enabled: object) -> dict:
    refs = [org_ref(base_url, sid) for sid in user["orgs"]]
    if version == "1.1":
        return {"sourcedId": user["sourcedId"], "status": user["status"],
                "dateLastModified": user["dateLastModified"], "metadata": user["metadata"],
                "username": user["username"], "userIds": user["userIds"], "enabledUser": enabled,
                "givenName": user["givenName"], "familyName": user["familyName"], "middleName": user["middleName"],
                "role": user["role"], "identifier": user["identifier"], "email": user["email"], "sms": user["sms"],
                "phone": user["phone"], "agents": [], "orgs": refs, "grades": user["grades"]}
    out = {"sourcedId": user["sourcedId"], "status": user["status"], "dateLastModified": user["dateLastModified"],
           "metadata": user["metadata"], "userMasterIdentifier": user["userMasterIdentifier"],
           "username": user["username"], "userIds": user["userIds"], "enabledUser": enabled,
           "givenName": user["givenName"], "familyName": user["familyName"], "middleName": user["middleName"],
           "roles": [{"roleType": "secondary", "role": user["role"], "org": ref} for ref in refs],
           "identifier": user["identifier"], "email": user["email"], "sms": user["sms"], "phone": user["phone"],
           "agents": [], "grades": user["grades"]}
    if refs:
        out["roles"][0]["roleType"] = "primary"
        out["primaryOrg"] = refs[0]
    if user["preferredFirstName"]:
        out["preferredFirstName"] = user["preferredFirstName"]
    return out


def select_fields(obj: dict, fields: tuple[str, ...] | None) -> dict:
    """Only the requested fields (in the object's order), or the whole object."""
    return obj if fields is None else {k: v for k, v in obj.items() if k in fields}
