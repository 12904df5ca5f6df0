"""RestSource over HTTP: endpoints, delta filter, reports, school count, connection test and its CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from oneroster_pipeline.client import diagnostics as cli
from oneroster_pipeline.client.diagnostics import connection_test
from oneroster_pipeline.client.settings import ConnectionSettings, SettingsError
from oneroster_pipeline.client.sources import RestSource, delta_filter, open_source

from .client_fixtures import PAGE_SIZE, SECRETS, api_requests, concat, env_for, land, serve, settings_for

ROOT = Path(__file__).resolve().parents[2]


def test_pulls_use_orgs_and_students_and_report_what_they_saw():
    with serve(auth="oauth2", persona="infinite_campus") as provider, \
            open_source(settings_for(provider, "1.2")) as source:  # core scope only: /students, never nested
        assert isinstance(source, RestSource)
        orgs = concat(source.org_batches())
        students = concat(source.student_batches())
        counts = provider.district.counts()
        assert orgs.num_rows == counts["orgs"] and students.num_rows == counts["students"]
        paths = {e.path.rsplit("/", 1)[1] for e in api_requests(provider)}
        assert paths == {"orgs", "students"}
        report = source.reports["students"]
        assert (report.endpoint, report.page_size, report.sorted_by) == \
            ("/ims/oneroster/rostering/v1p2/students", PAGE_SIZE, "sourcedId")
        assert report.reported_total == report.first_reported_total == report.received == report.rows
        assert report.pages == -(-counts["students"] // PAGE_SIZE) and report.complete
        assert report.incomplete_reason is None and source.reports["orgs"].rows == counts["orgs"]


@pytest.mark.parametrize("person_key", [None, "userMasterIdentifier"])
def test_1_2_user_master_identifier_lands_in_oneroster_users(tmp_path, person_key):
    """Asked for in `fields=`, carried into oneroster_users; ONEROSTER_PERSON_KEY=userMasterIdentifier keys each
    student by it (the demo's are distinct from sourcedId and identifier: SSID + the identifier)."""
    env = {"ONEROSTER_PERSON_KEY": person_key} if person_key else {}
    with serve(auth="none") as provider, open_source(settings_for(provider, "1.2", env=env)) as source:
        con = land(source, tmp_path)
        users = [u for u in provider.district.expected_users() if u["role"] == "student"]
        fields = [e.query["fields"].split(",") for e in api_requests(provider) if e.path.endswith("/students")]
    with con:
        landed = dict(con.execute("SELECT sourced_id, user_master_identifier FROM oneroster_users").fetchall())
        students = {sid for (sid,) in con.execute("SELECT sourced_id FROM students").fetchall()}
    assert fields and all("userMasterIdentifier" in f for f in fields)
    assert landed == {u["sourcedId"]: u["userMasterIdentifier"] for u in users}
    assert all(v.startswith("SSID") for v in landed.values())
    assert students and students <= set(landed.values() if person_key else landed)


def test_delta_pull_filters_on_date_last_modified():
    with serve(auth="oauth2") as provider, open_source(settings_for(provider)) as source:
        since = datetime.now(timezone.utc) - timedelta(seconds=2)
        changed = provider.district.student_ids()[10:13]
        for sid in changed:
            provider.district.update_student(sid, familyName="Delta")
        delta = concat(source.student_batches(modified_since=since))
        assert sorted(delta.column("sourced_id").to_pylist()) == sorted(changed)
        report = source.reports["students"]
        assert report.filter == delta_filter(since) and report.complete
        assert api_requests(provider)[-1].query["filter"] == f"dateLastModified>'{since:%Y-%m-%dT%H:%M:%SZ}'"


def test_delta_filter_format():
    naive = datetime(2026, 11, 27, 1, 2, 3, 999)
    assert delta_filter(naive) == "dateLastModified>'2026-11-27T01:02:03Z'"
    eastern = datetime(2026, 11, 27, 1, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert delta_filter(eastern) == "dateLastModified>'2026-11-27T06:00:00Z'"


def test_rejections_are_per_pull():
    with serve(auth="none") as provider, open_source(settings_for(provider)) as source:
        source.rejections.append("left over")
        list(source.org_batches())
        assert source.rejections == []


@pytest.mark.parametrize("quirks", [set(), {"no_total_count", "no_link", "plural_envelopes"}])
def test_fetch_school_count(quirks):
    with serve(auth="none", quirks=quirks) as provider, open_source(settings_for(provider, page_size=2)) as source:
        assert source.fetch_school_count() == provider.district.counts()["schools"]


def test_connection_test_reports_version_auth_and_schools():
    with serve(auth="oauth2") as provider:
        report = connection_test(settings_for(provider, "1.1"))
        counts = provider.district.counts()
        assert report.ok and report.error is None
        assert (report.version, report.auth, report.school_count, report.school_count_exact) == \
            ("1.1", "oauth2", counts["schools"], True)
        assert report.student_count == counts["students"] and len(report.sample_schools) == 3
        assert report.connection == f"oneroster {provider.base_url('1.1')} (OneRoster 1.1)"
        lines = report.as_lines()
        assert f"schools: {counts['schools']}" in "\n".join(lines) and lines[-1].startswith("result: OK")
        assert report.as_dict()["school_count"] == counts["schools"]
        with open_source(settings_for(provider, "1.2")) as source:
            assert connection_test(source).ok


def test_connection_test_warns_when_few_students_are_shared():
    from oneroster_pipeline.demo.district import DistrictShape

    with serve(DistrictShape(schools=4, students=30, seed=3), auth="none") as provider:
        report = connection_test(settings_for(provider))
        assert report.ok and any("unenrolled" in w for w in report.warnings)


def test_connection_test_failure_is_a_report_with_a_clear_error():
    with serve(auth="oauth2") as provider:
        report = connection_test(settings_for(provider, client_secret="nope-" + SECRETS[0]))
        assert not report.ok and "401" in report.error and "invalid_client" in report.error
        assert SECRETS[0] not in str(report.as_dict()) and report.as_lines()[-1].startswith("result: FAILED")


def test_cli_prints_the_report_and_exits_by_result(capsys):
    with serve(auth="oauth1") as provider:
        assert cli.main([], env_for(provider, "1.1")) == 0
        out = capsys.readouterr().out
        assert "OneRoster version: 1.1" in out and "auth: oauth1" in out and "result: OK" in out
        wrong = {**env_for(provider, "1.1"), "ONEROSTER_CLIENT_SECRET": "bad-" + SECRETS[0]}
        assert cli.main([], wrong) == 1
        captured = capsys.readouterr()
        assert "connection test failed: HTTP 401" in captured.err and SECRETS[0] not in captured.out + captured.err
    assert cli.main([], {"ONEROSTER_PROVIDER": "oneroster"}) == 1
    assert "ONEROSTER_BASE_URL" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["oneroster_pipeline.connection_test",
                                    "oneroster_pipeline.client.connection_test"])  # its former name still works
def test_cli_module_runs_against_the_built_in_demo(module):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "started the built-in demo provider" in done.stdout and "result: OK" in done.stdout


def test_the_client_never_starts_the_demo(capsys):
    """The client's command line refuses settings that need the built-in demo provider unless the command gives it
    one to start (`oneroster_pipeline.connection_test` does)."""
    assert cli.main([], {}) == 1
    assert "ONEROSTER_BASE_URL: the demo provider is not started" in capsys.readouterr().err


def test_demo_settings_without_a_started_provider_are_refused():
    with pytest.raises(SettingsError) as info:
        open_source(ConnectionSettings.from_env({}))
    assert info.value.variable == "ONEROSTER_BASE_URL"


def test_repr_of_a_source_has_no_secret():
    with serve(auth="oauth2") as provider, open_source(settings_for(provider)) as source:
        list(source.org_batches())
        text = repr(source) + repr(source.settings) + repr(source.session.auth)
        assert SECRETS[0] not in text and source.session.auth._token not in text
