"""`python -m oneroster_pipeline.demo` runs the demo OneRoster provider (same as `oneroster-demo-server`)."""

from oneroster_pipeline.demo.cli import main

raise SystemExit(main())
