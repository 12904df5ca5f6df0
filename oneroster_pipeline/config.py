"""The one configuration: built once, by `Config.load()`, from the environment as every command sees it.

Every command reads the same sources in the same order: the process environment, then the project folder's `.env`
file over it (the precedence Dagster's own CLI gives it: `dg launch`, `dagster job execute`, `dg dev`), then, with
`ONEROSTER_DISTRICTS_FILE`, each district's entry over that. A district's connection (provider, URLs, client id,
secret variable names, CSV path) comes from its own entry only, never from the environment: a district cannot
silently sync the provider a `.env` left behind. `Config.describe()` is the one line every command logs to say
what it read (variable names, never values). Framework-free: the Dagster layer builds its definitions from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .client.redaction import REDACTOR
from .client.settings import ENV_VARS
from .districts import DISTRICTS_FILE_VAR, DISTRICTS_PER_RUN_VAR, District, DistrictsFileError, load_districts
from .warehouse import store
from .warehouse.alerts import SECRET_ENV_VARS

ENV_FILE = ".env"
# the built-in demo district's own DuckDB file: a quick start never pins the file a real provider will use
DEMO_DUCKDB_PATH = "data/demo.duckdb"


def is_builtin_demo(env: Mapping[str, str]) -> bool:
    """Whether `env` configures no provider (the built-in demo district is started for it)."""
    provider = (env.get(ENV_VARS["provider"]) or "").strip().lower() or "demo"
    return provider == "demo" and not (env.get(ENV_VARS["base_url"]) or "").strip()


def duckdb_path_of(env: Mapping[str, str]) -> str:
    """The DuckDB file of `env`: ONEROSTER_DUCKDB_PATH, else data/demo.duckdb for the built-in demo district and
    data/oneroster.duckdb for a configured provider."""
    given = (env.get(store.PATH_VAR) or "").strip()
    return given or (DEMO_DUCKDB_PATH if is_builtin_demo(env) else store.DEFAULT_DUCKDB_PATH)


@dataclass(frozen=True)
class Config:
    """What a command runs with: the effective environment, where it came from, and the districts (None: one
    district, configured by the environment)."""

    env: Mapping[str, str]
    env_file: str | None = None  # the .env file read, when there was one
    env_file_vars: tuple[str, ...] = ()  # the variables it set (its ONEROSTER_* ones are named in describe())
    districts_file: str | None = None
    districts: tuple[District, ...] | None = None
    districts_per_run: int = 1
    by_id: Mapping[str, District] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> Config:
        """The configuration of a command run in `cwd` (default: the current folder) with `environ` (default: the
        process environment). A bad districts file fails here (DistrictsFileError naming file, district, key)."""
        base = dict(os.environ if environ is None else environ)
        env_path = Path(cwd or os.getcwd()) / ENV_FILE
        from_file = read_env_file(env_path)
        env = {**base, **from_file}
        path = (env.get(DISTRICTS_FILE_VAR) or "").strip() or None
        districts = tuple(load_districts(path)) if path else None
        per_run = _districts_per_run(env, path)
        config = cls(MappingProxyType(env), str(env_path) if from_file else None, tuple(from_file), path, districts,
                     per_run, MappingProxyType({d.id: d for d in districts or ()}))
        REDACTOR.register(*config.secret_values())
        return config

    @classmethod
    def of(cls, env: Mapping[str, str]) -> Config:
        """A configuration of exactly `env` (no .env file read): for tests and for a district's own environment."""
        return cls.load(env, cwd=_NOWHERE)

    # ---- what a district runs with ---------------------------------------------------------------------------
    def district_env(self, district: District) -> dict[str, str]:
        """The district's effective environment: this configuration's environment without any connection value,
        its entry's settings over it, its secrets read from the variables its entry names."""
        return district.env(self.env)

    def district(self, key: str) -> District:
        return self.by_id[key]

    def secret_values(self) -> list[str]:
        """Every secret this configuration can send: the environment's and every district's (their values are
        registered with the one redactor when the configuration loads)."""
        envs = [self.env] + [self.district_env(d) for d in self.districts or ()]
        return [v for env in envs for v in (env.get(name) for name in SECRET_ENV_VARS) if v]

    def describe(self) -> str:
        """One line naming the sources read (never a value): the .env file and its ONEROSTER_* variables, the
        districts file and its district ids."""
        oneroster = sorted(name for name in self.env if name.startswith("ONEROSTER_"))
        parts = [f"environment ({len(oneroster)} ONEROSTER_* variables: {', '.join(oneroster) or 'none'})"]
        if self.env_file:
            named = [v for v in self.env_file_vars if v.startswith("ONEROSTER_")]
            parts.append(f"{self.env_file} over it ({', '.join(named) or 'no ONEROSTER_* variable'})")
        if self.districts_file:
            parts.append(f"districts file {self.districts_file}: {', '.join(d.id for d in self.districts or ())}")
        return "configuration: " + "; ".join(parts)


_NOWHERE = Path("/nonexistent-oneroster-config-dir")


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a `.env` file as Dagster reads it (python-dotenv), {} when there is none."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # noqa: PLC0415  (installed with dagster, which reads .env the same way)

    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def _districts_per_run(env: Mapping[str, str], districts_file: str | None) -> int:
    raw = (env.get(DISTRICTS_PER_RUN_VAR) or "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise DistrictsFileError(districts_file or "(none)", f"{DISTRICTS_PER_RUN_VAR} must be a whole number of at "
                                 f"least 1, got {raw!r}")
    return int(raw)
