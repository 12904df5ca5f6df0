"""The layout's promises, checked on the source: the core never imports dagster, no import circle, short modules,
the client and the demo never import each other.

Core = `client/`, `warehouse/`, `demo/` (and the top-level `config.py`, `districts.py`, `builtin_demo.py` and the
commands `summary.py`, `connection_test.py`): usable and testable without Dagster. The Dagster layer is `defs/` plus
`definitions.py`. Imports are read with `ast`, including those inside functions, so a circle cannot hide behind a
late import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "oneroster_pipeline"
CORE = ("client", "warehouse", "demo")
MAX_LINES = 450
DAGSTER_PACKAGES = ("dagster", "dagster_duckdb", "dagster_webserver", "dagster_postgres", "dagster_dg_cli")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of the package that `name` imports, at any depth of the file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def imported_names(path: Path) -> list[str]:
    """The absolute module names a file imports (relative imports give their module path without the dots)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
    return names


TOP_LEVEL_CORE = ("oneroster_pipeline.summary", "oneroster_pipeline.districts", "oneroster_pipeline.config",
                  "oneroster_pipeline.builtin_demo", "oneroster_pipeline.connection_test")


def core_modules() -> dict[str, Path]:
    return {name: path for name, path in modules().items()
            if name.split(".")[1:2] and name.split(".")[1] in CORE or name in TOP_LEVEL_CORE}


DAGSTER_LAYER = ("oneroster_pipeline.defs", "oneroster_pipeline.definitions")


def dagster_imports(core: dict[str, Path], known: dict[str, Path]) -> list[str]:
    """What modules of `core` import of Dagster or of the Dagster layer, relative imports included."""
    offenders = [f"{name} imports {imported}" for name, path in core.items()
                 for imported in imported_names(path) if imported.split(".")[0] in DAGSTER_PACKAGES]
    return offenders + [f"{name} imports {target}" for name, path in core.items()
                        for target in imports_of(name, path, known) if target.startswith(DAGSTER_LAYER)]


def test_the_core_never_imports_dagster():
    assert core_modules() and dagster_imports(core_modules(), modules()) == []


def test_the_layout_check_sees_relative_imports(tmp_path):
    """A relative import of the Dagster layer from the core (`from ..defs import resources`) is one too."""
    package = tmp_path / "oneroster_pipeline"
    for folder in ("warehouse", "defs"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "defs" / "resources.py").write_text("")
    (package / "warehouse" / "leaky.py").write_text("from ..defs import resources\n")
    known = {"oneroster_pipeline.defs": package / "defs" / "__init__.py",
             "oneroster_pipeline.defs.resources": package / "defs" / "resources.py",
             "oneroster_pipeline.warehouse.leaky": package / "warehouse" / "leaky.py"}
    core = {"oneroster_pipeline.warehouse.leaky": known["oneroster_pipeline.warehouse.leaky"]}
    assert sorted(dagster_imports(core, known)) == [
        "oneroster_pipeline.warehouse.leaky imports oneroster_pipeline.defs",
        "oneroster_pipeline.warehouse.leaky imports oneroster_pipeline.defs.resources"]


def test_no_import_circle():
    known = modules()
    graph = {name: {t for t in imports_of(name, path, known) if not known[t].name == "__init__.py"}
             for name, path in known.items()}
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_short(name):
    lines = modules()[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES}): split it by what it does"


def test_every_module_says_what_it_is_for():
    missing = [name for name, path in modules().items()
               if path.read_text().strip() and not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []


CLIENT, DEMO = "oneroster_pipeline.client", "oneroster_pipeline.demo"
# the connection test command's former name (`python -m oneroster_pipeline.client.connection_test`): it runs the
# package's command, which reads the package's configuration and may start the built-in demo district
CLIENT_COMMAND_ALIAS = "oneroster_pipeline.client.connection_test"


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def imports_between(modules_: dict[str, Path], source: str, target: str) -> list[str]:
    """What modules of package `source` import of package `target`, relative imports included."""
    return [f"{name} imports {imported}" for name, path in modules_.items() if _in(name, source)
            for imported in imports_of(name, path, modules_) if _in(imported, target)]


def test_the_client_and_the_demo_never_import_each_other():
    """The client talks to any provider and never starts the demo (`builtin_demo.py` does, for the sync and the
    connection test command); the demo provider is a server that knows nothing of the client."""
    known = modules()
    assert imports_between(known, CLIENT, DEMO) == [] and imports_between(known, DEMO, CLIENT) == []


def test_the_client_imports_nothing_of_the_package_outside_it():
    """Not the demo through another module either (config.py, districts.py, the commands all reach it)."""
    known = modules()
    outside = [line for line in imports_between(known, CLIENT, "oneroster_pipeline")
               if not _in(line.split(" imports ")[1], CLIENT) and not line.startswith(CLIENT_COMMAND_ALIAS + " ")]
    assert outside == []


def test_the_demo_rule_sees_relative_imports(tmp_path):
    """`from ...demo import server` in a module of client/ is caught, as `from oneroster_pipeline.demo import ...`."""
    package = tmp_path / "oneroster_pipeline"
    for folder in ("client/diagnostics", "demo"):
        (package / folder).mkdir(parents=True)
    files = {"oneroster_pipeline.client.diagnostics.leaky": package / "client" / "diagnostics" / "leaky.py",
             "oneroster_pipeline.client.plain": package / "client" / "plain.py",
             "oneroster_pipeline.demo": package / "demo" / "__init__.py",
             "oneroster_pipeline.demo.server": package / "demo" / "server.py"}
    for path in files.values():
        path.write_text("")
    files["oneroster_pipeline.client.diagnostics.leaky"].write_text("from ...demo import server\n")
    files["oneroster_pipeline.client.plain"].write_text("from oneroster_pipeline.demo.server import DemoProvider\n")
    assert sorted(imports_between(files, CLIENT, DEMO)) == [
        "oneroster_pipeline.client.diagnostics.leaky imports oneroster_pipeline.demo",
        "oneroster_pipeline.client.diagnostics.leaky imports oneroster_pipeline.demo.server",
        "oneroster_pipeline.client.plain imports oneroster_pipeline.demo.server"]


# SQL text: a query's keywords in the order a statement has them (upper case, as every query of the package is
# written), so prose (`ONEROSTER_MAX_UPDATE_PCT`, "select a partition", "Update the tables") is never taken for one
SQL = re.compile(r"\bSELECT\s+(?:DISTINCT\s+)?[\w*('\"]|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
                 r"|\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW|INDEX|SEQUENCE|SCHEMA)\b"
                 r"|\bALTER\s+TABLE\b|\bDROP\s+(?:TABLE|VIEW)\b|\bCOPY\s+\(|\bATTACH\s+'")


def string_texts(source: str) -> list[str]:
    """Every string literal of a module (docstrings included); an f-string with each `{...}` as `x`."""
    tree = ast.parse(source)
    inside_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(part.value if isinstance(part, ast.Constant) else "x" for part in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            texts.append(node.value)
    return texts


def sql_in(source: str) -> list[str]:
    return [" ".join(text.split())[:80] for text in string_texts(source) if SQL.search(text)]


def test_no_sql_in_the_dagster_layer():
    """`defs/` (and `definitions.py`) orchestrates: every query is a function of `warehouse/` named for what it
    returns."""
    found = {name: sql_in(path.read_text()) for name, path in modules().items() if name.startswith(DAGSTER_LAYER)}
    assert {name: texts for name, texts in found.items() if texts} == {}


@pytest.mark.parametrize("code", [
    'con.execute("SELECT duration_seconds FROM sync_runs WHERE job_name = ?", [job])',
    'store.query_dicts(con, """\n    SELECT b.building_id FROM buildings b\n    ORDER BY 1""")',
    'q = f"SELECT change, count(*) AS n FROM sync_diffs WHERE {where} GROUP BY 1"',
    'q = f"SELECT {columns} FROM students"',
    'q = "SELECT count(*) " "FROM ignored_students"',
    "q = \"SELECT 'sourced_id' AS column, sourced_id AS value FROM students\"",
    'con.execute("INSERT INTO sync_alerts VALUES (?)")',
    'con.execute("UPDATE buildings SET status = ?")',
    'con.execute("DELETE FROM students")',
    'con.execute("CREATE OR REPLACE TEMP TABLE _ids AS SELECT 1")',
    'metadata = {"query": f"SELECT * FROM sync_diffs WHERE run_id = \'{run_id}\'"}',
])
def test_the_sql_rule_catches_a_query(code):
    assert sql_in(code)


@pytest.mark.parametrize("code", [
    '"""Deactivations above ONEROSTER_MAX_DEACTIVATE(_PCT); more than ONEROSTER_MAX_UPDATE_PCT % updated."""',
    'description = "Select a partition, then Launch. Update the tables from the stored raw ones."',
    'description = "Rebuilds students from the stored raw tables (no provider request); Created: 3, Deleted: 0."',
    'line = f"run the job provider_switch (it builds id_crosswalk) with {tag}=true; select the district"',
    'text = "DuckDB allows one writer: insert into the queue, delete from the list, create a table later"',
])
def test_the_sql_rule_passes_prose(code):
    assert sql_in(code) == []
