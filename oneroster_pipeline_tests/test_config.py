"""One configuration every command reads (issue 26 items 1-3): the environment, then the project folder's .env over
it (as Dagster's CLI gives it), then a district's own entry; one line names the sources, never a value."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb

from oneroster_pipeline.config import DEMO_DUCKDB_PATH, Config, duckdb_path_of
from oneroster_pipeline.warehouse import store


def test_dotenv_wins_over_the_shell_as_in_dagsters_cli_and_the_sources_line_names_no_value(tmp_path):
    (tmp_path / ".env").write_text("ONEROSTER_PROVIDER=csv\nONEROSTER_CSV_PATH=/exports/x.zip\n"
                                   "ONEROSTER_CLIENT_SECRET=dotenv-secret-value-1\n")
    config = Config.load({"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_PAGE_SIZE": "50", "PATH": "/bin"},
                         cwd=tmp_path)
    assert config.env["ONEROSTER_PROVIDER"] == "csv" and config.env["ONEROSTER_PAGE_SIZE"] == "50"
    line = config.describe()
    assert line.startswith("configuration: ") and str(tmp_path / ".env") in line
    assert "ONEROSTER_PROVIDER" in line and "ONEROSTER_CSV_PATH" in line
    assert "dotenv-secret-value-1" not in line and "/exports/x.zip" not in line and "csv" not in line.split(".env")[1]


def test_the_demo_has_a_file_of_its_own_and_a_real_provider_the_default_file():
    assert duckdb_path_of({}) == DEMO_DUCKDB_PATH
    assert duckdb_path_of({"ONEROSTER_PROVIDER": "demo"}) == DEMO_DUCKDB_PATH
    real = {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": "https://x/ims/oneroster/v1p1"}
    assert duckdb_path_of(real) == store.DEFAULT_DUCKDB_PATH
    assert duckdb_path_of({**real, "ONEROSTER_DUCKDB_PATH": "data/mine.duckdb"}) == "data/mine.duckdb"


def test_the_summary_reads_dotenv_as_a_run_does(tmp_path):
    database = tmp_path / "from-dotenv.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE students (status VARCHAR)")
        con.execute("INSERT INTO students VALUES ('active'), ('active')")
    (tmp_path / ".env").write_text(f"ONEROSTER_DUCKDB_PATH={database}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")}
    done = subprocess.run([sys.executable, "-m", "oneroster_pipeline.summary"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert str(database) in done.stdout and "configuration: " in done.stderr and ".env" in done.stderr
