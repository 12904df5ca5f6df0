"""Logical district records -> OneRoster 1.1 or 1.2 JSON objects (never a `password`).

1.1 users carry a single `role`, `orgs[]` refs and `enabledUser` as the string "true"/"false". 1.2 users carry
`roles[]` (the primary org's role is `primary`, the others `secondary`, as Infinite Campus reports them),
`primaryOrg` and the 1.2 fields; the 1.2 schema also types `enabledUser` as a string, so booleans are only sent
when asked for (`boolean_enabled_user`, as some servers do).
"""

from __future__ import annotations

ORG_KEYS = frozenset(
    {"sourcedId", "status", "dateLastModified", "metadata", "name", "type", "identifier", "parent", "children"})
_USER_KEYS = {"sourcedId", "status", "dateLastModified", "metadata", "username", "userIds", "enabledUser",
              "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone", "agents", "grades"}
USER_KEYS = {
    "1.1": frozenset(_USER_KEYS | {"role", "orgs"}),
    "1.2": frozenset(_USER_KEYS | {"roles", "primaryOrg", "userMasterIdentifier", "preferredFirstName"}),
}


_REFS: dict[tuple[str, str], dict] = {}  # org refs are few and repeated on every user: build each once


def org_ref(base_url: str, sourced_id: str) -> dict:
    ref = _REFS.get((base_url, sourced_id))
    if ref is None:
        if len(_REFS) > 10_000:
            _REFS.clear()
        ref = _REFS[(base_url, sourced_id)] = {"href": f"{base_url}/orgs/{sourced_id}", "sourcedId": sourced_id,
                                               "type": "org"}
    return ref


def render_org(org: dict, base_url: str) -> dict:
    """An org object (identical in 1.1 and 1.2)."""
    out = {k: org[k] for k in ("sourcedId", "status", "dateLastModified", "metadata", "name", "type", "identifier")}
    if org["parent"]:
        out["parent"] = org_ref(base_url, org["parent"])
    out["children"] = [org_ref(base_url, c) for c in org["children"]]
    return out


def render_user(user: dict, version: str, base_url: str, boolean_enabled_user: bool = False) -> dict:
    """A user object in the shape of `version` ("1.1" or "1.2")."""
    enabled = user["enabledUser"] if boolean_enabled_user else ("true" if user["enabledUser"] else "false")
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
