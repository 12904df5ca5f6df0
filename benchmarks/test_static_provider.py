"""The benchmark's static provider is a faithful OneRoster 1.1 server for the sync: same records as the demo
provider, OAuth 2.0 enforced, paging headers right, an unsupported filter refused (so a delta falls back to full).

    PYTHONPATH=$PWD .venv/bin/pytest -q -p no:cacheprovider benchmarks/test_static_provider.py
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from static_provider import BASE_PATH, TOKEN_PATH, StaticProvider, build_collections, district_base, serve_districts  # noqa: E402

from oneroster_pipeline.client.settings import ConnectionSettings  # noqa: E402
from oneroster_pipeline.client.sources import open_source  # noqa: E402
from oneroster_pipeline.demo.district import DistrictShape  # noqa: E402
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings  # noqa: E402
from oneroster_pipeline.warehouse.pulls import stage_pull  # noqa: E402

STUDENTS, SCHOOLS = 1500, 5


@pytest.fixture(scope="module")
def static():
    provider = StaticProvider({}, "127.0.0.1", 0, "oauth2", "bench-client", "bench-secret", 0)
    provider.collections = build_collections(STUDENTS, SCHOOLS, 42, provider.origin + BASE_PATH, False)
    thread = threading.Thread(target=provider.server.serve_forever, daemon=True)
    thread.start()
    yield provider
    provider.server.shutdown()
    provider.server.server_close()


def _settings(base_url: str, token_url: str | None, client=("bench-client", "bench-secret"),
              auth: str = "oauth2") -> ConnectionSettings:
    env = {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": base_url, "ONEROSTER_AUTH": auth,
           "ONEROSTER_PAGE_SIZE": "400", "ONEROSTER_MAX_CONCURRENCY": "3"}
    if auth == "oauth2":
        env.update({"ONEROSTER_TOKEN_URL": token_url, "ONEROSTER_CLIENT_ID": client[0],
                    "ONEROSTER_CLIENT_SECRET": client[1]})
    return ConnectionSettings.from_env(env)


def _pull(settings: ConnectionSettings, folder: Path, since: datetime | None = None):
    with open_source(settings) as source:
        return stage_pull(source, "students", folder, since)


def test_same_students_as_the_demo_provider(static, tmp_path):
    """The sync's staged table from the static server equals the one from the demo provider (1.1, same district),
    apart from org hrefs (other host), which the sync does not keep."""
    ours = _pull(_settings(static.origin + BASE_PATH, static.origin + TOKEN_PATH), tmp_path / "static")
    assert ours.verdict.complete and ours.rows == STUDENTS and ours.report.pages == 4
    with DemoProvider(DistrictShape(schools=SCHOOLS, students=STUDENTS, seed=42),
                      DemoSettings(auth="none", versions=("1.1",))) as demo:
        theirs = _pull(_settings(demo.base_url("1.1"), None, auth="none"), tmp_path / "demo")
    import pyarrow.parquet as pq

    a, b = (pq.read_table(p.path).sort_by("sourced_id") for p in (ours, theirs))
    assert a.num_rows == b.num_rows == STUDENTS
    assert a.equals(b), [n for n in a.schema.names if not a.column(n).equals(b.column(n))]


def test_oauth2_is_enforced(static):
    url = f"{static.origin}{BASE_PATH}/students?limit=1"
    assert requests.get(url).status_code == 401
    assert requests.post(static.origin + TOKEN_PATH, data={"grant_type": "client_credentials"},
                         auth=("bench-client", "wrong")).status_code == 401
    token = requests.post(static.origin + TOKEN_PATH, data={"grant_type": "client_credentials"},
                          auth=("bench-client", "bench-secret")).json()["access_token"]
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and len(answer.json()["users"]) == 1


def test_paging_headers_and_any_window(static):
    token = requests.post(static.origin + TOKEN_PATH, data={"grant_type": "client_credentials"},
                          auth=("bench-client", "bench-secret")).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    whole = session.get(f"{static.origin}{BASE_PATH}/students", params={"limit": STUDENTS}).json()["users"]
    ids = [u["sourcedId"] for u in whole]
    assert ids == sorted(ids) and len(set(ids)) == STUDENTS
    answer = session.get(f"{static.origin}{BASE_PATH}/students", params={"limit": 7, "offset": 3, "sort": "sourcedId"})
    assert [u["sourcedId"] for u in answer.json()["users"]] == ids[3:10]
    assert answer.headers["X-Total-Count"] == str(STUDENTS)
    assert 'offset=10&sort=sourcedId>; rel="next"' in answer.headers["Link"].replace("limit=7&", "")
    tail = session.get(f"{static.origin}{BASE_PATH}/students", params={"limit": 1000, "offset": STUDENTS - 2})
    assert [u["sourcedId"] for u in tail.json()["users"]] == ids[-2:] and 'rel="next"' not in tail.headers["Link"]
    assert session.get(f"{static.origin}{BASE_PATH}/students", params={"offset": STUDENTS}).json() == {"users": []}
    schools = session.get(f"{static.origin}{BASE_PATH}/schools").json()["orgs"]
    assert len(schools) >= SCHOOLS and {o["type"] for o in schools} == {"school"}  # + the district's extra ones
    assert session.get(f"{static.origin}{BASE_PATH}/students", params={"sort": "familyName"}).status_code == 400
    assert session.get(f"{static.origin}{BASE_PATH}/teachers").status_code == 404


def test_a_delta_filter_is_refused_and_the_sync_falls_back_to_a_full_pull(static, tmp_path):
    pull = _pull(_settings(static.origin + BASE_PATH, static.origin + TOKEN_PATH), tmp_path,
                 since=datetime(2025, 9, 1, tzinfo=timezone.utc))
    assert pull.mode == "full" and pull.rows == STUDENTS and pull.verdict.complete


def test_many_districts_each_under_its_own_prefix(tmp_path, capsys):
    """`--districts`: one host serves each district under /<id>/ims/oneroster/v1p1 with its own students, one
    token for all; the hrefs name the district's prefix; an unknown district is a 404."""
    provider = StaticProvider({}, "127.0.0.1", 0, "oauth2", "bench-client", "bench-secret", 0)
    serve_districts(provider, [{"id": "small", "students": 300, "schools": 2, "seed": 1},
                               {"id": "big", "students": 900, "schools": 3, "seed": 2}], False)
    assert f"district big: {provider.origin}{district_base('big')}" in capsys.readouterr().out
    thread = threading.Thread(target=provider.server.serve_forever, daemon=True)
    thread.start()
    try:
        for key, students in (("small", 300), ("big", 900)):
            pull = _pull(_settings(provider.origin + district_base(key), provider.origin + TOKEN_PATH),
                         tmp_path / key)
            assert pull.verdict.complete and pull.rows == students
        token = requests.post(provider.origin + TOKEN_PATH, data={"grant_type": "client_credentials"},
                              auth=("bench-client", "bench-secret")).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        org = requests.get(f"{provider.origin}{district_base('big')}/students?limit=1", headers=headers).json()
        assert district_base("big") in org["users"][0]["orgs"][0]["href"]
        assert requests.get(f"{provider.origin}/nowhere{BASE_PATH}/students", headers=headers).status_code == 404
        assert requests.get(f"{provider.origin}{BASE_PATH}/students", headers=headers).status_code == 404
    finally:
        provider.server.shutdown()
        provider.server.server_close()
