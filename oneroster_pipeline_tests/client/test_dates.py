"""The date rule (issue 25): one function, `normalize._timestamp`, read by the REST pages (tables.py) and the CSV
source alike. ISO 8601 in the forms real exports use and the US `M/D/YYYY` of Microsoft SDS exports are read; a
slash date is month first (`1/05/2023` is 5 January 2023); a day-first or otherwise unreadable date is dropped (NULL,
the record kept, a `value_dropped` rejection), never guessed."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from oneroster_pipeline.client.csv import CsvSource
from oneroster_pipeline.client.normalize import UNREADABLE_DATE, VALUE_DROPPED, _Reject, _timestamp
from oneroster_pipeline.client.tables import timestamps, users_table

from .test_csv_source import MANIFEST_11, ORGS, USERS_11_HEADER, concat, user11, write_export

UTC = timezone.utc
READ = {
    "2023-01-05": datetime(2023, 1, 5, tzinfo=UTC),
    "2023-01-05T10:30": datetime(2023, 1, 5, 10, 30, tzinfo=UTC),
    "2023-01-05T10:30:15": datetime(2023, 1, 5, 10, 30, 15, tzinfo=UTC),
    "2023-01-05 10:30:15": datetime(2023, 1, 5, 10, 30, 15, tzinfo=UTC),
    "2023-01-05T10:30:15.25Z": datetime(2023, 1, 5, 10, 30, 15, 250000, tzinfo=UTC),
    "2023-01-05T10:30:15+01:00": datetime(2023, 1, 5, 9, 30, 15, tzinfo=UTC),
    "2023-01-05T10:30:15-0500": datetime(2023, 1, 5, 15, 30, 15, tzinfo=UTC),
    " 2023-01-05T10:30:15Z ": datetime(2023, 1, 5, 10, 30, 15, tzinfo=UTC),
    "1/05/2023": datetime(2023, 1, 5, tzinfo=UTC),  # month first: the moodle 1.2 fixture, Microsoft SDS
    "8/24/2021": datetime(2021, 8, 24, tzinfo=UTC),
    "12/31/2023 11:59 PM": datetime(2023, 12, 31, 23, 59, tzinfo=UTC),
    "12/31/2023 12:00:05 AM": datetime(2023, 12, 31, 0, 0, 5, tzinfo=UTC),
    "1/5/2023 14:03": datetime(2023, 1, 5, 14, 3, tzinfo=UTC),
}
UNREADABLE = ["13/05/2023", "15/06/2023", "2/30/2024", "1/5/23", "2023/01/05", "05.01.2023", "yesterday",
              "2023-02-30", "1/5/2023 13:00 PM", "0001-01-01T00:00:00+01:00", "\ud800"]


def test_the_date_forms_real_exports_use_are_read():
    assert {text: _timestamp(text) for text in READ} == READ
    assert [_timestamp(value) for value in (None, "", "   ")] == [None, None, None]  # missing


def test_an_ambiguous_impossible_or_non_string_date_is_refused_not_guessed():
    for value in [*UNREADABLE, 20230105, 1.5, True, {"date": "2023-01-05"}, ["2023-01-05"]]:
        with pytest.raises(_Reject) as refused:
            _timestamp(value)
        assert (refused.value.field, refused.value.reason) == ("dateLastModified", UNREADABLE_DATE), value


def test_the_arrow_column_gives_what_the_function_gives():
    values = [*READ, *UNREADABLE[:-1], None, "", "2024-06-15T10:00:00Z", "2024-06-15T10:00:00.123456+02:00"]
    column, refused = timestamps(pa.array(values, pa.string()))
    expected = []
    for text in values:
        try:
            expected.append(_timestamp(text))
        except _Reject:
            expected.append(None)
    assert column.to_pylist() == expected
    assert refused == [i for i, text in enumerate(values) if text in UNREADABLE]


def test_rest_and_csv_read_the_same_dates(tmp_path):
    """The same dates in a REST page and a CSV export: the same column, the same dropped values."""
    dates = [*READ, "13/05/2023", "yesterday", "2024-06-15T10:00:00Z"]
    ids = [f"s{i:02d}" for i in range(len(dates))]
    page = [{"sourcedId": sid, "role": "student", "dateLastModified": date} for sid, date in zip(ids, dates)]
    rejections: list = []
    rest, _ = users_table(page, "GET /students offset 0", rejections, role="student")
    users = USERS_11_HEADER + "".join(user11(sid, date=f'"{date}"') for sid, date in zip(ids, dates))
    with CsvSource.from_path(write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS, "users.csv": users})) as source:
        csv_rows = concat(source.student_batches())
        csv_rejections = list(source.rejections)
    assert csv_rows.column("sourced_id").to_pylist() == ids == rest.column("sourced_id").to_pylist()
    assert csv_rows.column("date_last_modified").to_pylist() == rest.column("date_last_modified").to_pylist()
    assert [(r.sourced_id, r.field, r.reason, r.kind) for r in rejections] == \
        [(r.sourced_id, r.field, r.reason, r.kind) for r in csv_rejections] == \
        [(ids[len(READ)], "dateLastModified", UNREADABLE_DATE, VALUE_DROPPED),
         (ids[len(READ) + 1], "dateLastModified", UNREADABLE_DATE, VALUE_DROPPED)]
    assert rest.column("date_last_modified").to_pylist()[len(READ):] == [
        None, None, datetime(2024, 6, 15, 10, tzinfo=UTC)]
