"""Several first runs at once on a fresh DAGSTER_HOME (issue 26 item 9): with Dagster's own SQLite storage two of
them both created the databases and stamped the schema version twice, and every later run failed with
"alembic_version has more than one head" (districts synced from cron stopped for good). With the project's
dagster.yaml (defs/instance_storage.py) they all run, and the instance stays usable."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
RUNS = 5


def test_first_runs_started_together_on_a_fresh_instance_all_succeed(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    base = {k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")}
    base.update(DAGSTER_HOME=str(home), ONEROSTER_DEMO_STUDENTS="20", ONEROSTER_DEMO_SCHOOLS="2")

    def start(n: int) -> subprocess.Popen:
        env = {**base, "ONEROSTER_DUCKDB_PATH": str(tmp_path / f"district{n}.duckdb")}
        return subprocess.Popen([DAGSTER, "job", "execute", "-m", "oneroster_pipeline.definitions", "-j",
                                 "building_sync"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    runs = [start(n) for n in range(RUNS)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    failed = [out[-2000:] for run, out in zip(runs, outputs) if run.returncode != 0]
    assert not failed, failed[0]
    for database in (home / "history" / "runs.db", home / "history" / "runs" / "index.db",
                     home / "schedules" / "schedules.db"):
        with sqlite3.connect(database) as con:
            assert con.execute("SELECT count(*) FROM alembic_version").fetchall() == [(1,)], database
    later = start(RUNS)  # the instance stays usable
    assert later.wait(timeout=600) == 0, later.communicate()[0][-2000:]
