"""The connection test command's former name, kept so scripts that use it still work:
`python -m oneroster_pipeline.client.connection_test` runs `python -m oneroster_pipeline.connection_test` (same
options, same output). The one module of `client/` that imports the package outside it (test_layout.py): the
command reads the package's configuration and may start the built-in demo district, which the client never does."""

import sys

from oneroster_pipeline.connection_test import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
