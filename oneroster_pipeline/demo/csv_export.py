"""Write the district as a OneRoster CSV bulk export (a zip of manifest.csv, orgs.csv, users.csv[, roles.csv])."""

# The same logical data as the REST API (same sourcedIds, same dateLastModified), streamed row by row into the zip.
# Unlike most bulk files, `status` and `dateLastModified` are filled in (OneRoster allows it), so a CSV source yields
# exactly the rows the API does. List fields (orgSourcedIds, grades, userIds as `{type:identifier}`) are comma
# separated inside one quoted cell.

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

from oneroster_pipeline.demo.district import District

ORG_COLUMNS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId")
USER_COLUMNS = {
    "1.1": ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username", "userIds",
            "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds",
            "grades", "password"),
    "1.2": ("sourcedId", "status", "dateLastModified", "enabledUser", "username", "userIds", "givenName",
            "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades",
            "password", "userMasterIdentifier", "resourceSourcedIds", "preferredGivenName", "preferredMiddleName",
            "preferredFamilyName", "primaryOrgSourcedId", "pronouns"),
}
ROLE_COLUMNS = ("sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role", "beginDate",
                "endDate", "orgSourcedId", "userProfileSourcedId")
_ABSENT_FILES = ("academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
                 "demographics", "enrollments", "lineItems", "resources", "results")


def export_csv(district: District, path: str | Path, version: str = "1.1", primary_not_first: bool = False) -> Path:
    """Write the bulk zip for OneRoster `version` ("1.1" or "1.2") to `path` and return it. `primary_not_first`
    (the persona quirk of that name): a user's primary org listed last (1.1 orgSourcedIds, 1.2 roles.csv rows) and
    no 1.2 primaryOrgSourcedId, so only roles.csv roleType tells the primary."""
    if version not in USER_COLUMNS:
        raise ValueError(f"version must be 1.1 or 1.2, not {version!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bulk = ("orgs", "users", "roles") if version == "1.2" else ("orgs", "users")
    manifest = [("manifest.version", "1.0"), ("oneroster.version", version)]
    manifest += [(f"file.{name}", "bulk" if name in bulk else "absent")
                 for name in sorted((*_ABSENT_FILES, *bulk), key=str.lower)]
    manifest += [("source.systemName", "oneroster_pipeline demo provider"), ("source.systemCode", "demo")]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _write(archive, "manifest.csv", ("propertyName", "value"), manifest)
        _write(archive, "orgs.csv", ORG_COLUMNS, (_org_row(o) for o in district.orgs()))
        _write(archive, "users.csv", USER_COLUMNS[version],
               (_user_row(u, version, primary_not_first) for u in district.expected_users()))
        if version == "1.2":
            _write(archive, "roles.csv", ROLE_COLUMNS, _role_rows(district, primary_not_first))
    return path


def _write(archive: zipfile.ZipFile, name: str, header: tuple[str, ...], rows: Iterable[Iterable[str]]) -> None:
    with archive.open(name, "w") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)


def _org_row(org: dict) -> tuple[str, ...]:
    return (org["sourcedId"], org["status"], org["dateLastModified"], org["name"], org["type"], org["identifier"],
            org["parent"] or "")


def _listed(orgs: list[str], primary_not_first: bool) -> list[tuple[int, str]]:
    """(position in the logical record: 0 is the primary, org) in the order the export lists them."""
    listed = list(enumerate(orgs))
    return listed[1:] + listed[:1] if primary_not_first else listed


def _user_row(user: dict, version: str, primary_not_first: bool = False) -> tuple[str, ...]:
    enabled = "true" if user["enabledUser"] else "false"
    user_ids = ",".join(f"{{{u['type']}:{u['identifier']}}}" for u in user["userIds"])
    person = (user["givenName"], user["familyName"], user["middleName"], user["identifier"], user["email"],
             user["sms"], user["phone"], "", ",".join(user["grades"]), "")
    head = (user["sourcedId"], user["status"], user["dateLastModified"], enabled)
    if version == "1.1":
        orgs = ",".join(org for _, org in _listed(user["orgs"], primary_not_first))
        return (*head, orgs, user["role"], user["username"], user_ids, *person)
    primary = user["orgs"][0] if user["orgs"] and not primary_not_first else ""
    return (*head, user["username"], user_ids, *person, user["userMasterIdentifier"], "", user["preferredFirstName"],
            "", "", primary, "")


def _role_rows(district: District, primary_not_first: bool = False) -> Iterable[tuple[str, ...]]:
    for user in district.expected_users():
        for k, org in _listed(user["orgs"], primary_not_first):
            yield (district.role_id(user["sourcedId"], org), user["status"], user["dateLastModified"],
                   user["sourcedId"], "primary" if k == 0 else "secondary", user["role"], "", "", org, "")
