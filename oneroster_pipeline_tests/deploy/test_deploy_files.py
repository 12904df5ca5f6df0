"""The deployment files cannot rot: deploy/dagster.yaml loads as a Dagster instance against a real PostgreSQL server,
deploy/workspace.yaml is a valid workspace, the Helm values keep the same queue limits, and the project's own
dagster.yaml stays one writer at a time."""

from __future__ import annotations

import importlib.util
import itertools
import re
import shutil

import pytest
import yaml
from dagster import DagsterInstance
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config

from oneroster_pipeline_tests.deploy.dagster_processes import DEPLOY_DAGSTER_YAML, PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
QUEUE_LIMITS = [
    {"key": "oneroster/provider_host", "value": {"applyLimitPerUniqueValue": True}, "limit": 2},
    {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
]


@pytest.fixture
def deploy_home(tmp_path, postgres, monkeypatch):
    """A DAGSTER_HOME holding deploy/dagster.yaml unchanged, its DAGSTER_PG_* variables pointing at the test server."""
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)
    shutil.copy(DEPLOY_DAGSTER_YAML, tmp_path / "dagster.yaml")
    return tmp_path


def test_deploy_dagster_yaml_is_a_postgres_instance_with_the_queue_limits(deploy_home, postgres):
    config, _ = dagster_instance_config(str(deploy_home))  # raises DagsterInvalidConfigError on a bad key
    assert config["run_launcher"]["module"] == "dagster_docker"
    assert config["run_launcher"]["class"] == "DockerRunLauncher"

    instance = DagsterInstance.from_config(str(deploy_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 8
        assert queue.tag_concurrency_limits == QUEUE_LIMITS
        # the `duckdb` pool counts across districts: a limit below max_concurrent_runs would hold districts back
        assert instance.get_concurrency_config().pool_config.default_pool_limit >= queue.max_concurrent_runs
        assert instance.get_runs() == []
    finally:
        instance.dispose()
    # the storage created its tables in the test server's database
    tables = postgres.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    assert {"runs", "event_logs", "jobs", "instigators"} <= {row[0] for row in tables}


def test_deploy_dagster_yaml_docker_launcher_config(deploy_home):
    """The launcher section against DockerRunLauncher's own config schema (dagster-docker is not a dependency: the
    image installs it, this environment may not)."""
    if importlib.util.find_spec("dagster_docker") is None:
        pytest.skip("dagster-docker is not installed here (deploy/Dockerfile installs it); its config is unchecked")
    instance = DagsterInstance.from_config(str(deploy_home))
    try:
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
    finally:
        instance.dispose()


def test_deploy_workspace_names_the_grpc_code_server_of_the_dockerfile():
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert process_workspace_config(workspace).success
    [entry] = workspace["load_from"]
    assert entry["grpc_server"]["location_name"] == "oneroster_pipeline"
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd, "deploy/Dockerfile has no CMD line"
    command = yaml.safe_load(cmd.group(1))
    assert command[:5] == ["dagster", "api", "grpc", "-m", "oneroster_pipeline.definitions"]
    assert command[command.index("-p") + 1] == str(entry["grpc_server"]["port"])


def test_helm_values_keep_the_same_queue_and_code_location():
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    deploy = yaml.safe_load(DEPLOY_DAGSTER_YAML.read_text())
    runs = values["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == deploy["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == deploy["concurrency"]["runs"]["tag_concurrency_limits"] == QUEUE_LIMITS
    assert values["concurrency"]["pools"]["defaultLimit"] == deploy["concurrency"]["pools"]["default_limit"]
    # the chart fails when the run coordinator sets the limits as well
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    [code] = values["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"] == ["-m", "oneroster_pipeline.definitions"]
    claim = code["volumes"][0]["persistentVolumeClaim"]["claimName"]
    pvc = yaml.safe_load((DEPLOY / "oneroster-data-pvc.yaml").read_text())
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_project_dagster_yaml_keeps_one_writer_at_a_time(tmp_path):
    """The single-district file (no ONEROSTER_DISTRICTS_FILE) has one DuckDB file and its runs carry no
    dagster/partition tag: only max_concurrent_runs 1 keeps two runs from writing it at once."""
    text = (PROJECT_ROOT / "dagster.yaml").read_text()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    dagster_instance_config(str(tmp_path))
    config = yaml.safe_load(text)
    assert config["concurrency"]["runs"] == {"max_concurrent_runs": 1}

    # the commented many-district block, uncommented in place of `concurrency:`, is valid, has the deployment's
    # limits, and lets the `duckdb` pool (shared by all districts) run as many applies as runs
    lines = text.splitlines()
    start = lines.index("#concurrency:")
    block = yaml.safe_load("\n".join(line[1:] for line in itertools.takewhile(
        lambda line: line.startswith("#"), lines[start:])))
    config["concurrency"] = block["concurrency"]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    loaded, _ = dagster_instance_config(str(tmp_path))
    assert loaded["concurrency"]["runs"]["tag_concurrency_limits"] == QUEUE_LIMITS
    assert loaded["concurrency"]["pools"]["default_limit"] == loaded["concurrency"]["runs"]["max_concurrent_runs"]


def test_the_lake_overlay_is_the_same_code_location_without_a_shared_volume():
    """deploy/helm-values-lake.yaml over helm-values.yaml: Helm replaces lists, so its code-location entry is whole;
    the same code server and run pods, the lake's settings valid (a PostgreSQL catalog, an s3:// data path), no
    PersistentVolumeClaim, the lake's secrets from a Secret, an image built with the [lake] extra."""
    from oneroster_pipeline.warehouse.lake_settings import LakeSettings

    base = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    overlay = yaml.safe_load((DEPLOY / "helm-values-lake.yaml").read_text())
    assert set(overlay) == {"dagster-user-deployments"}  # the queue, launcher and storage: helm-values.yaml's
    [code] = overlay["dagster-user-deployments"]["deployments"]
    [base_code] = base["dagster-user-deployments"]["deployments"]
    for key in ("name", "dagsterApiGrpcArgs", "port", "includeConfigInLaunchedRuns", "resources"):
        assert code[key] == base_code[key], key
    assert code["image"]["repository"] == base_code["image"]["repository"]
    env = {item["name"]: item["value"] for item in code["env"]}
    secrets = {"PGPASSWORD": "lake-catalog-password", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
               "AWS_SECRET_ACCESS_KEY": "lake-bucket-secret-key"}
    settings = LakeSettings.from_env({**env, **secrets})
    assert env["ONEROSTER_WAREHOUSE"] == "ducklake" and settings.is_postgres and settings.is_object_store
    assert not any("persistentVolumeClaim" in volume for volume in code["volumes"])
    mounted = {m["mountPath"] for m in code["volumeMounts"]}
    assert any(env["ONEROSTER_DISTRICTS_FILE"].startswith(path + "/") for path in mounted)
    assert {s["name"] for s in code["envSecrets"]} >= {"oneroster-district-secrets", "oneroster-lake-secrets"}
    assert not set(secrets) & set(env), "a secret written into the values"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ARG EXTRAS=""' in dockerfile and 'pip install --no-cache-dir ".${EXTRAS}"' in dockerfile
