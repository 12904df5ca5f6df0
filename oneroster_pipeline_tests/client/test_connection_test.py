"""The diagnostic connection test over real HTTP against the demo provider and its quirks."""

from __future__ import annotations

from oneroster_pipeline.client import diagnostics as cli
from oneroster_pipeline.client.diagnostics import connection_test
from oneroster_pipeline.demo.district import DistrictShape

from .client_fixtures import SECRETS, env_for, serve, settings_for


def checks(report) -> dict[str, tuple[str, str]]:
    return {check: (result, detail) for check, result, detail in report.rows()}


def test_a_server_without_total_count_that_rejects_sort_is_reported():
    with serve(auth="oauth2", quirks={"no_total_count", "reject_sort"}) as provider:
        report = connection_test(settings_for(provider))
        assert report.ok and report.error is None
        assert report.paging_headers == {"X-Total-Count": False, "Link": True}
        assert report.sort_supported is False and report.date_filter_supported is True
        rows = checks(report)
        assert rows["paging headers"][0] == "warning" and "no X-Total-Count" in rows["paging headers"][1]
        assert rows["sort"][0] == "warning" and "HTTP 400 (invalid_sort_field)" in rows["sort"][1]
        assert rows["dateLastModified filter"][0] == "ok"
        assert rows["students"][0] == "info" and report.student_count is None
        assert rows["result"][0] == "ok"
        assert all(len(row) == 3 and all(isinstance(v, str) for v in row) for row in report.rows())
        assert any("sort" in w for w in report.warnings)


def test_spec_server_every_check_is_ok_with_scopes_and_envelopes():
    with serve(auth="oauth2") as provider:
        report = connection_test(settings_for(provider, "1.2"))
        rows = checks(report)
        assert report.ok and not report.warnings, report.rows()
        assert rows["version path"] == ("ok", "OneRoster 1.2 at /ims/oneroster/rostering/v1p2")
        assert "roster-core.readonly" in rows["auth scopes"][1]
        assert report.envelope_keys == {"/schools": "orgs", "/students": "users"}
        assert report.paging_agrees is True and report.sort_supported and report.fields_supported
        assert SECRETS[0] not in str(report.as_dict()) + report.as_table()


def test_quirky_servers_are_described():
    with serve(auth="none", quirks={"no_total_count", "no_link", "reject_date_filter", "reject_fields",
                                    "plural_envelopes"}) as provider:
        report = connection_test(settings_for(provider))
        rows = checks(report)
        assert report.ok
        assert report.paging_headers == {"X-Total-Count": False, "Link": False}
        assert "neither X-Total-Count nor Link" in rows["paging headers"][1]
        assert report.date_filter_supported is False and rows["dateLastModified filter"][0] == "warning"
        assert "full pull" in rows["dateLastModified filter"][1]
        assert report.fields_supported is False and rows["fields"][0] == "info"
        assert report.envelope_keys == {"/schools": "schools", "/students": "students"}
        assert "not the spec's" in rows["envelope keys"][1]


def test_link_disagreeing_with_the_records_is_a_warning():
    with serve(auth="none", quirks={"link_off_by_one"}) as provider:
        report = connection_test(settings_for(provider))
        assert report.paging_agrees is False
        assert "rel=next points at offset 6 after 5 records" in checks(report)["paging agreement"][1]


def test_oauth1_reports_the_signature_method():
    with serve(auth="oauth1") as provider:
        report = connection_test(settings_for(provider, "1.1"))
        assert report.ok and checks(report)["auth mode"] == ("ok", "OAuth 1.0a request signing, HMAC-SHA256")


def test_schools_are_compared_with_known_buildings():
    with serve(auth="none") as provider:
        schools = [o["sourcedId"] for o in provider.district.orgs() if o["type"] == "school" and o["status"] == "active"]
        inactive = [sid for sid in provider.district.school_ids() if sid not in schools]
        known = schools[1:] + ["B-GONE-1"]
        report = connection_test(settings_for(provider), building_sis=known)
        assert report.ok and report.buildings_without_school == ["B-GONE-1"]
        assert len(report.schools_without_building) == 1 and schools[0] in report.schools_without_building[0]
        result, detail = checks(report)["schools vs buildings"]
        assert result == "warning" and "1 schools with no building" in detail and "B-GONE-1" in detail
        everything = connection_test(settings_for(provider), building_sis=schools)
        assert checks(everything)["schools vs buildings"][0] == "ok"
        if inactive:  # a building whose school is being deleted has no (active) school
            stale = connection_test(settings_for(provider), building_sis=schools + inactive)
            assert stale.buildings_without_school == sorted(inactive)


def test_few_students_for_the_schools_hint_at_classlink_unenrolled_users():
    with serve(DistrictShape(schools=4, students=30, seed=3), auth="none") as provider:
        report = connection_test(settings_for(provider))
        result, detail = checks(report)["students"]
        assert report.ok and result == "warning" and "unenrolled users" in detail


def test_cli_prints_the_table_and_compares_buildings(capsys, tmp_path):
    with serve(auth="none", quirks={"no_total_count", "reject_sort"}) as provider:
        csv_file = tmp_path / "buildings.csv"
        csv_file.write_text("name,building_sis\nOld Annex,B-OLD\n")
        assert cli.main(["--buildings-csv", str(csv_file), "--building-sis", "B-X,B-Y"], env_for(provider)) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[1].split() == ["check", "result", "detail"]
        assert "paging headers" in out and "no X-Total-Count" in out and "schools vs buildings" in out
        assert "3 buildings with no school: B-OLD, B-X, B-Y" in out and "result: OK" in out
