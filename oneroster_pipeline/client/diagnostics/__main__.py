"""`python -m oneroster_pipeline.client.diagnostics`: the connection test command (as client.connection_test)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
