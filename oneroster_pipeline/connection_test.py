"""The connection test command: `python -m oneroster_pipeline.connection_test [--building-sis ID ...]
[--buildings-csv FILE]`; exits 0 when the connection works.

It reads the configuration every command reads (`config.Config.load()`: the environment, then the project folder's
`.env` over it) and says which sources it used, then runs the client's diagnostic (`client/diagnostics/`). With no
provider configured it starts the same built-in demo district as the sync (`builtin_demo.py`). Framework-free.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from .builtin_demo import DemoShape, start_demo_district
from .client.diagnostics.cli import main as diagnose
from .client.settings import ConnectionSettings
from .config import Config

PROG = "python -m oneroster_pipeline.connection_test"


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`env`: the variables to test with; default the configuration every command reads (printed as one line)."""
    if env is None:
        config = Config.load()
        print(config.describe())
        env = config.env
    return diagnose(argv, env, start_demo=lambda settings: _builtin_demo(settings, DemoShape.from_env(env)),
                    prog=PROG)


@contextmanager
def _builtin_demo(settings: ConnectionSettings, shape: DemoShape) -> Iterator[tuple[ConnectionSettings, str]]:
    """The built-in demo district of `shape`, started for the test: the settings pointed at it and what to print."""
    with start_demo_district(settings, shape) as (started, _):
        yield started, (f"(no provider configured: started the built-in demo provider with the sync's demo district "
                        f"({shape.describe()}) at {started.base_url})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
