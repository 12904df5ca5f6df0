"""The districts file (`ONEROSTER_DISTRICTS_FILE`): what it accepts, every way it fails (naming file, district and
key, never a secret's value), each district's effective environment, and that its keys cannot drift from the
ONEROSTER_* variables the code and README know."""

import re
import textwrap
from pathlib import Path

import pytest

from oneroster_pipeline.client.settings import ConnectionSettings, SettingsError
from oneroster_pipeline.districts import (
    ALLOWED_KEYS,
    DEPLOYMENT_VARS,
    DISTRICT_ID,
    DISTRICTS_FILE_VAR,
    KNOWN_VARS,
    District,
    DistrictsFileError,
    districts_from_env,
    load_districts,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-Value-never-shown"

THREE = """
districts:
  - id: north
    name: North Unified
    provider: oneroster
    base_url: https://OR.Example.org/ims/oneroster/v1p1
    auth: oauth2
    token_url: https://or.example.org/oauth/token
    client_id: abc
    client_secret_env: NORTH_OR_SECRET
    duckdb_path: data/districts/north.duckdb
    timezone: America/Chicago
    max_retries: 3
  - id: east-2
    provider: classlink
    base_url: http://127.0.0.1:8123/ims/oneroster/v1p2
    auth: bearer
    access_token_env: EAST_TOKEN
    student_sync_enabled: yes
    max_deactivate_pct: 2.5
    blackout_dates: 2026-12-24
    alert_webhook_url_env: EAST_HOOK
  - id: west_csv
    name: ""
    provider: csv
    csv_path: exports/west.zip
"""


def write(tmp_path: Path, text: str, name: str = "districts.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def entry(body: str, district: str = "  - id: north\n") -> str:
    """A one-district file whose entry is `district` followed by `body` (keys indented under the entry)."""
    return "districts:\n" + district + textwrap.indent(textwrap.dedent(body), "    ")


def failure(tmp_path: Path, text: str) -> DistrictsFileError:
    path = write(tmp_path, text)
    with pytest.raises(DistrictsFileError) as caught:
        load_districts(path)
    assert str(path) in str(caught.value)
    return caught.value


# ---- a valid file ------------------------------------------------------------------------------------------------
def test_three_districts_in_file_order_with_their_settings_and_secret_names(tmp_path):
    north, east, west = load_districts(write(tmp_path, THREE))
    assert [d.id for d in (north, east, west)] == ["north", "east-2", "west_csv"]
    assert (north.name, east.name, west.name) == ("North Unified", "east-2", "west_csv")  # name defaults to id
    assert dict(north.settings) == {
        "ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": "https://OR.Example.org/ims/oneroster/v1p1",
        "ONEROSTER_AUTH": "oauth2", "ONEROSTER_TOKEN_URL": "https://or.example.org/oauth/token",
        "ONEROSTER_CLIENT_ID": "abc", "ONEROSTER_DUCKDB_PATH": "data/districts/north.duckdb",
        "ONEROSTER_TIMEZONE": "America/Chicago", "ONEROSTER_MAX_RETRIES": "3"}
    assert dict(north.secret_vars) == {"ONEROSTER_CLIENT_SECRET": "NORTH_OR_SECRET"}
    # scalars become the strings the variables would hold: bools as true/false, dates as YYYY-MM-DD
    assert east.settings["ONEROSTER_STUDENT_SYNC_ENABLED"] == "true"
    assert east.settings["ONEROSTER_MAX_DEACTIVATE_PCT"] == "2.5"
    assert east.settings["ONEROSTER_BLACKOUT_DATES"] == "2026-12-24"
    assert dict(east.secret_vars) == {"ONEROSTER_ACCESS_TOKEN": "EAST_TOKEN", "ONEROSTER_ALERT_WEBHOOK_URL": "EAST_HOOK"}
    # default DuckDB file per district
    assert (east.duckdb_path, west.duckdb_path) == ("data/districts/east-2.duckdb", "data/districts/west_csv.duckdb")
    assert north.duckdb_path == "data/districts/north.duckdb"
    # timezone: the district's, else UTC; timezone_or falls back to the environment first
    assert (north.timezone, west.timezone) == ("America/Chicago", "UTC")
    assert west.timezone_or({"ONEROSTER_TIMEZONE": "Europe/Paris"}) == "Europe/Paris"
    assert north.timezone_or({"ONEROSTER_TIMEZONE": "Europe/Paris"}) == "America/Chicago"
    # what politeness limits are keyed on
    assert (north.provider_host, east.provider_host, west.provider_host) == ("or.example.org", "127.0.0.1:8123", "csv")
    assert hash(north) == hash(load_districts(write(tmp_path, THREE, "again.yaml"))[0])


def test_a_district_never_inherits_a_provider_from_the_environment(tmp_path):
    """Issue 26 item 2: a district declared without a provider (the demo) or as `provider: demo` stays the demo
    district although the environment (or .env) names a real provider."""
    demo, plain = load_districts(write(tmp_path, "districts:\n  - id: demo\n    provider: demo\n  - id: plain\n"))
    assert demo.provider_host == "demo" and plain.provider_host == "demo"
    base = {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": "https://Shared.Host:9443/v1p2",
            "ONEROSTER_AUTH": "oauth2", "ONEROSTER_TOKEN_URL": "https://shared.host:9443/token",
            "ONEROSTER_CLIENT_ID": "real", "ONEROSTER_CLIENT_SECRET": "real-secret", "ONEROSTER_PAGE_SIZE": "33"}
    for district in (demo, plain):
        assert district.provider_host_in(base) == "demo"
        env = district.env(base)
        assert "ONEROSTER_BASE_URL" not in env and "ONEROSTER_CLIENT_SECRET" not in env
        assert env.get("ONEROSTER_PROVIDER", "demo") == "demo"
        assert env["ONEROSTER_PAGE_SIZE"] == "33"  # a tuning value still falls back from the environment
    assert demo.provider_host_in({"ONEROSTER_PROVIDER": "csv"}) == "demo"


@pytest.mark.parametrize("entry_text, key, said", [
    ("    provider: oneroster\n    auth: oauth2\n", "base_url", "required"),
    ("    provider: oneroster\n    base_url: https://x.example/ims/oneroster/rostering/v1p2\n    auth: oauth2\n",
     "token_url", "required"),
    ("    provider: oneroster\n    base_url: https://x.example/ims/oneroster/rostering/v1p2\n    auth: oauth2\n"
     "    token_url: https://x.example/token\n    client_id: c\n", "client_secret_env", "required"),
    ("    provider: csv\n", "csv_path", "required"),
])
def test_a_district_missing_a_connection_value_fails_at_load_naming_it(tmp_path, entry_text, key, said):
    error = failure(tmp_path, entry(entry_text))
    assert f"key '{key}'" in str(error) and said in str(error) and "district north" in str(error)
    assert "its own entry only" in str(error)


def test_env_overlays_the_district_on_the_base_environment(tmp_path):
    north, east, west = load_districts(write(tmp_path, THREE))
    base = {"ONEROSTER_MAX_RETRIES": "9", "ONEROSTER_PAGE_SIZE": "250", "ONEROSTER_DUCKDB_PATH": "data/oneroster.duckdb",
            "ONEROSTER_TIMEZONE": "UTC", "ONEROSTER_CLIENT_SECRET": "the-single-district-secret",
            "NORTH_OR_SECRET": SECRET, "EAST_TOKEN": "tok-east", "EAST_HOOK": "https://hooks.example/east",
            DISTRICTS_FILE_VAR: "districts.yaml", "PATH": "/usr/bin"}
    env = north.env(base)
    assert env["ONEROSTER_MAX_RETRIES"] == "3" and env["ONEROSTER_TIMEZONE"] == "America/Chicago"  # district wins
    assert env["ONEROSTER_PAGE_SIZE"] == "250" and env["PATH"] == "/usr/bin"  # the rest falls back
    assert env["ONEROSTER_DUCKDB_PATH"] == "data/districts/north.duckdb"
    assert env["ONEROSTER_CLIENT_SECRET"] == SECRET and DISTRICTS_FILE_VAR not in env
    assert base["ONEROSTER_MAX_RETRIES"] == "9" and DISTRICTS_FILE_VAR in base  # the base is left as it was
    east_env = east.env(base)
    assert (east_env["ONEROSTER_ACCESS_TOKEN"], east_env["ONEROSTER_ALERT_WEBHOOK_URL"]) == (
        "tok-east", "https://hooks.example/east")
    settings = ConnectionSettings.from_env(north.env(base))
    assert settings.client_secret.reveal() == SECRET and settings.max_retries == 3 and settings.page_size == 250
    assert west.env(base)["ONEROSTER_DUCKDB_PATH"] == "data/districts/west_csv.duckdb"


def test_a_missing_secret_env_var_is_left_unset_and_named(tmp_path):
    north = load_districts(write(tmp_path, THREE))[0]
    base = {"ONEROSTER_CLIENT_SECRET": "the-single-district-secret", "NORTH_OR_SECRET": "  "}
    env = north.env(base)
    assert "ONEROSTER_CLIENT_SECRET" not in env  # never another district's (or the global) secret
    assert north.missing_secrets(base) == ["client_secret_env: NORTH_OR_SECRET is not set"]
    assert north.missing_secrets({"NORTH_OR_SECRET": SECRET}) == []
    with pytest.raises(SettingsError, match="ONEROSTER_CLIENT_SECRET"):
        ConnectionSettings.from_env(env)


def test_districts_from_env(tmp_path):
    assert districts_from_env({}) is None and districts_from_env({DISTRICTS_FILE_VAR: "  "}) is None
    path = write(tmp_path, THREE)
    assert [d.id for d in districts_from_env({DISTRICTS_FILE_VAR: str(path)})] == ["north", "east-2", "west_csv"]
    with pytest.raises(DistrictsFileError, match="no such file"):
        districts_from_env({DISTRICTS_FILE_VAR: str(tmp_path / "nope.yaml")})


def test_the_example_file_loads_and_each_district_is_a_valid_connection():
    districts = load_districts(ROOT / "districts.example.yaml")
    assert len(districts) == 3 and all(isinstance(d, District) for d in districts)
    modes = set()
    for district in districts:
        base = {source: "filled-in" for source in district.secret_vars.values()}
        settings = ConnectionSettings.from_env(district.env(base))
        modes.add(settings.auth if settings.is_rest else "csv")
    assert "oauth2" in modes and "csv" in modes and modes & {"oauth1", "bearer"}


# ---- every way the file fails ------------------------------------------------------------------------------------
def test_missing_file_and_yaml_syntax_error(tmp_path):
    with pytest.raises(DistrictsFileError) as caught:
        load_districts(tmp_path / "missing.yaml")
    assert str(tmp_path / "missing.yaml") in str(caught.value) and "no such file" in str(caught.value)
    error = failure(tmp_path, "districts:\n  - id: north\n   name: [unclosed\n")
    assert "not valid YAML" in str(error) and "line" in str(error)
    error = failure(tmp_path, f"districts:\n  - id: north\n    client_secret: '{SECRET}\n")  # an unclosed quote
    assert "not valid YAML" in str(error) and SECRET not in str(error)


@pytest.mark.parametrize("text, words", [
    ("", "top-level 'districts:'"),
    ("north:\n  base_url: x\n", "top-level 'districts:'"),
    ("- id: north\n", "top-level 'districts:'"),
    ("districts: []\n", "is empty"),
    ("districts:\n", "must be a list"),
    ("districts:\n  id: north\n", "must be a list"),
    ("districts:\n  - id: north\nsettings: {}\n", "unknown top-level key(s) settings"),
])
def test_the_file_needs_a_districts_list(tmp_path, text, words):
    assert words in str(failure(tmp_path, text))


def test_a_non_mapping_entry_is_named_by_its_position(tmp_path):
    error = failure(tmp_path, "districts:\n  - id: north\n  - just-a-name\n")
    assert "entry 2" in str(error) and "mapping" in str(error) and error.district == "entry 2"


@pytest.mark.parametrize("text, where, bad", [
    ("districts:\n  - name: North\n", "entry 1", "has no id"),
    ("districts:\n  - id: North\n", "entry 1", "'North' is not a valid district key"),
    ("districts:\n  - id: north side\n", "entry 1", "not a valid district key"),
    ("districts:\n  - id: a\n  - id: 42\n", "entry 2", "quote it"),
])
def test_a_missing_or_bad_id(tmp_path, text, where, bad):
    error = failure(tmp_path, text)
    assert f"district {where}" in str(error) and "'id'" in str(error) and bad in str(error)


def test_duplicate_ids_fail_naming_the_id(tmp_path):
    error = failure(tmp_path, "districts:\n  - id: north\n  - id: south\n  - id: north\n")
    assert "duplicate id 'north'" in str(error) and (error.district, error.key) == ("north", "id")


def test_two_districts_may_not_share_a_duckdb_file(tmp_path):
    error = failure(tmp_path, """
        districts:
          - id: north
            duckdb_path: data/shared.duckdb
          - id: south
            duckdb_path: data/../data/shared.duckdb
        """)
    assert "north and south share the DuckDB file" in str(error) and error.key == "duckdb_path"
    error = failure(tmp_path, "districts:\n  - id: south\n  - id: north\n    duckdb_path: data/districts/south.duckdb\n")
    assert "south and north" in str(error)


@pytest.mark.parametrize("key", ["client_secret", "access_token", "alert_webhook_url"])
def test_a_secret_written_inline_fails_without_showing_it(tmp_path, key):
    error = failure(tmp_path, entry(f"{key}: {SECRET}\n"))
    assert f"key '{key}'" in str(error) and "district north" in str(error)
    assert "secret written inline" in str(error) and f"use {key}_env: <ENV VAR NAME>" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error.args)


@pytest.mark.parametrize("value", [SECRET.replace("-", " "), "has-dash", "9STARTS_WITH_DIGIT", "[A, B]", "12"])
def test_a_secret_env_must_be_an_env_var_name_and_is_not_shown(tmp_path, value):
    error = failure(tmp_path, entry(f"client_secret_env: {value}\n"))
    assert "key 'client_secret_env'" in str(error) and "name of an environment variable" in str(error)
    assert value not in str(error).replace(str(tmp_path), "")  # the file's own path may hold "12" (pytest-112)


@pytest.mark.parametrize("key, hint", [
    ("base_ulr", "did you mean 'base_url'?"),
    ("timezon", "did you mean 'timezone'?"),
    ("ONEROSTER_BASE_URL", "write base_url:"),
    ("ONEROSTER_CLIENT_SECRET", "write client_secret_env:"),
    ("client_id_env", "did you mean 'client_id'?"),
    ("districts_file", "known keys"),
    ("zzz", "known keys"),
])
def test_an_unknown_key_fails_with_the_closest_known_one(tmp_path, key, hint):
    error = failure(tmp_path, entry(f"{key}: x\n"))
    assert "unknown key" in str(error) and f"key {key!r}" in str(error) and "district north" in str(error)
    assert hint in str(error)


@pytest.mark.parametrize("value, words", [
    ("[1, 2]", "a single value"), ("{a: 1}", "a single value"), ("", "has no value"), ("null", "has no value")])
def test_a_value_must_be_a_single_scalar(tmp_path, value, words):
    error = failure(tmp_path, entry(f"max_retries: {value}\n"))
    assert "key 'max_retries'" in str(error) and words in str(error) and "district north" in str(error)


def test_an_empty_string_leaves_a_variable_unset_for_the_district(tmp_path):
    district = load_districts(write(tmp_path, entry('blackout_dates: ""\n')))[0]
    assert district.env({"ONEROSTER_BLACKOUT_DATES": "2026-12-24"})["ONEROSTER_BLACKOUT_DATES"] == ""
    error = failure(tmp_path, entry('duckdb_path: ""\n'))
    assert "key 'duckdb_path'" in str(error) and "data/districts/north.duckdb" in str(error)


def test_a_key_written_twice_fails(tmp_path):
    error = failure(tmp_path, entry("max_retries: 3\nmax_retries: 4\n"))
    assert "'max_retries' is written twice" in str(error)


@pytest.mark.parametrize("body, key, words", [
    ("timezone: Mars/Olympus\n", "timezone", "unknown timezone 'Mars/Olympus'"),
    ("district_timezone: Nowhere\n", "district_timezone", "unknown timezone"),
    ("blackout_dates: 2026-13-01\n", "blackout_dates", "not a date"),
    ("max_deactivate: lots\n", "max_deactivate", "whole number"),
    ("max_deactivate_pct: lots\n", "max_deactivate_pct", "a number"),
    ("switch_school_match: nonsense\n", "switch_school_match", "distinct rules"),
    ("demo_schools: 0\n", "demo_schools", "at least 1"),
])
def test_values_checkable_alone_fail_at_load_naming_the_key(tmp_path, body, key, words):
    error = failure(tmp_path, entry(body))
    assert f"key {key!r}" in str(error) and words in str(error) and error.district == "north"


# ---- the keys cannot drift from the variables ---------------------------------------------------------------------
def variables_in(text: str) -> set[str]:
    """ONEROSTER_* variables named in `text`, without prefix-only mentions such as ONEROSTER_DEMO_*."""
    return {name for name in re.findall(r"ONEROSTER_[A-Z0-9_]+", text) if not name.endswith("_")}


def test_every_variable_in_the_reference_is_a_key():
    named = variables_in((ROOT / "docs" / "reference.md").read_text()) - set(DEPLOYMENT_VARS)
    assert len(named) > 30
    keys = {name.removeprefix("ONEROSTER_").lower() for name in named}
    secret_keys = {k for k in keys if f"{k}_env" in ALLOWED_KEYS}
    assert secret_keys == {"client_secret", "access_token", "alert_webhook_url"}
    assert sorted(keys - set(ALLOWED_KEYS) - secret_keys) == []
    assert set(KNOWN_VARS.values()) >= named


def test_every_variable_the_code_reads_is_a_key():
    named = set().union(*(variables_in(path.read_text()) for path in (ROOT / "oneroster_pipeline").rglob("*.py")))
    assert sorted(named - set(KNOWN_VARS.values()) - set(DEPLOYMENT_VARS)) == []
    assert not set(DEPLOYMENT_VARS) & set(KNOWN_VARS.values()) and "districts_file" not in ALLOWED_KEYS


def test_district_id_pattern():
    assert all(DISTRICT_ID.match(key) for key in ("north", "d-01", "a_b", "7"))
    assert not any(DISTRICT_ID.match(key) for key in ("North", "a b", "", "a.b", "é"))


def test_the_readme_example_loads(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Many districts: ONEROSTER_DISTRICTS_FILE"):]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)[1]
    (north,) = load_districts(write(tmp_path, example))
    assert north.secret_vars == {"ONEROSTER_CLIENT_SECRET": "NORTH_OR_SECRET"} and north.timezone == "America/Chicago"
    assert ConnectionSettings.from_env(north.env({"NORTH_OR_SECRET": SECRET})).provider == "infinite_campus"
