"""benchmarks/orchestration_floor.py stands for the code location's full_sync in the many-district benchmark (the
same backfill with no work: Dagster's own cost). It is only a floor if its graph is the real one: same assets, checks,
steps, partitions, backfill policy, pools and executor."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHAPE = """
import json, sys
import dagster as dg
module = __import__(sys.argv[1], fromlist=["defs"])
defs = module.defs()  # both are lazy @dg.definitions, built when loaded
graph = defs.resolve_asset_graph()
keys = set(defs.resolve_job_def("full_sync").asset_layer.selected_asset_keys)  # full_sync's assets
steps = {}
for assets_def in list(graph.assets_defs) + list(defs.asset_checks or []):
    selected = {key for key in assets_def.keys if key in keys} | {
        key for key in assets_def.check_keys if key.asset_key in keys}
    if not selected:
        continue
    policy = getattr(assets_def, "backfill_policy", None)
    steps[assets_def.node_def.name] = {
        "assets": sorted(key.to_user_string() for key in assets_def.keys if key in keys),
        "checks": sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in assets_def.check_keys),
        "partitions": sorted(assets_def.partitions_def.get_partition_keys()) if assets_def.partitions_def else None,
        "per_run": policy.max_partitions_per_run if policy else None,
        "pools": sorted(p for p in (getattr(assets_def.node_def, "pools", None) or []) if p),
    }
print(json.dumps({"full_sync": sorted(key.to_user_string() for key in keys), "steps": steps,
                  "executor": defs.executor.name if defs.executor else None}, sort_keys=True))
"""


def shape(module: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", SHAPE, module], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_floor_has_full_syncs_graph_without_its_work(tmp_path):
    districts = tmp_path / "districts.yaml"
    districts.write_text("districts:\n  - id: north\n    demo_students: 50\n  - id: south\n    demo_students: 50\n"
                         "  - id: east\n    demo_students: 50\n")
    env = {**os.environ, "ONEROSTER_DISTRICTS_FILE": str(districts), "ONEROSTER_DISTRICTS_PER_RUN": "2",
           "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(tmp_path)}
    real = shape("oneroster_pipeline.definitions", env)
    floor = shape("benchmarks.orchestration_floor", env)
    assert set(real["steps"]) == {"oneroster_orgs", "buildings", "student_sync_assets", "org_and_building_checks",
                                  "student_checks"}
    assert real["full_sync"] == ["buildings", "ignored_students", "oneroster_orgs", "oneroster_users",
                                 "student_buildings", "students"]
    assert floor == real
    assert real["steps"]["buildings"]["per_run"] == 2
    assert real["steps"]["student_checks"]["partitions"] == ["east", "north", "south"]
