"""A lake whose data path is object storage (`ONEROSTER_DUCKLAKE_DATA_PATH=s3://bucket/prefix`): its access from the
AWS SDKs' own variables (`lake_settings.S3Access`), and a real sync through `dagster job execute` into an S3-compatible
server on loopback (moto's, over HTTP: DuckDB's httpfs extension writes and reads the Parquet files through it). The
secret key never shows in the configuration's repr, the run's output or an error."""

from __future__ import annotations

import os
import subprocess

import boto3
import dagster as dg
import pytest

from oneroster_pipeline.client.redaction import REDACTOR
from oneroster_pipeline.client.settings import SettingsError
from oneroster_pipeline.defs.resources import WarehouseResource
from oneroster_pipeline.warehouse import lake
from oneroster_pipeline.warehouse.lake_settings import LakeSettings
from oneroster_pipeline_tests.four_districts import DAGSTER

from .conftest import lake_env, needs_lake

SECRET = "s3-secret-Zq81xkP0w"  # a test value
BUCKET = "oneroster-lake"
DEMO = {"ONEROSTER_DEMO_STUDENTS": "240", "ONEROSTER_DEMO_SCHOOLS": "3"}


def s3_env(endpoint: str, data_path: str, catalog: str = "lake.ducklake") -> dict[str, str]:
    return {**lake_env(catalog, data_path), "AWS_ACCESS_KEY_ID": "oneroster-writer", "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint}


def test_an_s3_data_path_takes_its_access_from_the_aws_variables():
    settings = LakeSettings.from_env(s3_env("http://127.0.0.1:9000", "s3://bucket/lake"))
    assert settings.is_object_store
    sql = settings.s3.secret_sql("lake_data", settings.data_path)
    assert sql == ("CREATE OR REPLACE SECRET lake_data (TYPE s3, SCOPE 's3://bucket/lake', KEY_ID 'oneroster-writer', "
                   f"SECRET '{SECRET}', REGION 'us-east-1', ENDPOINT '127.0.0.1:9000', URL_STYLE 'path', "
                   "USE_SSL false)")
    assert SECRET not in repr(settings) and SECRET not in settings.describe()
    assert REDACTOR.redact(f"echoed {SECRET}") == "echoed ***"
    # AWS itself: no endpoint, the default URL style and TLS; no key at all: anonymous access
    assert "ENDPOINT" not in LakeSettings.from_env({**lake_env("l.ducklake", "s3://b/p"), "AWS_ACCESS_KEY_ID": "k",
                                                     "AWS_SECRET_ACCESS_KEY": "s"}).s3.secret_sql("x", "s3://b/p")
    assert "KEY_ID" not in LakeSettings.from_env(lake_env("l.ducklake", "s3://b/p")).s3.secret_sql("x", "s3://b/p")
    # a folder is no object store
    assert not LakeSettings.from_env(lake_env("l.ducklake", "/srv/lake")).is_object_store


@pytest.mark.parametrize(("env", "named"), [
    ({**lake_env("l.ducklake", "gs://bucket/lake")}, "ONEROSTER_DUCKLAKE_DATA_PATH"),
    ({**lake_env("l.ducklake", "s3://b/p"), "AWS_ACCESS_KEY_ID": "k"}, "AWS_SECRET_ACCESS_KEY"),
    ({**lake_env("l.ducklake", "s3://b/p"), "AWS_SECRET_ACCESS_KEY": SECRET}, "AWS_ACCESS_KEY_ID"),
    ({**lake_env("l.ducklake", "s3://b/p"), "AWS_ENDPOINT_URL_S3": "127.0.0.1:9000"}, "AWS_ENDPOINT_URL_S3"),
    ({**lake_env("l.ducklake", "s3://b/p"), "AWS_ENDPOINT_URL": "http://u:pw@minio:9000"}, "AWS_ENDPOINT_URL"),
])
def test_a_bad_object_store_setting_names_its_variable(env, named):
    with pytest.raises(SettingsError) as raised:
        LakeSettings.from_env(env)
    assert raised.value.variable == named and SECRET not in str(raised.value)


def test_the_warehouse_resource_carries_the_key_as_environment_variables(monkeypatch):
    env = s3_env("http://127.0.0.1:9000", "s3://bucket/lake")
    resource = WarehouseResource.from_environment(env)
    assert resource.aws_secret_access_key == dg.EnvVar("AWS_SECRET_ACCESS_KEY")  # never the value in the UI
    assert resource.aws_access_key_id == dg.EnvVar("AWS_ACCESS_KEY_ID")
    assert (resource.aws_region, resource.aws_endpoint_url_s3) == ("us-east-1", "http://127.0.0.1:9000")
    # what a run worker resolves: the same access
    resolved = WarehouseResource.from_environment(env, secrets_as_values=True).warehouse().lake
    assert resolved.s3 == LakeSettings.from_env(env).s3 and resolved.s3.secret == SECRET


@pytest.fixture(scope="module")
def s3_server():
    """An S3-compatible server on loopback (moto), its endpoint URL; one bucket made."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="admin", aws_secret_access_key="admin",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def objects(endpoint: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="admin", aws_secret_access_key="admin",
                      region_name="us-east-1")
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def run_full_sync(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ONEROSTER_", "AWS_"))}
    full.update({**DEMO, **env}, DAGSTER_HOME=str(tmp_path))
    return subprocess.run([DAGSTER, "job", "execute", "-m", "oneroster_pipeline.definitions", "-j", "full_sync"],
                          env=full, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


@needs_lake
def test_a_district_syncs_into_a_lake_on_object_storage(tmp_path, s3_server):
    env = s3_env(s3_server, f"s3://{BUCKET}/districts/", str(tmp_path / "catalog.ducklake"))
    done = run_full_sync(tmp_path, env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert SECRET not in done.stdout + done.stderr

    written = objects(s3_server, "districts/")
    assert written and all(key.endswith(".parquet") for key in written), written
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.duckdb"))
    settings = LakeSettings.from_env(env)
    with lake.reader(settings) as con:  # read back through the object store
        landed, buildings = con.execute(
            "SELECT (SELECT count(*) FROM main.students) + (SELECT count(*) FROM main.ignored_students),"
            " (SELECT count(*) FROM main.buildings)").fetchone()
    assert (landed, buildings) == (240, 3)


@needs_lake
def test_a_missing_bucket_fails_the_run_naming_the_data_path_without_the_secret(tmp_path, s3_server):
    env = s3_env(s3_server, "s3://no-such-bucket/districts/", str(tmp_path / "catalog.ducklake"))
    done = run_full_sync(tmp_path, env)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "no-such-bucket" in output and SECRET not in output
