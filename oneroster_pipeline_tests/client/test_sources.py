"""The client's front door: `open_source` gives a `Source` for REST and CSV alike, and sources.py re-exports the
public names of the modules that define them."""

from __future__ import annotations

from oneroster_pipeline.client import csv, normalize, paging, rest, sources
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import CsvSource, RestSource, Source, open_source

from .client_fixtures import serve, settings_for
from .test_csv_source import MANIFEST_11, ORGS, USERS_11_HEADER, user11, write_export


def test_open_source_gives_a_source_for_rest_and_csv(tmp_path):
    export = write_export(tmp_path, MANIFEST_11, {"orgs.csv": ORGS, "users.csv": USERS_11_HEADER + user11("s1")})
    with serve(auth="oauth2") as provider:
        for settings, kind in ((settings_for(provider), RestSource),
                               (ConnectionSettings(provider="csv", csv_path=str(export)), CsvSource)):
            with open_source(settings) as source:
                assert isinstance(source, kind) and isinstance(source, Source)
                assert sum(batch.num_rows for batch in source.student_batches()) > 0
                assert source.reports["students"].complete and source.fetch_school_count() > 0
                assert not hasattr(source, "connection_test")  # diagnostics.connection_test(source) instead


def test_sources_reexports_the_public_names():
    assert (sources.RestSource, sources.CsvSource, sources.PullReport, sources.Rejection, sources.delta_filter) == \
        (rest.RestSource, csv.CsvSource, paging.PullReport, normalize.Rejection, paging.delta_filter)
