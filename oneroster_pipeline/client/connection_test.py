"""The connection-test command under its first name: `python -m oneroster_pipeline.client.connection_test` runs the
diagnostic of `client/diagnostics/` (same options, same output)."""

import sys

from .diagnostics.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
