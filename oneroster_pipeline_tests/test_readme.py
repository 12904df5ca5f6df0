"""README.md is a user guide a newcomer can trust: small (at most 20 KB), with a contents list whose links resolve,
relative links to files that exist, the quick start's commands exactly the ones CI and test_front_door.py run, and
every command naming a module, script or job that exists. The reference material lives in docs/reference.md, which
names every ONEROSTER_* variable the code reads; `.env.example` lists the connection variables."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from oneroster_pipeline.client.settings import CONNECTION_VARS, ENV_VARS, ConnectionSettings
from oneroster_pipeline.config import read_env_file
from oneroster_pipeline.districts import DEPLOYMENT_VARS, KNOWN_VARS
from oneroster_pipeline.warehouse.policy import POLICY_VARS
from oneroster_pipeline.warehouse.store import TABLES_DDL

from .defs.test_definitions import JOBS
from .test_front_door import OPEN_THE_UI, QUICK_START_RUN

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "reference.md"
BENCHMARKS = ROOT / "benchmarks" / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"
DOCS = [README, REFERENCE, BENCHMARKS]
BIN = Path(sys.executable).parent
MAX_BYTES = 20_000

# the quick start's two commands: a contract (.ci/run mirrors the second, test_front_door.py runs the first's dg launch)
DEMO_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -e . && DAGSTER_HOME=$PWD .venv/bin/dg launch "
                "--job full_sync && .venv/bin/python -m oneroster_pipeline.summary")
TEST_COMMAND = ("apt-get install -y postgresql chromium && python3 -m venv .venv && .venv/bin/pip install -e "
                "'.[test]' && .venv/bin/pytest")
# the sections of the user guide, in order ("Changing provider" is also named by the provider-switch error message)
SECTIONS = ["Quick start", "Open the UI", "Using the UI", "Connect a real provider",
            "Many districts: ONEROSTER_DISTRICTS_FILE", "What lands in DuckDB", "Changing provider", "Troubleshooting",
            "Links"]
# the public table contract: every name README listed when the reference moved out
TABLES = ["oneroster_orgs", "oneroster_users", "buildings", "students", "student_buildings", "ignored_students",
          "pull_reports", "rejected_records", "sync_alerts", "student_changes", "sync_diffs", "sync_holds",
          "sync_runs", "provider_connections", "provider_switches", "id_crosswalk", "id_history", "switch_orgs",
          "switch_users", "student_sourced_ids"]
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)  # in a list item too
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.MULTILINE)


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(markdown: str) -> str:
    """The markdown without its fenced code blocks (a `#` line in a bash block is not a heading)."""
    return FENCE.sub("", markdown)


def headings(markdown: str) -> list[tuple[int, str]]:
    return [(len(hashes), title) for hashes, title in HEADING.findall(prose(markdown))]


def slug(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (word characters, hyphens, spaces kept), spaces
    to hyphens."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, title in headings(markdown):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def section(markdown: str, title: str) -> str:
    """The text under the heading `title` up to the next heading of the same or a higher level."""
    for match in HEADING.finditer(markdown):
        if match.group(2) == title:
            level, start = len(match.group(1)), match.end()
            following = [m.start() for m in HEADING.finditer(markdown, start) if len(m.group(1)) <= level
                         and not _inside_fence(markdown, m.start())]
            return markdown[start:following[0] if following else len(markdown)]
    raise AssertionError(f"no heading {title!r}")


def _inside_fence(markdown: str, position: int) -> bool:
    return any(m.start() < position < m.end() for m in FENCE.finditer(markdown))


def code_blocks(markdown: str) -> list[str]:
    return FENCE.findall(markdown)


def commands(markdown: str) -> list[str]:
    """Every command line of the markdown: the lines of its code blocks and its inline code spans that run
    something from `.venv/bin/` or `python -m`."""
    lines = [line for block in code_blocks(markdown) for line in _joined(block).splitlines()]
    lines += re.findall(r"`([^`\n]+)`", prose(markdown))
    return [line.strip() for line in lines if ".venv/bin/" in line or "python -m " in line]


def _joined(block: str) -> str:
    """A code block with its quoted multi-line arguments (the snapshots query) joined into one line."""
    return re.sub(r'"[^"]*"', lambda m: m.group(0).replace("\n", " "), block)


# ---- size and shape ------------------------------------------------------------------------------------------------
def test_the_readme_is_at_most_20_kb():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size:,} bytes; move reference material to docs/reference.md"


def test_the_readme_has_a_contents_list_whose_links_resolve_to_its_headings():
    readme = text(README)
    contents = section(readme, "Contents")
    links = [target for target in LINK.findall(contents)]
    assert links and all(target.startswith("#") for target in links), contents
    assert {target[1:] for target in links} <= anchors(readme)
    # complete and in order: every section below the contents is listed, where it stands
    listed = [target[1:] for target in links]
    sections = [slug(title) for level, title in headings(readme) if level in (2, 3) and title != "Contents"]
    assert listed == sections


def test_the_user_guide_sections_come_in_order():
    titles = [title for _, title in headings(text(README))]
    assert [t for t in titles if t in SECTIONS] == SECTIONS


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(doc):
    markdown = text(doc)
    for target in LINK.findall(markdown):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: {target} points to no file"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(text(linked)), f"{doc.name}: {target}: no such heading in {linked.name}"


def test_no_stale_facts_in_the_readme():
    """No test counts, timings or dated results: they go stale (benchmarks/README.md has the latest results). Quoted
    messages and commands (code spans) aside."""
    readme = re.sub(r"`[^`\n]*`", "", prose(text(README)))
    for pattern in (r"\b\d+ tests\b", r"\b\d+(\.\d+)?\s?(s|sec|seconds|min|minutes)\b", r"\b20\d\d-\d\d-\d\d\b",
                    r"\bmeasured\b", r"benchmark machine"):
        assert not re.search(pattern, readme, re.IGNORECASE), re.search(pattern, readme, re.IGNORECASE)


# ---- the quick start is the contract CI and test_front_door.py run ---------------------------------------------
def test_the_quick_start_commands_are_the_contract():
    blocks = [block.strip() for block in code_blocks(section(text(README), "Quick start"))]
    assert blocks[:2] == [DEMO_COMMAND, TEST_COMMAND]
    assert QUICK_START_RUN in DEMO_COMMAND  # what test_front_door.py runs
    assert OPEN_THE_UI in code_blocks(section(text(README), "Open the UI"))[0]


def test_ci_runs_the_readme_test_command():
    """.ci/run: the same packages, then the README's test command's steps in order (`--quiet` and a pip upgrade
    aside), ending with the same pytest."""
    ci = text(ROOT / ".ci" / "run")
    steps = TEST_COMMAND.split(" && ")
    packages = steps[0].removeprefix("apt-get install -y ").split()
    assert set(re.findall(r"missing\+=\((\w+)\)", ci)) == set(packages)
    lines = [" ".join(line.split()).replace(" --quiet", "") for line in ci.splitlines()
             if line.startswith(("python3 ", ".venv/bin/")) and "--upgrade pip" not in line]
    assert lines == steps[1:]


# ---- every command names something that exists -------------------------------------------------------------------
def _module_exists(module: str) -> bool:
    path = ROOT / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def _check_command(line: str) -> None:
    for part in re.split(r"\s*&&\s*", line):
        words = shlex.split(part, comments=True)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # leading VAR=value assignments
            words = words[1:]
        if not words:
            continue
        program = words[0]
        if program.startswith(".venv/bin/"):
            assert (BIN / program.removeprefix(".venv/bin/")).exists(), f"{line}: no {program} in the virtualenv"
        if "-m" in words:
            module = words[words.index("-m") + 1]
            assert _module_exists(module) or module == "venv", f"{line}: no module {module}"
        scripts = [w for w in words[1:2] if w.endswith(".py")]
        for script in scripts:
            assert (ROOT / script).is_file(), f"{line}: no script {script}"
        for flag in ("--job", "-j"):
            if flag in words:
                job = words[words.index(flag) + 1]
                assert job in JOBS, f"{line}: no job {job!r} in the code location"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_names_a_module_script_or_job_that_exists(doc):
    found = commands(text(doc))
    assert found
    for line in found:
        _check_command(line.replace("[--steps]", "").replace("[--record-paths-only]", ""))


def test_the_readme_runs_one_district_with_dg_launch():
    assert ".venv/bin/dg launch --job full_sync --partition north" in text(README)


# ---- the variables, the tables -------------------------------------------------------------------------------------
def variables_in(markdown: str) -> set[str]:
    return {name for name in re.findall(r"ONEROSTER_[A-Z0-9_]+", markdown) if not name.endswith("_")}


def test_the_reference_names_every_variable_the_code_reads():
    read = {*ENV_VARS.values(), *POLICY_VARS, *KNOWN_VARS.values(), *DEPLOYMENT_VARS}
    assert sorted(read - variables_in(text(REFERENCE))) == []


def test_every_variable_the_docs_name_is_one_the_code_reads():
    read = {*KNOWN_VARS.values(), *DEPLOYMENT_VARS}
    for path in (README, REFERENCE, ENV_EXAMPLE):
        assert sorted(variables_in(text(path)) - read) == [], path.name


def test_the_reference_variables_table_has_a_row_for_every_variable():
    table = section(text(REFERENCE), "Variables")
    rows = [line for line in table.splitlines() if line.startswith("| `ONEROSTER_")]
    named = set().union(*(variables_in(row.split(" | ")[0]) for row in rows))
    assert sorted({*KNOWN_VARS.values(), *DEPLOYMENT_VARS} - named) == []


def test_env_example_lists_the_connection_variables_and_is_a_valid_connection():
    listed = set(re.findall(r"^#?(ONEROSTER_[A-Z0-9_]+)=", text(ENV_EXAMPLE), re.MULTILINE))
    assert sorted(set(CONNECTION_VARS) - listed) == []
    values = read_env_file(ENV_EXAMPLE)  # as .env is read: the uncommented lines
    assert values and set(values) <= set(KNOWN_VARS.values())
    settings = ConnectionSettings.from_env(values)  # placeholders, but a configuration the code accepts
    assert settings.provider != "demo" and not settings.needs_demo_provider


def test_the_readme_lists_every_table_of_the_contract():
    listed = section(text(README), "What lands in DuckDB")
    assert [t for t in TABLES if f"`{t}`" not in listed] == []
    assert set(TABLES) <= set(TABLES_DDL)
    reference = section(text(REFERENCE), "Tables")
    assert [t for t in TABLES_DDL if f"`{t}`" not in reference] == []
