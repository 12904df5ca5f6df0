"""Property-based tests of the REST normaliser (`users_table`, `orgs_table`), issue 13.

Generated OneRoster 1.1 and 1.2 user and org JSON objects, clean, then with noise that keeps their meaning (case and
whitespace of enumeration and text values, JSON null vs missing vs "", booleans vs strings, `inactive`, ids as
refs or bare strings, extra fields), with whitespace around ids (which is meaning: an id is opaque), and with noise
that may not (unknown enumeration values, wrong JSON types in any
field, records that are not objects). Properties:
- no exception escapes `users_table` / `orgs_table`;
- every record becomes exactly one of: a row, a Rejection, a "skipped" count — nothing silently lost — and a page
  gives what its records give one by one; a row may come with `value_dropped` rejections (issue 25), each naming
  a field we only carry, whose column is NULL in the row;
- a Rejection carries the sourcedId as given whenever the record had a string sourcedId that is not blank, else
  None;
- a record with meaning-preserving noise gives exactly the row its clean version gives;
- ids (the record's own, orgs[], roles[].org, primaryOrg, parent) come out exactly as given, whitespace included.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneroster_pipeline.client.normalize import ORG_TYPES, REJECTED, VALUE_DROPPED
from oneroster_pipeline.client.tables import orgs_table, users_table

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CASES: dict[str, int] = {}  # generated cases per test (printed with -s; the report quotes them)

ROLES_AS_SPELLED = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher",
                    "counselor", "districtAdministrator", "principal", "siteAdministrator", "systemAdministrator")
GRADES = ("IT", "PR", "PK", "KG", "01", "02", "05", "09", "12", "13", "PS", "UG", "Other")
MISSING = object()  # a key left out
WHITESPACE = st.sampled_from(["", "", " ", "  ", "\t", "\n ", "\u00a0", "\u3000"])
CASINGS = st.sampled_from([str.lower, str.upper, str.title, str.swapcase, lambda s: s])
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).map(str.strip).filter(bool)
OPTIONAL_TEXT = st.none() | TEXT
ORG_IDS = st.sampled_from(["o1", "o2", "o3", "school-9", "d"])
EXT_VALUES = st.text("abcxyzABCXYZ0189._-", min_size=1, max_size=10).map(lambda s: "ext:" + s)  # the spec pattern
ROLE_VALUES = st.just("student") | st.sampled_from(ROLES_AS_SPELLED) | EXT_VALUES
DATES = st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1),
                                 timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-5))])
                                 ).map(lambda d: d.isoformat())
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
USER_KEYS = ("sourcedId", "status", "dateLastModified", "username", "givenName", "familyName", "middleName", "email",
             "identifier", "userMasterIdentifier", "enabledUser", "role", "roles", "orgs", "primaryOrg", "grades",
             "metadata")
ORG_KEYS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parent", "metadata")


def ref(sourced_id: str) -> dict:
    return {"href": f"https://sis.example/orgs/{sourced_id}", "sourcedId": sourced_id, "type": "org"}


@st.composite
def clean_user(draw, version: str) -> dict:
    user = {"status": draw(st.sampled_from(["active", "tobedeleted"])), "dateLastModified": draw(DATES),
            "enabledUser": draw(st.sampled_from(["true", "false"])),
            "grades": draw(st.lists(st.sampled_from(GRADES), max_size=3, unique=True))}
    for key in ("username", "givenName", "familyName", "middleName", "email", "identifier"):
        user[key] = draw(OPTIONAL_TEXT)
    if draw(st.booleans()):
        user["metadata"] = {"ic": {"legacysourceId": draw(TEXT)}}
    if version == "1.1":
        user["role"] = draw(ROLE_VALUES)
        user["orgs"] = [ref(o) for o in draw(st.lists(ORG_IDS, max_size=3))]
    else:
        roles = draw(st.lists(st.tuples(ROLE_VALUES, ORG_IDS), min_size=1, max_size=3))
        user["roles"] = [{"roleType": "primary" if i == 0 else "secondary", "role": role, "org": ref(o)}
                         for i, (role, o) in enumerate(roles)]
        user["primaryOrg"] = ref(roles[0][1]) if draw(st.booleans()) else None
        user["userMasterIdentifier"] = draw(OPTIONAL_TEXT)
    return user


@st.composite
def clean_org(draw) -> dict:
    return {"status": draw(st.sampled_from(["active", "tobedeleted"])), "dateLastModified": draw(DATES),
            "name": draw(OPTIONAL_TEXT), "type": draw(st.sampled_from(sorted(ORG_TYPES)) | EXT_VALUES),
            "identifier": draw(OPTIONAL_TEXT), "parent": ref(draw(ORG_IDS)) if draw(st.booleans()) else None}


def _spell(draw, value: str) -> str:
    return draw(WHITESPACE) + draw(CASINGS)(value) + draw(WHITESPACE)


def _absent(draw):
    return draw(st.sampled_from([MISSING, None, "", " "]))


@st.composite
def same_meaning(draw, record: dict) -> dict:
    """`record` with noise a lenient normaliser must see through (the row must not change)."""
    noisy = copy.deepcopy(record)
    for key, value in record.items():
        if key == "status":
            spelled = "inactive" if value == "tobedeleted" and draw(st.booleans()) else value
            noisy[key] = _absent(draw) if value == "active" and draw(st.booleans()) else _spell(draw, spelled)
        elif key == "enabledUser":
            noisy[key] = (value == "true") if draw(st.booleans()) else _spell(draw, value)
        elif key in ("role", "type"):
            noisy[key] = _spell(draw, value)
        elif key == "roles":
            for entry in noisy[key]:
                entry["role"] = _spell(draw, entry["role"])
                entry["roleType"] = _spell(draw, entry["roleType"])  # primary in any case: the same primary org
                if draw(st.booleans()):
                    entry["org"] = entry["org"]["sourcedId"]  # a bare id instead of a GUID ref
        elif key in ("orgs",) and draw(st.booleans()):
            noisy[key] = [o["sourcedId"] for o in value]
        elif key in ("primaryOrg", "parent") and value is not None and draw(st.booleans()):
            noisy[key] = value["sourcedId"]
        elif key == "dateLastModified":
            if value is None:
                noisy[key] = draw(st.sampled_from([MISSING, None, ""]))
            elif value.endswith("+00:00") and draw(st.booleans()):
                noisy[key] = value.removesuffix("+00:00") + "Z"
        elif key == "grades":
            if draw(st.booleans()):
                noisy[key] = ",".join(draw(WHITESPACE) + g for g in value)
            elif not value:
                noisy[key] = draw(st.sampled_from([MISSING, None, "", []]))
        elif key in ("sourcedId", "metadata"):  # an id is opaque: whitespace around it is another id
            pass
        elif value is None:
            noisy[key] = _absent(draw)
        elif isinstance(value, str):
            noisy[key] = draw(WHITESPACE) + value + draw(WHITESPACE)
    for extra in draw(st.lists(st.sampled_from(["sms", "phone", "userIds", "agents", "x-vendor", "children",
                                                "preferredFirstName", "password"]), max_size=3, unique=True)):
        noisy[extra] = draw(JSON)
    return {k: v for k, v in noisy.items() if v is not MISSING}


@st.composite
def any_meaning(draw, record: dict, keys: tuple[str, ...]) -> object:
    """`record` (already noisy) with noise that may make it unusable: unknown enumeration values, wrong JSON types
    anywhere (roles[] entries included), keys removed, or not an object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(JSON)
    record = copy.deepcopy(record)
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            record.pop(key, None)
        elif choice == 1:
            record[key] = draw(JSON)
        else:
            record[key] = draw(st.text(max_size=50) | TEXT | st.sampled_from(["stu\"dent\"", "Inactive ", "closed",
                                                                             "ext:", "ext:a b", "TRUE", "yes"]))
    roles = record.get("roles")
    if isinstance(roles, list) and roles and draw(st.booleans()):
        i = draw(st.integers(0, len(roles) - 1))
        if isinstance(roles[i], dict) and draw(st.booleans()):
            roles[i]["role"] = draw(JSON | st.text(max_size=12))
        else:
            roles[i] = draw(JSON)
    return record


def _with_ids(records: list, prefix: str) -> list[dict]:
    return [{"sourcedId": f"{prefix}{i}", **r} for i, r in enumerate(records)]


def _outcome(table_of, record: object) -> tuple[list[dict], list, int]:
    rejections: list = []
    table, skipped = table_of([record], rejections)
    return table.to_pylist(), rejections, skipped


def users(records, rejections):
    return users_table(records, "GET /students offset 0", rejections, role="student")


def orgs(records, rejections):
    return orgs_table(records, "GET /orgs offset 0", rejections), 0


def _expected_id(record: object) -> str | None:
    raw = record.get("sourcedId") if isinstance(record, dict) else None
    return raw if isinstance(raw, str) and raw.strip() else None


# the fields whose unreadable value is dropped (the record kept), and the row's column each one empties
DROPPABLE = {"dateLastModified": "date_last_modified", "username": "username", "givenName": "given_name",
             "familyName": "family_name", "middleName": "middle_name", "email": "email", "identifier": "identifier",
             "userMasterIdentifier": "user_master_identifier", "enabledUser": "enabled_user", "grades": "grades",
             "metadata": "legacy_sourced_id", "name": "name"}


def _check_page(table_of, page: list) -> None:
    """No exception; every record exactly one of row / rejection / skipped, one by one and as a page; dropped
    values only beside a row, each naming a field we only carry, NULL in the row."""
    rows, rejections, skipped = [], [], 0
    for position, record in enumerate(page):
        one_rows, one_rejections, one_skipped = _outcome(table_of, record)
        real = [r for r in one_rejections if r.kind == REJECTED]
        assert len(one_rows) + len(real) + one_skipped == 1, record
        for dropped in (r for r in one_rejections if r.kind != REJECTED):
            assert dropped.kind == VALUE_DROPPED and one_rows, (record, dropped)
            assert one_rows[0][DROPPABLE[dropped.field]] is None, (record, dropped)
        for rejection in one_rejections:
            assert rejection.sourced_id == _expected_id(record), (record, rejection)
            assert rejection.field and rejection.reason and rejection.location.endswith(", item 0")
            rejections.append((position, rejection.sourced_id, rejection.field, rejection.reason))
        rows += one_rows
        skipped += one_skipped
    page_rejections: list = []
    table, page_skipped = table_of(page, page_rejections)
    assert table.to_pylist() == rows and page_skipped == skipped
    assert [(int(r.location.rsplit(" ", 1)[1]), r.sourced_id, r.field, r.reason) for r in page_rejections] == \
        rejections


def _count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


@SETTINGS
@given(st.data())
def test_users_any_noise_every_record_is_a_row_a_rejection_or_skipped(data):
    version = data.draw(st.sampled_from(["1.1", "1.2"]))
    clean = _with_ids(data.draw(st.lists(clean_user(version), min_size=1, max_size=4)), "u")
    page = [data.draw(any_meaning(data.draw(same_meaning(r)), USER_KEYS)) for r in clean]
    _check_page(users, page)
    _count("users, any noise")


@SETTINGS
@given(st.data())
def test_orgs_any_noise_every_record_is_a_row_or_a_rejection(data):
    clean = _with_ids(data.draw(st.lists(clean_org(), min_size=1, max_size=4)), "o")
    page = [data.draw(any_meaning(data.draw(same_meaning(r)), ORG_KEYS)) for r in clean]
    _check_page(orgs, page)
    _count("orgs, any noise")


@SETTINGS
@given(st.data())
def test_users_noise_that_keeps_the_meaning_gives_the_clean_row(data):
    version = data.draw(st.sampled_from(["1.1", "1.2"]))
    clean = _with_ids([data.draw(clean_user(version))], "u")[0]
    noisy = data.draw(same_meaning(clean))
    expected = _outcome(users, clean)
    assert expected[1] == []  # a clean record is never rejected
    assert _outcome(users, noisy) == expected
    _count("users, same meaning")


@SETTINGS
@given(st.data())
def test_orgs_noise_that_keeps_the_meaning_gives_the_clean_row(data):
    clean = _with_ids([data.draw(clean_org())], "o")[0]
    noisy = data.draw(same_meaning(clean))
    expected = _outcome(orgs, clean)
    assert len(expected[0]) == 1 and expected[1] == []
    assert _outcome(orgs, noisy) == expected
    _count("orgs, same meaning")


ID_FIELDS = ("sourced_id", "org_sourced_ids", "primary_org_sourced_id", "parent_sourced_id")


def _padded_ids(record: dict, padded: dict[str, str]) -> dict:
    """`record` with every id in it (its own, orgs[], roles[].org, primaryOrg, parent) replaced as `padded` says."""
    record = copy.deepcopy(record)
    record["sourcedId"] = padded[record["sourcedId"]]
    refs = [*record.get("orgs", []), *(r["org"] for r in record.get("roles", [])),
            *(record[k] for k in ("primaryOrg", "parent") if record.get(k))]
    for ref_ in refs:
        ref_["sourcedId"] = padded.get(ref_["sourcedId"], ref_["sourcedId"])  # a ref shared by two keys: once
    return record


def _ids_of_row(row: dict, padded: dict[str, str]) -> dict:
    """`row` with the ids in it replaced as `padded` says (what the padded record's row must hold)."""
    row = dict(row)
    for name in ID_FIELDS:
        value = row.get(name)
        if isinstance(value, list):
            row[name] = [padded[v] for v in value]
        elif value is not None and name in row:
            row[name] = padded[value]
    return row


@SETTINGS
@given(st.data())
def test_ids_are_kept_exactly_as_given(data):
    """Issue 24: ` o1 `, `o1` and `\no1` are three ids. Whitespace around the record's own id and around every
    reference comes out byte for byte, on 1.1 and 1.2 users and on orgs, in the page (columnar) and one by one."""
    kind = data.draw(st.sampled_from(["1.1", "1.2", "org"]))
    table_of, prefix = (orgs, "o") if kind == "org" else (users, "u")
    clean = _with_ids([data.draw(clean_org() if kind == "org" else clean_user(kind))], prefix)[0]
    pad = st.tuples(WHITESPACE, WHITESPACE).map("{0[0]}{{}}{0[1]}".format).filter(lambda f: f != "{}")
    padded = {i: data.draw(pad).format(i) for i in ["o1", "o2", "o3", "school-9", "d", clean["sourcedId"]]}
    rows, rejections, skipped = _outcome(table_of, clean)
    assert rejections == []
    assert _outcome(table_of, _padded_ids(clean, padded)) == ([_ids_of_row(r, padded) for r in rows], [], skipped)
    _check_page(table_of, [clean, _padded_ids(clean, padded)])
    _count("ids kept as given")


def test_generated_cases_were_counted():
    """Run last in this module (pytest keeps file order): how many cases the properties above were checked on."""
    print(f"\nhypothesis cases: {CASES} (total {sum(CASES.values())})")
    assert not CASES or all(n >= 50 for n in CASES.values()), CASES


def test_a_page_of_nothing_but_odd_values_keeps_its_accounting():
    page = [None, 5, "x", [], {}, {"sourcedId": "  "}, {"sourcedId": 7, "role": "student"},
            {"sourcedId": " a ", "roles": "student"}, {"sourcedId": "b", "roles": [None]},
            {"sourcedId": "c", "role": ["student"]}, {"sourcedId": "d", "role": "student", "status": {"x": 1}},
            {"sourcedId": "e", "role": "student", "dateLastModified": "0001-01-01T00:00:00+01:00"},
            {"sourcedId": "f", "role": "student", "enabledUser": 1}, {"sourcedId": "g", "role": "teacher"},
            {"sourcedId": "h", "role": "student"}]
    _check_page(users, page)
    rejections: list = []
    table, skipped = users(page, rejections)
    # e and f: a date out of range in UTC and an enabledUser of 1 are values we only carry: dropped, records kept
    assert table.column("sourced_id").to_pylist() == ["e", "f", "h"] and skipped == 1 and len(rejections) == 13
    assert [(r.sourced_id, r.field, r.kind) for r in rejections[5:]] == [
        (None, "sourcedId", REJECTED), (None, "sourcedId", REJECTED), (" a ", "role", REJECTED),
        ("b", "role", REJECTED), ("c", "role", REJECTED), ("d", "status", REJECTED),
        ("e", "dateLastModified", VALUE_DROPPED), ("f", "enabledUser", VALUE_DROPPED)]
    assert isinstance(table, pa.Table)
