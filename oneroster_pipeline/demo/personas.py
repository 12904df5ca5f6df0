"""Provider personas: what real OneRoster servers do differently on the wire, as named quirks."""

# A quirk changes only the wire format, never the logical district: every persona serves the same people, names, orgs
# and statuses, so a lenient client produces identical normalised rows from each (the one intended exception: Infinite
# Campus 1.1 user sourcedIds carry a role prefix, see `IC_ROLE_PREFIXED_IDS`). A `Persona` is a named, frozen set of
# quirks; `DemoSettings(persona=..., quirks=...)` serves a persona's quirks plus any extra ones, so a test can switch
# a single quirk on with `DemoSettings(quirks={"no_total_count"})`.
#
# Where each persona's quirks come from (D = documented by the vendor or visible in its public source code,
# N = from the shared OneRoster notes, A = assumed: the notes name the behaviour but no vendor, so it is assigned
# where it is plausible, to give every quirk a persona; adjust the table if a real trace says otherwise):
# - `infinite_campus`: role-prefixed 1.1 user ids and `metadata.ic.legacysourceId` in 1.2 (N); districts granting
#   only the roster-core scope (N).
# - `classlink`: `statusInfoSet` error arrays (A: the 1.1-era "array of errors" payload, as Microsoft's 1.1 sample
#   server sends it), JSON boolean `enabledUser` (A), legacy `inactive` status (A), `/schools` and `/students` under
#   their own envelope keys (A), `sort` and `fields` refused (A), an off-by-one `Link` next offset (A).
#   Real ClassLink direct access signs requests with OAuth 1.0a (N): `Persona.auth` says so, the CLI uses it.
# - `aeries`: the token response sets load-balancer cookies that every later call must send (D: Aeries' OneRoster
#   authentication article); `"identifier": null, "parent": null, "metadata": null` and `~/ims/...` hrefs (D: the
#   same article's sample response); an empty 401 body (A: ASP.NET default) and `"True"`/`"False"` (A: .NET's
#   `bool.ToString()`).
# - `edfi`: flat string `imsx_codeMinor` (D), no `X-Total-Count` and no `Link` (D: the collection handler sends the
#   JSON body only), hrefs relative to the base URL, `/orgs/{id}` (D: the users view builds them so), no
#   dateLastModified filter (A: its views filter on the fields they select, and it keeps no change tracking), roles[]
#   with roleType primary/secondary and no primaryOrg (N), the primary school not listed first (A).

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# ---- the quirks ----------------------------------------------------------------------------------------------
PLURAL_ENVELOPES = "plural_envelopes"
ENABLED_USER_CAPITALISED = "enabled_user_capitalised"
ENABLED_USER_BOOLEAN = "enabled_user_boolean"
INACTIVE_STATUS = "inactive_status"
NULL_FIELDS = "null_fields"
RELATIVE_HREFS = "relative_hrefs"
APP_RELATIVE_HREFS = "app_relative_hrefs"
NO_TOTAL_COUNT = "no_total_count"
NO_LINK = "no_link"
LINK_OFF_BY_ONE = "link_off_by_one"
EDFI_ERRORS = "edfi_errors"
STATUS_INFO_SET_ERRORS = "status_info_set_errors"
EMPTY_AUTH_ERROR = "empty_auth_error"
IC_ROLE_PREFIXED_IDS = "ic_role_prefixed_ids"
IC_LEGACY_SOURCE_ID = "ic_legacy_source_id"
SESSION_COOKIE = "session_cookie"
CORE_SCOPE_ONLY = "core_scope_only"
REJECT_SORT = "reject_sort"
REJECT_FIELDS = "reject_fields"
REJECT_DATE_FILTER = "reject_date_filter"
PRIMARY_NOT_FIRST = "primary_not_first"

QUIRKS: dict[str, str] = {
    PLURAL_ENVELOPES: "/schools answers under `schools` (and /schools/{id} under `school`), /students and "
                      "/schools/{id}/students under `students` (and /students/{id} under `student`); the spec "
                      "wraps them as `orgs`/`org` and `users`/`user`",
    ENABLED_USER_CAPITALISED: 'enabledUser is "True" / "False"',
    ENABLED_USER_BOOLEAN: "enabledUser is a JSON boolean (not schema-valid in 1.2)",
    INACTIVE_STATUS: "status `tobedeleted` is sent as the pre-1.1 value `inactive` (filters still see tobedeleted)",
    NULL_FIELDS: "absent values are JSON null: `parent` of the district, `metadata`, empty strings such as "
                 "`identifier`, `sms`, `phone` (users keep metadata when it carries the IC legacy id)",
    RELATIVE_HREFS: "GUID ref hrefs relative to the base URL: `/orgs/{id}`",
    APP_RELATIVE_HREFS: "GUID ref hrefs ASP.NET app-relative: `~/ims/oneroster/v1p1/orgs/{id}`",
    NO_TOTAL_COUNT: "no X-Total-Count header",
    NO_LINK: "no Link header",
    LINK_OFF_BY_ONE: 'the Link rel="next" offset is one record too far (X-Total-Count stays true)',
    EDFI_ERRORS: 'error bodies carry a flat string `"imsx_codeMinor": "forbidden"` (Ed-Fi)',
    STATUS_INFO_SET_ERRORS: 'error bodies are `{"statusInfoSet": [{imsx_codeMajor, imsx_severity, '
                            "imsx_description, imsx_codeMinor (a flat string)}]}` (Microsoft's 1.1 sample server)",
    EMPTY_AUTH_ERROR: "a 401 has an empty body (and no Content-Type)",
    IC_ROLE_PREFIXED_IDS: "1.1 user sourcedIds are role-prefixed: `s` + id for a student, `t` + id for a teacher "
                          "(lookups and filters use the prefixed id; orgs keep theirs)",
    IC_LEGACY_SOURCE_ID: "1.2 users carry `metadata.ic.legacysourceId` = their 1.1 (role-prefixed) sourcedId",
    SESSION_COOKIE: "the token response sets a cookie (ARRAffinity) that every API request must send, else 401; "
                    "needs auth='oauth2'",
    CORE_SCOPE_ONLY: "the client is granted only roster-core.readonly: 1.2 /schools/{id}/students answers 403 "
                     "(any auth mode)",
    REJECT_SORT: "any `sort` parameter is refused with 400",
    REJECT_FIELDS: "any `fields` parameter is refused with 400",
    REJECT_DATE_FILTER: "a `filter` on dateLastModified is refused with 400 (no delta support; status and role "
                        "filters still work)",
    PRIMARY_NOT_FIRST: "a user's primary org is listed last (1.1 orgs[], 1.2 roles[]) and 1.2 sends no primaryOrg: "
                       "only roles[].roleType says which org is primary",
}

EXCLUSIVE_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({ENABLED_USER_CAPITALISED, ENABLED_USER_BOOLEAN}),
    frozenset({RELATIVE_HREFS, APP_RELATIVE_HREFS}),
    frozenset({EDFI_ERRORS, STATUS_INFO_SET_ERRORS}),
)
ROLE_PREFIXES = {"student": "s", "teacher": "t"}  # Infinite Campus 1.1: one user record per role of a person


@dataclass(frozen=True)
class Persona:
    """A provider's wire behaviour: a name, its quirks, and the auth mode the real provider uses."""

    name: str
    quirks: frozenset[str]
    auth: str = "oauth2"  # the CLI's default --auth for this persona; DemoSettings.auth is never changed by it
    description: str = ""


PERSONAS: dict[str, Persona] = {p.name: p for p in (
    Persona("spec", frozenset(), description="the 1EdTech OneRoster 1.1 / 1.2 REST binding, to the letter"),
    Persona("infinite_campus", frozenset({IC_ROLE_PREFIXED_IDS, IC_LEGACY_SOURCE_ID, CORE_SCOPE_ONLY}),
            description="Infinite Campus: role-prefixed 1.1 user ids, 1.2 legacy id in metadata, core scope only"),
    Persona("classlink", frozenset({STATUS_INFO_SET_ERRORS, ENABLED_USER_BOOLEAN, INACTIVE_STATUS, PLURAL_ENVELOPES,
                                    REJECT_SORT, REJECT_FIELDS, LINK_OFF_BY_ONE}), auth="oauth1",
            description="ClassLink Roster Server (1.1-era variants; demo/personas.py notes what is assumed)"),
    Persona("aeries", frozenset({SESSION_COOKIE, NULL_FIELDS, APP_RELATIVE_HREFS, EMPTY_AUTH_ERROR,
                                 ENABLED_USER_CAPITALISED}),
            description="Aeries: cookies from the token response, nulls, ~/ hrefs, empty 401, \"True\""),
    Persona("edfi", frozenset({EDFI_ERRORS, NO_TOTAL_COUNT, NO_LINK, RELATIVE_HREFS, REJECT_DATE_FILTER,
                               PRIMARY_NOT_FIRST}),
            description="Ed-Fi OneRoster API: flat imsx_codeMinor, no paging headers, /orgs/{id} hrefs, "
                        "no dateLastModified filter, roleType but no primaryOrg"),
)}


def resolve_quirks(persona: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The persona's quirks plus `extra`, validated (ValueError names the unknown or conflicting ones)."""
    if persona not in PERSONAS:
        raise ValueError(f"persona must be one of {sorted(PERSONAS)}, not {persona!r}")
    extra = frozenset([extra] if isinstance(extra, str) else extra)
    unknown = extra - set(QUIRKS)
    if unknown:
        raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")
    active = PERSONAS[persona].quirks | extra
    for group in EXCLUSIVE_GROUPS:
        if len(active & group) > 1:
            raise ValueError(f"quirks {sorted(active & group)} exclude each other")
    return active
