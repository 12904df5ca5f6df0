"""The columnar fast path of `users_table` / `orgs_table` (issue 15) against the per-record path it stands in for.

Generated pages mix clean records, records with noise that keeps their meaning, and records with noise that may
not (the strategies of test_normalize_properties.py), plus values aimed at the fast path's gates: dates in and out of
the strict ISO form Arrow parses (fraction digits, offsets, `Z`/`z`, naive, date only, 31 February, years at
datetime's bounds), enabledUser as booleans, 0/1 and strings, org lists with blanks, duplicates and bare ids, 1.2
roles[] of one entry with and without `orgs` and with any roleType, primaryOrg, grades and metadata in good and
unreadable shapes. Property: the same table (rows, order, schema), the same skipped count
and the same Rejections (entity, sourced_id, location, field, reason, in order) as `_users_per_record` /
`_orgs_per_record`, for every role filter.
"""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from oneroster_pipeline.client.tables import (
    _BAD,
    _orgs_per_record,
    _users_per_record,
    _vouched,
    orgs_table,
    users_table,
)
from oneroster_pipeline_tests.client.test_normalize_properties import (
    JSON,
    ORG_KEYS,
    SETTINGS,
    USER_KEYS,
    WHITESPACE,
    any_meaning,
    clean_org,
    clean_user,
    ref,
    same_meaning,
)

DIGITS = st.text("0123456789", min_size=1, max_size=7)
DATE_VALUES = (
    st.builds(lambda y, mo, d, h, mi, s, frac, tz: f"{y}-{mo}-{d}T{h}:{mi}:{s}{frac}{tz}",
              st.sampled_from(["0001", "1899", "1900", "1999", "2024", "2099", "2100", "9999"]),
              st.sampled_from(["01", "02", "12", "13", "00"]), st.sampled_from(["01", "28", "29", "30", "31", "00"]),
              st.sampled_from(["00", "23", "24"]), st.sampled_from(["00", "59", "60"]),
              st.sampled_from(["00", "59", "60"]), st.just("") | DIGITS.map(lambda d: "." + d),
              st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-05:00", "+23:59", "+24:00", "", "+0100",
                               "+01"]))
    | st.sampled_from(["", " ", "2024-06-15", "2024-06-15 10:00:00Z", "2024-06-15T10:00Z", " 2024-06-15T10:00:00Z",
                       "2024-06-15T10:00:00,5Z", "15/06/2023", "2024-06-15T10:00:00Z\ud800",
                       "\ud800", None, "1/05/2023", "12/31/2023 11:59 PM", "8/24/2021 0:00:00", "13/05/2023",
                       "2/30/2024", "1/5/23", " 2024-06-15 "])
    | JSON)
ENABLED_VALUES = st.sampled_from([True, False, 0, 1, 1.0, "true", "FALSE", " True ", "", None, "yes", "1"]) | JSON
ORG_LISTS = st.lists(st.sampled_from(["o1", " o1", "o2 ", "", " ", "school-9"]).map(ref)
                     | st.sampled_from(["o1", " o2", "", None]) | JSON, max_size=4)


@st.composite
def gate_noise(draw, record: object, keys: tuple[str, ...]) -> object:
    """`record` with values aimed at the fast path's gates in some of its fields."""
    if not isinstance(record, dict):
        return record
    record = dict(record)
    if draw(st.booleans()):
        record["dateLastModified"] = draw(DATE_VALUES)
    if "enabledUser" in keys and draw(st.booleans()):
        record["enabledUser"] = draw(ENABLED_VALUES)
    if "orgs" in keys and draw(st.booleans()):
        record["orgs"] = draw(ORG_LISTS | JSON)
    if "roles" in keys and draw(st.booleans()):
        record["roles"] = draw(st.lists(st.fixed_dictionaries(
            {"role": st.sampled_from(["student", " Teacher", "ext:x", "", "nobody"]) | JSON,
             "org": st.sampled_from(["o1", " o2 ", ""]).map(ref) | JSON,
             "roleType": st.sampled_from(["primary", " PRIMARY ", "secondary", "", None]) | JSON}),
            min_size=1, max_size=2) | JSON)
    if "primaryOrg" in keys and draw(st.booleans()):
        record["primaryOrg"] = draw(st.sampled_from([None, "", "o3", ref("o1"), {}]) | JSON)
    if "grades" in keys and draw(st.booleans()):
        record["grades"] = draw(st.sampled_from([["05"], [" 05 ", 6], "05,06", [{"g": 1}], [True], 5, {}]) | JSON)
    if "metadata" in keys and draw(st.booleans()):
        record["metadata"] = draw(st.sampled_from([{"ic": {"legacysourceId": "L"}}, {"ic": {"legacysourceId": 7}},
                                                   {"ic": {"legacysourceId": ["L"]}}, {"ic": "x"}, "meta", 5]))
    for key in draw(st.lists(st.sampled_from(keys), max_size=2)):
        record[key] = draw(WHITESPACE | st.sampled_from([0, 1, True, False, 2.5, "x", "Student", "School"]))
    return record


def _noised(draw, record: dict, keys) -> dict:
    """`record` clean, or with noise that keeps its meaning, or any noise, or that and gate noise (a quarter each)."""
    kind = draw(st.integers(0, 3))
    if kind >= 1:
        record = draw(same_meaning(record))
    if kind >= 2:
        record = draw(any_meaning(record, keys))
    if kind == 3:
        record = draw(gate_noise(record, keys))
    return record


@st.composite
def user_page(draw) -> list:
    page = []
    for i in range(draw(st.integers(0, 12))):
        version = draw(st.sampled_from(["1.1", "1.2"]))
        page.append(_noised(draw, {"sourcedId": f"u{i}", **draw(clean_user(version))}, USER_KEYS))
    return page


@st.composite
def org_page(draw) -> list:
    page = []
    for i in range(draw(st.integers(0, 12))):
        page.append(_noised(draw, {"sourcedId": f"o{i}", **draw(clean_org())}, ORG_KEYS))
    return page


def _same(fast: pa.Table, reference: pa.Table) -> None:
    assert fast.schema == reference.schema
    assert fast.to_pylist() == reference.to_pylist()


@SETTINGS
@given(user_page(), st.sampled_from([None, "student", "teacher"]))
def test_users_fast_path_gives_what_the_per_record_path_gives(page, role):
    fast_rejections: list = []
    reference_rejections: list = []
    table, skipped = users_table(iter(page), "GET /students offset 0", fast_rejections, role=role)
    expected, expected_skipped = _users_per_record(page, "GET /students offset 0", reference_rejections, role=role)
    _same(table, expected)
    assert skipped == expected_skipped
    assert fast_rejections == reference_rejections


@SETTINGS
@given(org_page())
def test_orgs_fast_path_gives_what_the_per_record_path_gives(page):
    fast_rejections: list = []
    reference_rejections: list = []
    table = orgs_table(page, "GET /orgs offset 0", fast_rejections)
    _same(table, _orgs_per_record(page, "GET /orgs offset 0", reference_rejections))
    assert fast_rejections == reference_rejections


def test_a_clean_page_takes_the_fast_path_only():
    """The common shapes (1.1 role + orgs[], 1.2 one roles[] entry) are vouched for: no record goes per record."""
    page = [{"sourcedId": "a", "status": "active", "dateLastModified": "2025-07-16T04:46:03.274Z", "role": "student",
             "enabledUser": "true", "givenName": " Maya ", "orgs": [ref("o1")], "grades": ["10"],
             "metadata": {"ic": {"legacysourceId": "L1"}}},
            {"sourcedId": "b", "status": "Inactive", "dateLastModified": "2025-07-16T04:46:03-05:00",
             "roles": [{"roleType": "primary", "role": "Student", "org": ref("o2")}], "primaryOrg": ref("o2"),
             "enabledUser": False}]
    from oneroster_pipeline.client import tables
    _, positions, slow = tables._user_columns(page)
    assert positions == [0, 1] and slow == []
    table, skipped = users_table(page, "x", [], role="student")
    assert skipped == 0 and table.column("status").to_pylist() == ["active", "tobedeleted"]
    assert table.column("org_sourced_ids").to_pylist() == [["o1"], ["o2"]]
    assert table.column("legacy_sourced_id").to_pylist() == ["L1", None]


def test_a_date_arrow_cannot_encode_is_dropped_not_an_error():
    """A lone surrogate (JSON "\\ud800") in dateLastModified: the value is dropped as `_timestamp` decides (NULL, the
    record kept, a value_dropped rejection), not an error."""
    page = [{"sourcedId": "a", "role": "student", "dateLastModified": "\ud800"},
            {"sourcedId": "b", "role": "student", "dateLastModified": "2024-06-15T10:00:00Z"}]
    rejections: list = []
    table, _ = users_table(page, "x", rejections)
    assert table.column("sourced_id").to_pylist() == ["a", "b"]
    assert table.column("date_last_modified").to_pylist()[0] is None
    assert [(r.sourced_id, r.field, r.kind) for r in rejections] == [("a", "dateLastModified", "value_dropped")]


def test_vouched_splits_positions():
    assert _vouched([["a", _BAD, "c"], ["x", "y", _BAD]], 3, [0]) == ([], [0, 1, 2])
    assert _vouched([["a", "b"]], 2, []) == ([0, 1], [])
