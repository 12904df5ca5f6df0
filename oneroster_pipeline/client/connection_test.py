"""The connection-test command under its first name: `python -m oneroster_pipeline.client.connection_test` runs the
diagnostic of `client/diagnostics.py` (same options, same output)."""

from .diagnostics import main

if __name__ == "__main__":
    raise SystemExit(main())
