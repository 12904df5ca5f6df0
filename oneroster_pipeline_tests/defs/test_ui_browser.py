"""The Dagster UI workflow of a district admin, in a real browser (headless Debian Chromium driven by Playwright).

`dagster dev` serves the project's workspace.yaml on a free loopback port, with a temporary DAGSTER_HOME holding a
copy of dagster.yaml, a temporary DuckDB file and the built-in demo district (300 students). The walkthrough:
the asset graph shows every asset, the Jobs page every job, each asset's Checks tab every check; `full_sync` is
launched with "Materialize all" on its job page and succeeds; every check then shows Succeeded; the rebuild of
README's "Changing provider" offers the active connection only and launches one run; the
`daily_student_sync` schedule is switched on from Automation and GraphQL reports it RUNNING.

Screenshots of every step land in test-artifacts/ui/ (a step that failed is saved as `<step>-FAILED.png`, and the
`dagster dev` log as dagster-dev.log). Needs /usr/bin/chromium (Debian package `chromium`; `.ci/run` installs
it): without it the test fails in CI (env CI set) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from . import ui_helpers as ui

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # judged by the `browser` fixture: fail in CI, skip elsewhere
    expect = sync_playwright = None

FULL_SYNC_ASSETS = ["oneroster_orgs", "buildings", "oneroster_users", "students", "student_buildings",
                    "ignored_students"]
GROUPS = {  # asset group -> its assets: with several groups the global lineage shows each group collapsed
    "oneroster": [*FULL_SYNC_ASSETS, "student_sync_preview"],
    "oneroster_setup": ["provider_connection_test"],
    "provider_switch": ["id_crosswalk", "provider_connections", "student_tables_by_connection"],
}
ASSETS = [asset for assets in GROUPS.values() for asset in assets]
CHECKS = {  # asset -> its checks
    "oneroster_orgs": ["schools_present_guard", "pull_complete", "rejections_within_tolerance"],
    "buildings": ["building_sis_matches_schools", "building_sis_unique"],
    "oneroster_users": ["fetched_count_matches_provider_total", "pull_complete", "rejections_within_tolerance"],
    "students": ["mass_change_guard", "students_ids_unique", "students_buildings_exist", "students_landed",
                 "one_student_per_person"],
}
JOBS = ["building_sync", "student_sync", "full_sync", "preview_student_sync", "test_connection",
        "provider_switch", "provider_switch_preview", "rebuild_student_tables"]
SCHEDULE = "daily_student_sync"
JOB_URL = f"/locations/{ui.LOCATION}/jobs/full_sync"
STUDENT_JOB_URL = f"/locations/{ui.LOCATION}/jobs/student_sync"
REBUILD_JOB_URL = f"/locations/{ui.LOCATION}/jobs/rebuild_student_tables"
REBUILD_ASSET = "student_tables_by_connection"
SYNC_MODE_TAG = "oneroster/sync_mode"
UI_TIMEOUT_MS = 30_000


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the UI browser test must run; .ci/run installs Debian's chromium)",
                    pytrace=False)
    pytest.skip(f"{reason}: install it to run the UI browser test "
                "(apt-get install -y chromium; pip install -e '.[test]')")


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    ui.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ui.ARTIFACTS.glob("*.png"):
        old.unlink()
    server = ui.DagsterDev(tmp_path_factory.mktemp("dagster_home"), ui.ARTIFACTS / "dagster-dev.log")
    server.start()
    try:
        server.wait_until_loaded()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    if not ui.CHROMIUM.exists():
        unavailable(f"{ui.CHROMIUM} not found")
    if sync_playwright is None:
        unavailable("the playwright package is not installed")
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(ui.CHROMIUM), args=ui.CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser, dagster_dev):
    context = browser.new_context(base_url=dagster_dev.base_url, viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    # the webserver's first visit shows a "Join the Dagster community" dialog over the page: dismiss it whenever
    page.add_locator_handler(page.get_by_role("button", name="Skip", exact=True), lambda skip: skip.click())
    yield page
    context.close()


def link(page, text: str):
    """A link by its visible name: the link's whole text, or an element of it (a schedule row's link also holds
    its cron). Not by accessible name: Dagster's start with the icon's label ("job full_sync")."""
    links = page.get_by_role("link")
    return links.filter(has=page.get_by_text(text, exact=True)).or_(
        links.filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))).first


def open_nav(page, label: str) -> None:
    """Click an entry of the left navigation, as a person would."""
    page.goto("/")
    link(page, label).click()


def check_status(page, check: str):
    """The status word shown next to a check's name in an asset's Checks tab."""
    name = page.get_by_title(check, exact=True).first
    expect(name, f"check {check} is not listed").to_be_visible()
    return name.locator("xpath=..")


def test_graphql_serves_every_asset_check_job_and_the_schedule(dagster_dev):
    repo = dagster_dev.repository()
    served_assets = {"/".join(node["assetKey"]["path"]): node for node in repo["assetNodes"]}
    for asset in ASSETS:
        assert asset in served_assets, f"asset {asset} is missing from the code location"
    for asset, checks in CHECKS.items():
        served = {c["name"] for c in served_assets[asset]["assetChecksOrError"]["checks"]}
        for check in checks:
            assert check in served, f"check {check} on {asset} is missing from the code location"
    jobs = {job["name"] for job in repo["jobs"]}
    for job in JOBS:
        assert job in jobs, f"job {job} is missing from the code location"
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    assert SCHEDULE in schedules, f"schedule {SCHEDULE} is missing from the code location"
    assert schedules[SCHEDULE] == "STOPPED", "the daily schedule must start switched off"


def test_asset_graph_jobs_and_checks_are_listed(page):
    with ui.step(page, "01-asset-graph"):
        open_nav(page, "Lineage")
        expect(page.get_by_text("Global asset lineage").first).to_be_visible()
        for group in GROUPS:
            expect(page.get_by_role("button", name=f"asset_group {group} {group}"),
                   f"asset group {group} not in the global lineage").to_be_visible()

    for group, assets in GROUPS.items():
        with ui.step(page, f"01-asset-group-{group}"):
            page.goto(f"/locations/{ui.LOCATION}/asset-groups/{group}/lineage")
            for asset in assets:
                expect(page.get_by_text(asset, exact=True).first,
                       f"asset {asset} not in the lineage of group {group}").to_be_visible()
            expect(page.get_by_text("Loading...")).to_have_count(0)  # every node has its status
            # "Materialize" for a one-asset group, "Materialize all" otherwise
            expect(page.get_by_role("button", name="Materialize").first).to_be_visible()

    with ui.step(page, "02-jobs"):
        open_nav(page, "Jobs")
        for job in JOBS:
            expect(link(page, job), f"job {job} not on the Jobs page").to_be_visible()

    for asset, checks in CHECKS.items():
        with ui.step(page, f"03-checks-{asset}"):
            page.goto(f"/assets/{asset}?view=checks")
            expect(page.get_by_text(f"Checks ({len(checks)})", exact=True)).to_be_visible()
            for check in checks:
                expect(check_status(page, check)).to_contain_text("Not evaluated", ignore_case=True)


def test_full_sync_launched_from_the_ui_succeeds_and_checks_pass(page, dagster_dev):
    started = time.monotonic()
    with ui.step(page, "04-full-sync-job"):
        page.goto(JOB_URL)
        expect(page.get_by_text("full_sync", exact=True).first, "job full_sync has no page").to_be_visible()
        launch = page.get_by_role("button", name="Materialize all")
        expect(launch).to_be_enabled()

    with ui.step(page, "05-run-launched"):
        launch.click()
        expect(page.get_by_text("Launched run")).to_be_visible()
        page.get_by_role("link", name="View", exact=True).click()  # the toast's link to the new run
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
        run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)

    with ui.step(page, "06-run-succeeded"):
        run = dagster_dev.wait_for_run(run_id)
        assert run["status"] == "SUCCESS", (
            f"full_sync run {run_id} ended {run['status']}: {dagster_dev.run_errors(run_id)}")
        assert run["jobName"] == "full_sync"
        assert {"key": "dagster/from_ui", "value": "true"} in run["tags"]
        page.reload()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        expect(page.get_by_text(f"{len(FULL_SYNC_ASSETS)} assets", exact=True).first).to_be_visible()
        expect(page.get_by_text(f"{sum(map(len, CHECKS.values()))} checks", exact=True).first).to_be_visible()

    served = {"/".join(n["assetKey"]["path"]): n for n in dagster_dev.repository()["assetNodes"]}
    for asset, checks in CHECKS.items():
        executions = {c["name"]: c["executionForLatestMaterialization"]
                      for c in served[asset]["assetChecksOrError"]["checks"]}
        for check in checks:
            execution = executions.get(check)
            assert execution and execution["runId"] == run_id, f"check {check} did not run in {run_id}"
            assert execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"], (
                f"check {check} on {asset}: {execution}")
        with ui.step(page, f"07-check-results-{asset}"):
            page.goto(f"/assets/{asset}?view=checks")
            for check in checks:
                expect(check_status(page, check), f"check {check} does not show Succeeded").to_contain_text(
                    "Succeeded")
    print(f"full_sync launched from the UI, succeeded and checked in {time.monotonic() - started:.1f} s")


def test_student_sync_with_a_run_tag_from_the_launchpad(page, dagster_dev):
    """README "Using the UI", step 7: a run tag set in the launchpad reaches the sync (here: force a full pull)."""
    with ui.step(page, "08-launchpad-tag"):
        page.goto(STUDENT_JOB_URL)
        expect(page.get_by_role("button", name="Materialize all")).to_be_enabled()
        # the ▾ beside "Materialize all"
        page.get_by_role("button").filter(has=page.locator("[aria-label=arrow_drop_down]")).last.click()
        page.get_by_role("menuitem", name="Open launchpad").click()
        launchpad = page.get_by_role("dialog").filter(has_text=re.compile(r"Launchpad \("))
        unmaterialized_upstream = page.get_by_role("dialog").filter(has_text="Are you sure?")
        expect(launchpad.or_(unmaterialized_upstream)).to_be_visible()
        if unmaterialized_upstream.is_visible():  # only when buildings was never materialized
            unmaterialized_upstream.get_by_role("button", name="Confirm").click()
        launchpad.get_by_role("button", name="Edit tags").click()
        tags = page.get_by_role("dialog").filter(has_text="Add tags to run")
        tags.get_by_placeholder("Tag Key").fill(SYNC_MODE_TAG)
        tags.get_by_placeholder("Tag Value").fill("full")
        tags.get_by_role("button", name="Apply").click()
        expect(tags).to_be_hidden()
        expect(launchpad.get_by_text(f"{SYNC_MODE_TAG}: full")).to_be_visible()

    with ui.step(page, "09-tagged-run-succeeded"):
        launchpad.get_by_role("button", name=re.compile(r"Materialize$")).click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
        run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)
        run = dagster_dev.wait_for_run(run_id)
        assert run["status"] == "SUCCESS", (
            f"student_sync run {run_id} ended {run['status']}: {dagster_dev.run_errors(run_id)}")
        assert run["jobName"] == "student_sync"
        assert {"key": SYNC_MODE_TAG, "value": "full"} in run["tags"]
        assert dagster_dev.latest_metadata("oneroster_users", run_id).get("pull_mode") == "full"
        page.reload()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()


def _launched_run(page) -> str:
    """After a launch button: the toast's link to the new run; its id."""
    expect(page.get_by_text("Launched run")).to_be_visible()
    page.get_by_role("link", name="View", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    return re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)


def test_rebuild_offers_the_active_connection_only_and_launches_one_run(page, dagster_dev):
    """README "Changing provider" as Dagster 1.13 shows it: the preview's and the switch's launch buttons, and the
    rebuild's dialog for one partition."""
    for job, button in (("provider_switch_preview", "Materialize"), ("provider_switch", "Materialize all")):
        with ui.step(page, f"13-{job}-launch-button"):
            page.goto(f"/locations/{ui.LOCATION}/jobs/{job}")
            # the accessible name starts with the icon's label ("materialization Materialize")
            expect(page.get_by_role("button", name=re.compile(rf"\b{button}$"))).to_be_visible()
    # an instance from an earlier version kept a retired connection's partition: the next sync removes it
    retired = "oneroster-v1p1-retired0"
    dagster_dev.add_dynamic_partition("provider_connection", retired)
    with ui.step(page, "14-sync-after-upgrade"):
        page.goto(STUDENT_JOB_URL)
        page.get_by_role("button", name="Materialize all").click()
        run_id = _launched_run(page)
        run = dagster_dev.wait_for_run(run_id)
        assert run["status"] == "SUCCESS", f"student_sync {run_id}: {dagster_dev.run_errors(run_id)}"
    [active] = dagster_dev.partition_keys(REBUILD_ASSET)
    assert active.startswith("demo-") and active != retired

    with ui.step(page, "15-rebuild-one-partition"):
        page.goto(REBUILD_JOB_URL)
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {REBUILD_ASSET}")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="All", exact=True).click()
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
        launch = dialog.get_by_role("button", name="Launch 1 run")
        expect(launch).to_be_enabled()

    with ui.step(page, "16-rebuild-succeeded"):
        launch.click()
        run_id = _launched_run(page)
        run = dagster_dev.wait_for_run(run_id)
        assert run["status"] == "SUCCESS", f"rebuild {run_id}: {dagster_dev.run_errors(run_id)}"
        assert {"key": "dagster/partition", "value": active} in run["tags"]
        metadata = dagster_dev.latest_metadata(REBUILD_ASSET, run_id)
        assert metadata["connection"] == f"demo (built-in demo district) [{active}]"
        page.reload()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()


def test_daily_schedule_switched_on_from_automation(page, dagster_dev):
    assert dagster_dev.schedule_status(SCHEDULE) == "STOPPED"
    with ui.step(page, "10-automation"):
        open_nav(page, "Automation")
        schedule_link = link(page, SCHEDULE)
        expect(schedule_link, f"schedule {SCHEDULE} not on the Automation page").to_be_visible()

    with ui.step(page, "11-schedule-switched-on"):
        schedule_link.click()
        page.wait_for_url(f"**/schedules/{SCHEDULE}")
        running = page.get_by_role("row").filter(has=page.get_by_text("Running", exact=True))
        switch = running.get_by_role("checkbox")
        expect(switch).not_to_be_checked()
        running.locator("label", has=page.get_by_role("checkbox")).click()  # the drawn switch; its input is hidden off-screen
        expect(switch).to_be_checked()
        deadline = time.monotonic() + 30
        while dagster_dev.schedule_status(SCHEDULE) != "RUNNING":
            assert time.monotonic() < deadline, f"{SCHEDULE} not RUNNING 30 s after the toggle"
            time.sleep(0.5)

    with ui.step(page, "12-automation-schedule-on"):
        open_nav(page, "Automation")
        expect(link(page, SCHEDULE)).to_be_visible()
