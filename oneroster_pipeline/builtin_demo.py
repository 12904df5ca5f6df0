"""The built-in demo district, started in-process when no provider is configured: one helper for the sync
(`defs/resources.OneRosterResource`) and the connection test command (`connection_test.py`), so both see the same
district. It joins the two halves of the core that never import each other: the client (`client/`, which knows
nothing of the demo) and the demo provider (`demo/`, which knows nothing of the client).

Its shape comes from ONEROSTER_DEMO_SCHOOLS / ONEROSTER_DEMO_STUDENTS / ONEROSTER_DEMO_SEED (defaults 8 / 2000 / 42).
Framework-free (never imports dagster); the demo server is imported only when the demo is started.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from .client.settings import ConnectionSettings, SettingsError

DEMO_ENV_VARS = {"schools": "ONEROSTER_DEMO_SCHOOLS", "students": "ONEROSTER_DEMO_STUDENTS",
                 "seed": "ONEROSTER_DEMO_SEED"}
DEMO_CLIENT_ID = "demo-client"


@dataclass(frozen=True)
class DemoShape:
    """How big the built-in demo district is (the same shape is always the same district)."""

    schools: int = 8
    students: int = 2000
    seed: int = 42

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DemoShape:
        """The shape the ONEROSTER_DEMO_* variables ask for (unset or blank: the default); a value that is not a
        whole number, or out of range, is a SettingsError naming the variable."""
        values = {}
        for name, var in DEMO_ENV_VARS.items():
            raw = (env.get(var) or "").strip()
            if not raw:
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise SettingsError(var, f"must be a whole number, got {raw!r}") from None
        shape = cls(**values)
        if shape.schools < 1:
            raise SettingsError(DEMO_ENV_VARS["schools"], f"must be at least 1, got {shape.schools}")
        if shape.students < 0:
            raise SettingsError(DEMO_ENV_VARS["students"], f"must be 0 or more, got {shape.students}")
        return shape

    def describe(self) -> str:
        return f"{self.schools} schools, {self.students} students, seed {self.seed}"


@contextmanager
def start_demo_district(settings: ConnectionSettings, shape: DemoShape) -> Iterator[tuple[ConnectionSettings, str]]:
    """Start the demo district of `shape` on loopback (OAuth 2.0 with a throwaway secret) and yield `settings`
    pointed at it (page size, concurrency, retries... as configured) and a line saying what was started."""
    from .demo.district import DistrictShape  # noqa: PLC0415 (only the demo needs the server)
    from .demo.server import DemoProvider, DemoSettings  # noqa: PLC0415

    secret = secrets.token_urlsafe(16)
    district = DistrictShape(schools=shape.schools, students=shape.students, seed=shape.seed)
    demo = DemoSettings(auth="oauth2", client_id=DEMO_CLIENT_ID, client_secret=secret)
    with DemoProvider(district, demo) as provider:
        message = ("No OneRoster provider configured (ONEROSTER_PROVIDER/ONEROSTER_BASE_URL unset): started the "
                   f"built-in demo district ({shape.describe()}) at {provider.base_url('1.2')}")
        yield settings.with_overrides(
            base_url=provider.base_url("1.2"), version=None, auth="oauth2", token_url=provider.token_url,
            client_id=DEMO_CLIENT_ID, client_secret=secret,
        ), message
